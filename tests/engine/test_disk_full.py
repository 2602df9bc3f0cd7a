"""Disks that fill up during a run, on a real small filesystem (a tmpfs mounted by the test,
as root): the run ends with a message that names the full place, the store never shows it
RUNNING for the life of the process, and it stays resumable."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="mounting a small filesystem needs root")


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB filesystem; unmounted afterwards."""
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:  # a container without CAP_SYS_ADMIN: the machine cannot mount
        pytest.skip(f"this machine cannot mount a small filesystem: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_artifacts_disk_says_disk_full_at_its_path(jf, small_disk, monkeypatch):
    from jupyter_flow.engine import runtime

    runtime.shutdown()
    monkeypatch.setenv("JUPYTER_FLOW_ARTIFACTS", str(small_disk / "artifacts"))

    @jf.op
    def big():
        return b"x" * (8 * 2**20)  # twice the disk

    run = jf.run(big())
    assert run.status == "FAILED"
    (task,) = run.tasks
    assert "disk full at" in task.error and str(small_disk) in task.error, task.error
    with pytest.raises(jf.FlowError, match="disk full at"):
        run.result()
    assert "completion report" not in (run.error or "")


def test_a_run_whose_final_writes_hit_a_full_disk_is_recorded_once_space_is_back(jf, small_disk, monkeypatch):
    from jupyter_flow.engine import runtime
    from jupyter_flow.engine.execution import RunNotRecorded
    from jupyter_flow.store import Store

    runtime.shutdown()
    db = small_disk / "flow.db"
    monkeypatch.setenv("JUPYTER_FLOW_DB", f"sqlite:///{db}")

    @jf.op
    def first():
        return 1

    @jf.op
    def fills_the_store_disk(x, where, flag):
        # While `flag` exists the disk fills as the op runs (once the test says "go": the
        # run's start is recorded by then): its own records and the run's end cannot be written.
        import pathlib
        import time

        deadline = time.monotonic() + 120
        while pathlib.Path(flag).exists() and not pathlib.Path(flag + ".go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pathlib.Path(flag).exists():
            # Closing the file may fail too (bytes of the last partial write still buffered),
            # depending on how the free space divides: that is the disk being full, as wanted.
            try:
                with open(pathlib.Path(where) / "filler", "wb") as handle:
                    while True:
                        handle.write(bytes(65536))
                        handle.flush()
            except OSError:
                pass
        return x + 1

    flag = small_disk.parent / "fill-the-disk"
    flag.touch()
    run = jf.run(fills_the_store_disk(first(), str(small_disk), str(flag)), wait=False)
    observer = Store(f"sqlite:///{db}")
    wait_for(lambda: {t["name"]: t["status"] for t in observer.get_tasks(run.id)}.get("fills_the_store_disk")
             == "RUNNING", timeout=120)
    go = small_disk.parent / "fill-the-disk.go"
    go.touch()
    with pytest.raises(RunNotRecorded, match="the disk holding it is full"):
        run.wait()
    assert run.status == "FAILED"
    assert observer.get_run(run.id)["status"] == "RUNNING"  # nothing could be written yet
    (small_disk / "filler").unlink()  # space is back
    flag.unlink()
    go.unlink()
    # Within a heartbeat or two, not "for the life of the process".
    wait_for(lambda: observer.get_run(run.id)["status"] != "RUNNING", timeout=60)
    recorded = observer.get_run(run.id)
    assert recorded["status"] == "FAILED" and "could not be recorded" in recorded["error"]
    assert {t["status"] for t in observer.get_tasks(run.id)} == {"SUCCESS"}
    # And it stays resumable: what is not cached is computed again.
    resumed = jf.resume(run.id)
    assert resumed.status == "SUCCESS" and resumed.result() == 2
    observer.close()
