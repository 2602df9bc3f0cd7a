"""One batch execution in its own process: ``python -m jupyter_flow.batch.execute SPEC.json``
with the parameters as a JSON object on stdin (so that no file holds secret values).

Its own process gives the kernel its own environment (the notebook run id, the cluster),
and a cancel can end it. A failure is written to the spec's ``error_path`` as JSON
naming the cell.
"""

from __future__ import annotations

import json
import sys


def main(spec_path: str) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with open(spec_path) as handle:
        spec = json.load(handle)
    parameters = json.loads(sys.stdin.read() or "{}")
    try:
        papermill.execute_notebook(
            spec["input"], spec["output"], parameters=parameters, kernel_name=spec.get("kernel"),
            cwd=spec.get("cwd"), progress_bar=False, log_output=False, start_timeout=120,
        )
    except PapermillExecutionError as err:
        error = {"cell_index": err.cell_index, "exec_count": err.exec_count, "ename": err.ename,
                 "evalue": err.evalue, "source": err.source[:2000]}
        with open(spec["error_path"], "w") as handle:
            json.dump(error, handle)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
