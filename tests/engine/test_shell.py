"""jf.shell: command-line tools as ops, files as typed inputs/outputs, environments."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _write(path, text):
    path.write_text(text)
    return path


def test_shell_ops_chain_cache_and_notice_file_changes(jf, tmp_path):
    data = _write(tmp_path / "data.txt", "pear\napple\nfig\n")
    out = tmp_path / "out" / "sorted.txt"

    def graph():
        sort = jf.shell("sort {input} -o {output}", inputs={"input": str(data)}, outputs={"output": str(out)},
                        cwd=tmp_path)
        count = jf.shell("wc -l < {input} && echo counted >&2", inputs={"input": sort["output"]}, name="count")
        return sort, count

    sort, count = graph()
    run = jf.run(count)
    assert run.status == "SUCCESS", run.error
    assert run.result().strip() == "3"                       # no outputs declared: the value is stdout
    assert out.read_text() == "apple\nfig\npear\n"
    tasks = {t.name: t for t in run.tasks}
    assert "counted" in tasks["count"].stderr and "$ wc -l" in tasks["count"].stderr
    assert tasks["sort"].provenance["shell"]["command"] == "sort {input} -o {output}"
    written = jf.run(sort).result()["output"]
    assert written == str(out) and len(written.sha256) == 64

    assert [t.status for t in jf.run(graph()[1]).tasks] == ["CACHED", "CACHED"]
    _write(data, "kiwi\nbanana\n")                            # the input file's content is in the key
    rerun = jf.run(graph()[1])
    assert {t.name: (t.status, t.reason) for t in rerun.tasks}["sort"] == ("SUCCESS", "file changed")
    assert rerun.result().strip() == "2"
    out.unlink()                                              # a cached output file that is gone
    again = jf.run(graph()[1])
    by_name = {t.name: t for t in again.tasks}
    assert by_name["sort"].status == "SUCCESS" and "output file" in by_name["sort"].reason
    assert out.exists()


def test_exit_code_timeout_and_bad_templates(jf, tmp_path):
    failing = jf.run(jf.shell("echo about to fail >&2; exit 3", name="fails"))
    assert failing.status == "FAILED"
    (task,) = failing.tasks
    assert "exited with code 3" in task.error and "about to fail" in task.stderr
    with pytest.raises(jf.ShellCommandFailed, match="code 3"):
        failing.result()

    pid_file = tmp_path / "pid"
    slow = jf.run(jf.shell("echo $$ > {pid}; sleep 60", params={"pid": str(pid_file)}, timeout=1, name="slow"))
    assert slow.status == "FAILED"
    with pytest.raises(jf.OpTimeout):
        slow.result()
    pid = int(pid_file.read_text())
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"

    with pytest.raises(jf.FlowError, match=r"\{missing\}"):
        jf.shell("cat {missing}")
    with pytest.raises(jf.FlowError, match="does not exist"):
        jf.shell("cat {input}", inputs={"input": str(tmp_path / "nope")})
    # Literal braces of awk and ${VAR} stay as they are.
    assert jf.run(jf.shell("echo 'a b' | awk '{{print $2}}'; X=1; echo ${X}")).result().split() == ["b", "1"]


def test_environments_modules_conda_prefix_and_missing_container(jf, tmp_path):
    tools = tmp_path / "tools" / "bin"
    tools.mkdir(parents=True)
    tool = tools / "flowtool"
    tool.write_text("#!/bin/sh\necho flowtool-ran \"$@\"\n")
    tool.chmod(0o755)
    modulefiles = tmp_path / "modulefiles" / "flowtool"
    modulefiles.mkdir(parents=True)
    (modulefiles / "1.0").write_text(f"#%Module1.0\nprepend-path PATH {tools}\n")
    run = jf.run(jf.shell("flowtool {x}", params={"x": "hello"},
                          env={"modules": ["flowtool/1.0"],
                               "variables": {"MODULEPATH": str(tmp_path / "modulefiles")}}))
    assert run.status == "SUCCESS", run.tasks[0].error
    assert "flowtool-ran hello" in run.result()
    assert run.tasks[0].provenance["shell"]["environment"]["modules"] == ["flowtool/1.0"]
    assert "modules flowtool/1.0" in run.tasks[0].stderr

    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    found = jf.run(jf.shell("command -v python", env={"conda_prefix": str(prefix)})).result().strip()
    assert found == str(prefix / "bin" / "python")

    missing = jf.run(jf.shell("true", env={"container": str(tmp_path / "image.sif")}, name="in_container"))
    assert missing.status == "FAILED" and "apptainer" in missing.tasks[0].error
    with pytest.raises(jf.FlowError, match="unknown env"):
        jf.shell("true", env={"docker": "x"})
