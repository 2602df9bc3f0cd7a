"""jf.shell under attack: secrets in command lines, values that try to leave their word,
output paths that try to leave the working directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.planted import files_holding

TOKEN = "tok-8f3a61c2e9"
DB_PASSWORD = "hunter2-db-pw"


def test_secret_fields_stay_out_of_logs_errors_the_store_rest_and_the_cli(jf, flow_home, tmp_path, subprocess_env):
    from jupyter_flow.engine import runtime
    from jupyter_flow.core.provenance import current_user
    from jupyter_flow.server.service import FlowService

    command = "test -n {api_token} && test -n {db} && echo checked >&2; exit 5"
    node = jf.shell(command, params={"api_token": TOKEN, "db": f"postgresql://app:{DB_PASSWORD}@db.example/prod"},
                    env={"variables": {"SERVICE_TOKEN": TOKEN}}, cwd=tmp_path, name="upload")
    run = jf.run(node)
    assert run.status == "FAILED"
    (task,) = run.tasks
    # The command line is shown, with the secrets as ***: in the log, the error, the exception.
    assert "[jupyter_flow] $ test -n *** && test -n 'postgresql://app:***@db.example/prod'" in task.stderr
    assert "exited with code 5" in task.error and "***" in task.error
    with pytest.raises(jf.ShellCommandFailed) as failed:
        run.result()
    assert TOKEN not in str(failed.value) and DB_PASSWORD not in str(failed.value)
    assert task.provenance["shell"]["environment"] == {"variables": {"SERVICE_TOKEN": "***"}}

    engine = runtime.get_engine()
    engine.writer.flush()
    service = FlowService(engine.store, engine.artifacts, server_user=current_user())
    responses = [service.get_run(run.id), service.run_tasks(run.id), service.list_runs(limit=10)]
    assert run.id in json.dumps(responses[2])  # the listing does show the run
    for secret in (TOKEN, DB_PASSWORD):
        assert secret not in json.dumps(responses, default=str)
        assert secret not in subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "show", run.id],
                                            env=subprocess_env, capture_output=True, text=True, timeout=120).stdout
    assert "checked" in task.stderr
    # Not in the database, its WAL, nor any artifact (the sealed snapshot holds them encrypted).
    assert files_holding(flow_home, TOKEN.encode()) == files_holding(flow_home, DB_PASSWORD.encode()) == []


def test_values_never_leave_their_word_and_braces_in_values_pass_unchanged(jf, tmp_path):
    marker = tmp_path / "PWNED"
    for value in (f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}", f"a'b\"c$(touch {marker})"):
        got = jf.run(jf.shell("echo processing {sample}", params={"sample": value}, cwd=tmp_path)).result()
        assert got == f"processing {value}\n"
    assert not marker.exists()
    braces = jf.run(jf.shell("printf %s {v}", params={"v": "a}}b{{c {x}"}, cwd=tmp_path)).result()
    assert braces == "a}}b{{c {x}"
    # $(…) is a fresh shell context: a field there is quoted as anywhere else.
    assert jf.run(jf.shell('echo "$(printf %s {v})"', params={"v": "$(id)"}, cwd=tmp_path)).result() == "$(id)\n"


@pytest.mark.parametrize(("command", "fix"), [
    ('echo "processing {sample}"', 'write it outside the quotes: echo "processing "{sample}'),
    ("echo 'got {sample}'", "write it outside the quotes: echo 'got '{sample}"),
    ("cat <<EOF\nhello {sample}\nEOF", "inside a heredoc"),
    ("echo `cat {sample}`", "use $(…) instead: echo $(cat {sample})"),
    ("echo {sample} # was {sample}", "inside a comment"),
])
def test_fields_inside_quotes_or_heredocs_are_refused_with_the_fix(jf, command, fix):
    with pytest.raises(jf.FlowError, match="jf.shell 'report'") as refused:
        jf.shell(command, params={"sample": "x"}, name="report")
    assert fix in str(refused.value)


def test_an_unclosed_quote_names_the_op(jf):
    with pytest.raises(jf.FlowError, match=r"""jf.shell 'echo': the command has a " quote that is never closed"""):
        jf.shell('echo "unclosed {x}', params={"x": 1})
    with pytest.raises(jf.FlowError, match="jf.shell 'count': the command has a ' quote that is never closed"):
        jf.shell("wc -l '{x}", params={"x": 1}, name="count")


def test_outputs_stay_in_the_working_directory_unless_declared_absolute(jf, tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "link").symlink_to(outside)
    for path in ("../escaped.txt", str(outside / "abs.txt"), "link/through-a-symlink.txt", "a/../../b.txt"):
        with pytest.raises(jf.FlowError, match=r"outside the working directory .*absolute_outputs=\['o'\]"):
            jf.shell("echo x > {o}", outputs={"o": path}, cwd=work, name="write")
    assert not (tmp_path / "escaped.txt").exists() and list(outside.iterdir()) == []

    inside = jf.run(jf.shell("echo in > {o}", outputs={"o": "deep/er/in.txt"}, cwd=work)).result()["o"]
    assert inside == str(work / "deep/er/in.txt") and open(inside).read() == "in\n"
    declared = jf.shell("echo out > {o}", outputs={"o": str(outside / "abs.txt")}, absolute_outputs=["o"], cwd=work)
    assert open(jf.run(declared).result()["o"]).read() == "out\n"
    with pytest.raises(jf.FlowError, match=r"absolute_outputs names \['nope'\]"):
        jf.shell("true", outputs={"o": "x"}, absolute_outputs=["nope"], cwd=work)
    # Declaring an output absolute does not let a relative path climb out.
    with pytest.raises(jf.FlowError, match="outside the working directory"):
        jf.shell("true > {o}", outputs={"o": "../x"}, absolute_outputs=["o"], cwd=work)
