"""Flows on a real single-node Slurm through the built-in `slurm` and `slurm-gpu` profiles."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.distributed import ops
from tests.distributed.conftest import dask_worker_jobs
from tests.waiting import wait_for


def test_flow_of_20_ops_records_the_slurm_job_of_every_task(jf_slurm):
    squares = [ops.square(i) for i in range(19)]
    run = jf_slurm.run(ops.total(jf_slurm.parallel(squares)), name="slurm-20")
    assert run.status == "SUCCESS", run
    assert run.result() == sum(i * i for i in range(19))
    executed = [t for t in run.tasks if not t.cached]
    assert len(executed) >= 20
    jobs = {t.provenance.get("slurm_job_id") for t in executed}
    assert None not in jobs and all(job.isdigit() for job in jobs)


def test_idle_jobs_are_released_to_zero(jf_slurm):
    run = jf_slurm.run([ops.square(100 + i) for i in range(4)])
    assert run.status == "SUCCESS"
    assert all(t.provenance.get("slurm_job_id") for t in run.tasks)  # jobs were started for it
    wait_for(lambda: not dask_worker_jobs(), timeout=90)


def test_a_cancelled_job_is_replaced_and_the_run_succeeds(jf_slurm, tmp_path):
    node = ops.slow_marker(1, str(tmp_path))
    run = jf_slurm.run([node, *[ops.square(200 + i) for i in range(3)]], wait=False)
    started = wait_for(lambda: sorted(tmp_path.glob("*.started")), timeout=90)
    cancelled = started[0].read_text()
    subprocess.run(["scancel", cancelled], check=True)
    assert run.wait(timeout=120)
    assert run.status == "SUCCESS" and run.result()[0] == 2
    task = next(t for t in run.tasks if t.name == "slow_marker")
    assert task.attempts >= 2
    assert task.provenance["slurm_job_id"] != cancelled


def test_slurm_gpu_jobs_ask_for_gpus_and_declare_them(slurm_config):
    from jupyter_flow.deploy import cluster as clusters

    handle = clusters.connect("slurm-gpu", gpus=2, adapt=None)
    try:
        script = handle.cluster.job_script()
    finally:
        handle.close()
    assert "#SBATCH --gres=gpu:2" in script
    assert "--resources GPU=2" in script


def test_cpu_and_gpu_ops_of_one_run_share_slurm_gpu_jobs(flow_home, slurm_config):
    """The documented rule: a run uses one cluster; on slurm-gpu every job has a GPU."""
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    try:
        run = jf.run([ops.on_gpu(ops.square(3)), ops.square(4)], cluster="slurm-gpu")
        assert run.status == "SUCCESS", [(t.name, t.status, t.reason) for t in run.tasks]
        assert run.result()[0]["value"] == 18 and run.result()[1] == 16
        assert all(t.provenance.get("slurm_job_id") for t in run.tasks)
    finally:
        clusters.connect("slurm-gpu").close()


def test_a_slurm_that_does_not_answer_is_said_at_once_not_waited_for(tmp_path, monkeypatch, flow_home):
    """Notebook 02 on a machine whose Slurm is down waited forever: every `sbatch` of the
    adaptive loop failed in the log while `jf.run` waited for workers. `jf.cluster("slurm")`
    now asks the real `squeue` first and says what is wrong (issue 17, first hour)."""
    import jupyter_flow as jf
    from jupyter_flow.deploy import cluster as clusters

    conf = tmp_path / "slurm.conf"  # a controller that is not there (nothing listens on 6999)
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=6999\n"
                    "NodeName=localhost CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    handles = dict(clusters._handles)
    try:
        with pytest.raises(jf.FlowError, match=r"cluster profile 'slurm': Slurm does not answer from this machine "
                                               r"\(squeue: .*contact slurm controller.*\); "
                                               r"start Slurm or check SLURM_CONF"):
            jf.cluster("slurm", job_name="jf-probe")  # its own settings: not the shared handle
        monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                   if not os.path.exists(os.path.join(p, "sbatch"))))
        with pytest.raises(jf.FlowError, match=r"`sbatch` is not on PATH, so no SLURMCluster job can be submitted"):
            jf.cluster("slurm", job_name="jf-probe")
    finally:
        clusters._current[0] = None
        clusters._current_overrides.clear()
    assert clusters._handles == handles  # nothing started, nothing kept
