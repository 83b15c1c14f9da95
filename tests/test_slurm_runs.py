"""Approved jobs run on a real single-machine Slurm (tests/slurm_cluster.py) through
the real pass: execute.backend: slurm, a run folder the "nodes" share.

Tests marked ``slow`` wait for many cluster jobs on a two-CPU node.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE, wait_until
from hostile import run_until_finished
from slurm_cluster import SlurmCluster, slurm_cluster_fixture  # noqa: F401

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution.backends import local as local_backend
from syft_bg_app.execution.backends import slurm, slurm_runs
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.store.state import State

DS = "alice@uni.edu"
JOB_TIMEOUT = int(PATIENCE)
# The node offers 1024 MiB: a few runs fit on it at once.
JOB_MEMORY_MB = 128

RESULT_JOB = """#!/bin/bash
echo "rows: 3"
echo "a warning" >&2
mkdir -p code/outputs/plots
printf 'x,y\\n1,2\\n' > code/outputs/result.csv
echo plot > code/outputs/plots/p.txt
"""


@pytest.fixture
def cluster_app(app, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch, tmp_path):
    """An app whose jobs run on the test cluster; notify is off, so events stay."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    shared = tmp_path / "shared"
    shared.mkdir()
    app.cli("peers", "accept", DS, check=True)
    app.set_config(
        notify={"enabled": False},
        execute={
            "timeout": JOB_TIMEOUT,
            "memory_mb": JOB_MEMORY_MB,
            "backend": "slurm",
            "slurm": {"run_folder": str(shared), "partition": slurm_cluster.partition},
        },
    )
    app.cluster = slurm_cluster
    app.shared = shared
    return app


def _set_execute(app, **values):
    """Change execute keys, keeping the others."""
    data = yaml.safe_load(app.home.config_file.read_text())
    data["execute"].update(values)
    app.home.config_file.write_text(yaml.safe_dump(data))


def _set_slurm(app, **values):
    """Change execute.slurm keys, keeping the others."""
    data = yaml.safe_load(app.home.config_file.read_text())
    data["execute"]["slurm"].update(values)
    app.home.config_file.write_text(yaml.safe_dump(data))


def _approved(app, name, run_sh, files=None):
    app.submit(name, run_sh=run_sh, files=files)
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/{name}", check=True)


def _record(app, name):
    return State.load(app.home.state_file).job(DS, name)


def _review(app, name) -> Path:
    return app.datasite.review_dir(JobRef(DS, name))


def _submissions(app, names) -> dict[str, int]:
    """How often sbatch took a run of each job: run ids (the batch jobs' names) carry
    the job's digest; the test cluster keeps every job for an hour (MinJobAge)."""
    shown = app.cluster.command("squeue", "-h", "-t", "all", "-o", "%j")
    assert shown.returncode == 0, shown.stderr
    batch_names = shown.stdout.split()
    return {
        name: sum(1 for n in batch_names if f"-{JobRef(DS, name).digest[:10]}-" in n)
        for name in names
    }


def _cluster_state(app, name) -> slurm.ClusterState:
    return slurm.state(_record(app, name)["slurm_job_id"])


def test_a_job_runs_on_the_cluster_to_done_with_results_published_as_local_runs(cluster_app):
    app = cluster_app
    _approved(app, "stats", RESULT_JOB)

    result = app.run_pass()

    assert "1 started" in result.summary
    record = _record(app, "stats")
    assert record["status"] == "running"
    assert record["slurm_job_id"].isdigit()
    assert "supervisor_pid" not in record
    # The run folder is on the shared folder, not on this machine's /var/tmp.
    assert Path(record["run_dir"]).parent.parent == app.shared
    states = run_until_finished(app, "stats")

    assert states["stats"]["status"] == "done"
    assert states["stats"]["return_code"] == 0
    review = _review(app, "stats")
    assert (review / "stdout.txt").read_text() == "rows: 3\n"
    assert (review / "stderr.txt").read_text() == "a warning\n"
    assert (review / "returncode.txt").read_text().strip() == "0"
    assert (review / "outputs" / "result.csv").read_text() == "x,y\n1,2\n"
    assert (review / "outputs" / "plots" / "p.txt").read_text() == "plot\n"
    done = _record(app, "stats")
    assert done["slurm_job_id"] == record["slurm_job_id"]
    assert slurm.state(record["slurm_job_id"]).state == slurm.COMPLETED
    # The supervisor ran on the "node" and wrote the same status a local run has.
    status = local_backend.read_run_status(RunLayout(Path(record["run_dir"])))
    assert status["phase"] == "finished" and status["return_code"] == 0


def test_a_job_past_its_timeout_is_stopped_and_reported_failed_with_the_reason(cluster_app):
    app = cluster_app
    _set_execute(app, timeout=3)
    _approved(app, "forever", "#!/bin/bash\necho started\nsleep 3000\n")

    state = run_until_finished(app, "forever")["forever"]

    assert state["status"] == "failed"
    stderr = (_review(app, "forever") / "stderr.txt").read_text()
    assert "timed out after 3 s" in stderr
    assert (_review(app, "forever") / "stdout.txt").read_text() == "started\n"
    # Nothing of it runs on: the batch job ended with its supervisor.
    wait_until(lambda: _cluster_state(app, "forever").finished, "the batch job to end")


def test_a_run_cancelled_on_the_cluster_is_failed_as_cancelled_and_not_run_again(cluster_app):
    app = cluster_app
    _approved(app, "long", "#!/bin/bash\necho working\nsleep 3000\n")
    app.run_pass()
    record = _record(app, "long")
    layout = RunLayout(Path(record["run_dir"]))
    wait_until(
        lambda: local_backend.read_run_status(layout).get("phase") == "running",
        "the job to run on the node",
    )

    cancelled = app.cluster.command("scancel", record["slurm_job_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    state = run_until_finished(app, "long")["long"]

    assert state["status"] == "failed"
    stderr = (_review(app, "long") / "stderr.txt").read_text()
    assert "cancelled on the cluster" in stderr
    assert "not run again" in stderr
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert app.job_state("long")["status"] == "failed"
    assert _submissions(app, ["long"]) == {"long": 1}


def test_a_node_failure_fails_the_job_saying_so_and_it_is_not_run_again(cluster_app):
    app = cluster_app
    cluster = app.cluster
    _approved(app, "on-node", "#!/bin/bash\necho working\nsleep 3000\n")
    app.run_pass()
    layout = RunLayout(Path(_record(app, "on-node")["run_dir"]))
    wait_until(
        lambda: local_backend.read_run_status(layout).get("phase") == "running",
        "the job to run on the node",
    )

    down = cluster.command(
        "scontrol", "update", f"nodename={cluster.node}", "state=down", "reason=test failure"
    )
    assert down.returncode == 0, down.stderr
    try:
        state = run_until_finished(app, "on-node")["on-node"]
    finally:
        cluster.command("scontrol", "update", f"nodename={cluster.node}", "state=resume")
        wait_until(
            lambda: (
                cluster.command("sinfo", "-h", "-n", cluster.node, "-o", "%T").stdout.strip()
                == "idle"
            ),
            "the node to be back",
        )

    assert state["status"] == "failed"
    stderr = (_review(app, "on-node") / "stderr.txt").read_text()
    assert "the cluster stopped the job: node failure" in stderr
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert app.job_state("on-node")["status"] == "failed"
    assert _submissions(app, ["on-node"]) == {"on-node": 1}


def test_a_run_submitted_by_a_pass_that_stopped_before_recording_it_is_found_not_resubmitted(
    cluster_app,
):
    app = cluster_app
    _approved(app, "adopted", "#!/bin/bash\necho once\n")
    app.run_pass()
    # As if the pass had stopped between sbatch's answer and any record of the id.
    state = State.load(app.home.state_file)
    record = state.job(DS, "adopted")
    job_id = record.pop("slurm_job_id")
    state.save()
    (Path(record["run_dir"]) / slurm_runs.JOB_ID_FILE).unlink()

    states = run_until_finished(app, "adopted")

    assert states["adopted"]["status"] == "done"
    assert (_review(app, "adopted") / "stdout.txt").read_text() == "once\n"
    assert _record(app, "adopted")["slurm_job_id"] == job_id
    assert _submissions(app, ["adopted"]) == {"adopted": 1}


def test_a_queued_run_shows_its_slurm_state_and_a_cancel_there_fails_it(cluster_app):
    app = cluster_app
    # Held in the queue for an hour: it never starts in this test.
    _set_slurm(app, sbatch_options=["--begin=now+3600"])
    _approved(app, "queued", "#!/bin/bash\necho never\n")
    app.run_pass()
    record = _record(app, "queued")
    assert _cluster_state(app, "queued").state == slurm.PENDING

    shown = app.cli("status", check=True).stdout
    assert "queued on the cluster" in shown
    assert f"Slurm job {record['slurm_job_id']}: pending" in shown
    for _ in range(2):
        assert app.run_pass().exit_code == 0
        assert _record(app, "queued")["status"] == "running"

    app.cluster.command("scancel", record["slurm_job_id"])
    state = run_until_finished(app, "queued")["queued"]

    assert state["status"] == "failed"
    assert "cancelled on the cluster" in (_review(app, "queued") / "stderr.txt").read_text()
    assert not (_review(app, "queued") / "stdout.txt").read_text().strip()
    assert "Slurm job" in _record(app, "queued")["reason"]


def test_a_run_sbatch_refuses_is_tried_a_few_times_then_failed_with_sbatchs_reason(cluster_app):
    app = cluster_app
    _set_slurm(app, partition="no-such-partition")
    _approved(app, "refused", "#!/bin/bash\necho never\n")

    state = run_until_finished(app, "refused")["refused"]

    assert state["status"] == "failed"
    stderr = (_review(app, "refused") / "stderr.txt").read_text()
    assert "failed to start 3 times" in stderr
    assert "sbatch refused the run" in stderr and "partition" in stderr.lower()
    assert _submissions(app, ["refused"]) == {"refused": 0}


def test_the_approval_snapshot_is_what_runs_on_the_cluster(cluster_app):
    app = cluster_app
    _approved(app, "snap", "#!/bin/bash\necho approved version\n")
    # The data scientist changes the job after the approval.
    folder = app.datasite.inbox / DS / "v1" / "snap"
    (folder / "run.sh").write_text("#!/bin/bash\necho changed version\n")

    run_until_finished(app, "snap")

    assert (_review(app, "snap") / "stdout.txt").read_text() == "approved version\n"


def test_a_job_on_the_node_sees_nothing_of_the_app_home_nor_of_slurm(cluster_app):
    app = cluster_app
    (app.home.root / "token.json").write_text("secret-token-value")
    home = app.home.root
    run_sh = (
        "#!/bin/bash\n"
        "env\n"
        f"cat {home}/token.json {home}/config.yaml 2>&1\n"
        f"ls {home} 2>&1\n"
        "cat /proc/self/mountinfo\n"
    )
    _approved(app, "snoop", run_sh)

    run_until_finished(app, "snoop")

    stdout = (_review(app, "snoop") / "stdout.txt").read_text()
    assert "secret-token-value" not in stdout
    seen = [line for line in stdout.splitlines() if str(home) in line]
    assert seen and all("No such file or directory" in line for line in seen)
    assert "SLURM_" not in stdout
    assert "SYFT_BG_HOME" not in stdout
    assert "do_email" not in stdout
    spec = yaml.safe_load(RunLayout(Path(_record(app, "snoop")["run_dir"])).spec.read_text())
    assert spec["sandbox"] == "bwrap"


@pytest.mark.slow
def test_a_pass_killed_at_random_points_loses_no_cluster_job_and_submits_none_twice(
    cluster_app,
):
    app = cluster_app
    _set_execute(app, max_concurrent=4)
    names = [f"job-{i}" for i in range(8)]
    for name in names:
        # The same files: one rule approves them all.
        app.submit(name, run_sh="#!/bin/bash\necho ran\nsleep 1\n")
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS}/job-0", check=True)
    rng = random.Random(20261128)
    for _ in range(6):
        process = subprocess.Popen(
            [sys.executable, "-m", "syft_bg_app", "run", "--once"],
            env=app.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        # The checkpoint loads after every kill.
        State.load(app.home.state_file)

    states = run_until_finished(app, names)

    for name in names:
        assert states[name]["status"] == "done", (name, states[name])
        assert (_review(app, name) / "stdout.txt").read_text() == "ran\n"
    assert _submissions(app, names) == dict.fromkeys(names, 1)


@pytest.mark.slow
def test_fifty_jobs_submitted_at_once_all_finish_and_no_pass_waits_for_them(cluster_app):
    app = cluster_app
    _set_execute(app, max_concurrent=50)
    names = [f"many-{i:02d}" for i in range(50)]
    for name in names:
        app.submit(name, run_sh="#!/bin/bash\necho done here\n")
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS}/many-00", check=True)

    result = app.run_pass()

    assert "50 started" in result.summary
    ids = [_record(app, name)["slurm_job_id"] for name in names]
    # The pass returned with most of them still waiting on a two-CPU node.
    waiting = [s for s in slurm.states(ids).values() if not s.finished]
    assert len(waiting) >= 40
    passes_while_waiting = 0

    def watch():
        nonlocal passes_while_waiting
        if any(not s.finished for s in slurm.states(ids).values()):
            passes_while_waiting += 1

    states = run_until_finished(app, names, watch=watch)

    assert {s["status"] for s in states.values()} == {"done"}
    assert passes_while_waiting >= 1
    assert _submissions(app, names) == dict.fromkeys(names, 1)


def test_setup_status_checks_the_cluster_and_the_shared_run_folder(cluster_app):
    app = cluster_app
    shown = app.cli("setup-status").stdout
    assert "slurm" in shown and "sbatch, squeue and sacct answer" in shown

    _set_slurm(app, run_folder=str(app.shared / "not-there"))
    shown = app.cli("setup-status").stdout
    assert "execute.slurm.run_folder" in shown and "is not a folder" in shown
