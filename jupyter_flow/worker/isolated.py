"""Child-process entry point for ``isolate=True`` ops: ``python -m jupyter_flow.worker.isolated RESULT``.

Reads the cloudpickled ``(func, args, kwargs)`` from stdin, runs it with its own
stdout/stderr captured, and writes ``(outcome, stdout, stderr)`` to the RESULT file.
A timeout or cancel kills this process; nothing of it is left in the worker.
"""

from __future__ import annotations

import io
import sys
import traceback


def main(result_path: str) -> int:
    import cloudpickle

    func, args, kwargs = cloudpickle.loads(sys.stdin.buffer.read())
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    outcome: tuple
    try:
        outcome = ("ok", func(*args, **kwargs))
    except BaseException as exc:  # reported to the parent, which raises it
        outcome = ("error", exc, traceback.format_exc())
    try:
        data = cloudpickle.dumps((outcome, out.getvalue(), err.getvalue()))
    except Exception as exc:
        data = cloudpickle.dumps(((
            "error", RuntimeError(f"the op's result cannot be sent back from its isolated process: {exc}"), ""),
            out.getvalue(), err.getvalue()))
    with open(result_path, "wb") as handle:
        handle.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
