"""Running approved jobs: detached supervised runs, results in the syft-job layout,
crash recovery, rerun, cleanup, sharing, and the pass staying quick."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE, wait_until
from freezegun import freeze_time
from hostile import marked_processes, run_until_finished, script

from syft_bg_app.datasite import linksafe
from syft_bg_app.datasite.jobfiles import sha256_bytes
from syft_bg_app.datasite.layout import Datasite, JobRef
from syft_bg_app.execution import publish, reap, sandbox, start
from syft_bg_app.execution.backends import local as local_backend
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.session import open_view
from syft_bg_app.steps import execute as execute_step
from syft_bg_app.store.state import State

DS = "alice@uni.edu"
# execute.timeout where a job's timeout is not what a test is about: a job that
# takes a second on an idle machine must never time out on a loaded one.
JOB_TIMEOUT = int(PATIENCE)

RESULT_JOB = """#!/bin/bash
echo "rows: 3"
echo "a warning" >&2
mkdir -p code/outputs/plots
printf 'x,y\\n1,2\\n' > code/outputs/result.csv
echo plot > code/outputs/plots/p.txt
"""


def _approved(app, name, run_sh, files=None, ds=DS):
    app.submit(name, ds_email=ds, run_sh=run_sh, files=files)
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{ds}/{name}", check=True)


def _record(app, name, ds=DS):
    return State.load(app.home.state_file).job(ds, name)


def _review(app, name, ds=DS) -> Path:
    return app.datasite.review_dir(JobRef(ds, name))


def _events(app, kind):
    return [e for e in State.load(app.home.state_file).data["events"] if e["kind"] == kind]


def _finished_events(app, name):
    # The quiet_app fixture turns notify off, so events stay in the checkpoint.
    return [e for e in _events(app, "job_finished") if e["job"] == name]


@pytest.fixture
def quiet_app(app):
    """An app whose notify step is off, so events stay in the checkpoint to inspect."""
    app.cli("peers", "accept", DS, check=True)
    app.set_config(notify={"enabled": False}, execute={"timeout": JOB_TIMEOUT})
    return app


def test_an_approved_job_runs_detached_and_its_results_follow_the_syft_job_layout(quiet_app):
    app = quiet_app
    _approved(app, "stats", RESULT_JOB)

    result = app.run_pass()

    assert "1 started" in result.summary
    record = _record(app, "stats")
    assert record["status"] == "running"
    assert Path(record["run_dir"]).is_dir()
    assert record["supervisor_pid"] > 0 and record["supervisor_start"]
    assert app.job_state("stats")["status"] in ("running", "done")

    states = run_until_finished(app, "stats")

    state = states["stats"]
    assert state["status"] == "done"
    assert state["return_code"] == 0
    assert state["completed_at"].endswith("Z")
    review = _review(app, "stats")
    assert (review / "stdout.txt").read_text() == "rows: 3\n"
    assert (review / "stderr.txt").read_text() == "a warning\n"
    assert (review / "returncode.txt").read_text().strip() == "0"
    assert (review / "outputs" / "result.csv").read_text() == "x,y\n1,2\n"
    assert (review / "outputs" / "plots" / "p.txt").read_text() == "plot\n"
    [event] = _finished_events(app, "stats")
    assert event["status"] == "done" and event["return_code"] == 0
    assert event["ds_email"] == DS and event["duration_seconds"] >= 0
    assert event["stderr_tail"] == "a warning\n"
    assert _record(app, "stats")["status"] == "done"
    shown = app.cli("jobs", "show", f"{DS}/stats", check=True).stdout
    assert f"run folder: {record['run_dir']}" in shown
    spec = json.loads(RunLayout(Path(record["run_dir"])).spec.read_text())
    assert spec["job"] == f"{DS}/stats"


def test_a_failing_job_is_failed_with_its_return_code_and_reason(quiet_app):
    app = quiet_app
    _approved(app, "broken", "#!/bin/bash\necho before\necho 'Traceback: boom' >&2\nexit 3\n")

    state = run_until_finished(app, "broken")["broken"]

    assert state["status"] == "failed"
    assert state["return_code"] == 3
    review = _review(app, "broken")
    assert (review / "returncode.txt").read_text().strip() == "3"
    assert "Traceback: boom" in (review / "stderr.txt").read_text()
    [event] = _finished_events(app, "broken")
    assert event["status"] == "failed" and event["return_code"] == 3
    assert "exited with return code 3" in event["reason"]
    assert "Traceback: boom" in event["stderr_tail"]


def test_a_job_submitted_with_syft_job_runs_and_syft_job_reads_the_results(app):
    syft_job = pytest.importorskip("syft_job")
    app.cli("peers", "accept", DS, check=True)
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    ds_client = syft_job.get_client(str(app.root), DS)
    job_script = "echo hello from the job\nmkdir -p outputs\necho 42 > outputs/answer.txt\n"
    # syft-job bash jobs run from the job folder; outputs/ of code/ is what is shared.
    job_script = "cd code\n" + job_script
    ds_client.submit_bash_job(app.do_email, job_script, "syft-job-run")
    app.run_pass()
    app.cli("jobs", "approve", "syft-job-run", check=True)

    run_until_finished(app, "syft-job-run")

    jobs = {job.name: job for job in syft_job.get_client(str(app.root), DS).jobs}
    job = jobs["syft-job-run"]
    assert job.status == "done"
    assert "hello from the job" in str(job.stdout)
    assert [p.name for p in job.output_paths] == ["answer.txt"]
    assert job.output_paths[0].read_text() == "42\n"
    assert int((job.job_review_path / "returncode.txt").read_text()) == 0
    # The data owner's own syft-job view agrees.
    owner_view = {j.name: j for j in syft_job.get_client(str(app.root), app.do_email).jobs}
    assert owner_view["syft-job-run"].status == "done"


def test_a_pass_never_waits_for_a_running_job(quiet_app):
    """A pass is bounded whatever the jobs do: it starts a long job and returns, and
    later passes return while the job still runs. (How long a pass takes is measured
    in bench/, not here: a test never depends on the speed of the machine.)"""
    app = quiet_app
    # Longer than JOB_TIMEOUT: a pass that waited for it would see it finished.
    _approved(app, "long", f"#!/bin/bash\nsleep {JOB_TIMEOUT * 2}\n")

    result = app.run_pass()

    assert "1 started" in result.summary
    record = _record(app, "long")
    assert record["status"] == "running"
    layout = RunLayout(Path(record["run_dir"]))
    for _ in range(3):
        result = app.run_pass()
        assert result.exit_code == 0, result.summary
        assert "finished" not in result.summary
        assert _record(app, "long")["status"] == "running"
        assert local_backend.supervisor_alive(layout)
    assert app.job_state("long")["status"] == "running"
    _stop_runs(app)


def _stop_runs(app):
    """SIGTERM every supervisor of this app, as a machine shutting down would."""
    for run_dir in app.home.runs_dir.iterdir():
        layout = RunLayout(run_dir)
        wait_until(
            lambda layout=layout: local_backend.read_run_status(layout).get("supervisor_pid"),
            "the supervisor to write its status",
        )
        status = local_backend.read_run_status(layout)
        if status["phase"] != "finished":
            os.kill(status["supervisor_pid"], signal.SIGTERM)
    runs = [RunLayout(d) for d in app.home.runs_dir.iterdir()]
    wait_until(
        lambda: not any(local_backend.supervisor_alive(layout) for layout in runs),
        "every supervisor to stop on SIGTERM",
    )


def test_no_more_than_max_concurrent_jobs_run_at_once(quiet_app):
    app = quiet_app
    app.set_config(execute={"max_concurrent": 2, "timeout": JOB_TIMEOUT})
    for name in ("one", "two", "three"):
        app.submit(name, run_sh="#!/bin/bash\nsleep 1\necho ran\n")
    app.run_pass()
    for name in ("one", "two", "three"):
        app.cli("jobs", "approve", name, check=True)

    app.run_pass()

    statuses = [_record(app, n)["status"] for n in ("one", "two", "three")]
    assert sorted(statuses) == ["approved", "running", "running"]
    most_at_once = 0

    def count():
        nonlocal most_at_once
        state = State.load(app.home.state_file)
        running = [n for n in ("one", "two", "three") if state.job(DS, n)["status"] == "running"]
        most_at_once = max(most_at_once, len(running))

    states = run_until_finished(app, ["one", "two", "three"], watch=count)
    assert all(s["status"] == "done" for s in states.values())
    assert most_at_once == 2


def test_the_approving_rules_timeout_overrides_execute_timeout(quiet_app):
    app = quiet_app
    run_sh = "#!/bin/bash\nsleep 30\n"
    app.set_config(
        execute={"timeout": 600},
        approve={
            "auto_approvals": [
                {
                    "name": "short-jobs",
                    "peers": [DS],
                    "files": {
                        "run.sh": sha256_bytes(run_sh.encode()),
                        "code/script.sh": sha256_bytes(b"echo hello\n"),
                    },
                    "timeout": 1,
                }
            ]
        },
    )
    app.submit("by-rule", run_sh=run_sh)
    app.run_pass()  # received, approved by the rule, started
    assert _record(app, "by-rule")["rule"] == "short-jobs"

    state = run_until_finished(app, "by-rule")["by-rule"]

    # Under execute.timeout (600 s) the job would have slept its 30 s and succeeded.
    assert state["status"] == "failed"
    assert state["return_code"] == -1
    [event] = _finished_events(app, "by-rule")
    assert event["reason"] == "timed out after 1 s"
    assert "timed out after 1 s" in (_review(app, "by-rule") / "stderr.txt").read_text()


@pytest.mark.parametrize("mode", ["none", "auto"])
def test_a_run_whose_supervisor_was_killed_is_failed_with_the_reason_and_not_restarted(
    quiet_app, mode
):
    app = quiet_app
    app.set_config(execute={"sandbox": mode, "timeout": JOB_TIMEOUT})
    marker = f"syftbg-orphan-{os.getpid()}-{time.time_ns()}"
    _approved(app, "interrupted", script("tree.sh", marker=marker))
    app.run_pass()
    record = _record(app, "interrupted")
    wait_until(lambda: len(marked_processes(marker)) >= 5, "the job's processes to appear")

    os.kill(record["supervisor_pid"], signal.SIGKILL)  # as a reboot or the OOM killer would
    layout = RunLayout(Path(record["run_dir"]))
    wait_until(lambda: not local_backend.supervisor_alive(layout), "the killed supervisor to go")
    result = app.run_pass()

    assert "1 finished" in result.summary and "started" not in result.summary.split(":")[0]
    state = app.job_state("interrupted")
    assert state["status"] == "failed"
    assert state["return_code"] == -1
    [event] = _finished_events(app, "interrupted")
    assert "its supervisor stopped" in event["reason"]
    assert marked_processes(marker) == []
    app.run_pass()
    assert _record(app, "interrupted")["status"] == "failed"
    assert len(list(app.home.runs_dir.iterdir())) == 1  # never started a second time


def test_supervisors_started_together_are_independent_of_each_other(quiet_app):
    """One launcher forks the supervisors of a pass; each must hold its own run's lock
    only, in a session of its own, so that one dying is seen for that run alone."""
    app = quiet_app
    app.set_config(execute={"max_concurrent": 3, "timeout": JOB_TIMEOUT})
    names = ("first", "second", "third")
    for name in names:
        app.submit(name, run_sh="#!/bin/bash\nsleep 30\n")
    app.run_pass()
    for name in names:
        app.cli("jobs", "approve", name, check=True)

    result = app.run_pass()

    assert "3 started" in result.summary
    records = {name: _record(app, name) for name in names}
    pids = {name: record["supervisor_pid"] for name, record in records.items()}
    assert len(set(pids.values())) == 3
    for pid in pids.values():
        assert os.getsid(pid) == pid  # each leads a session of its own
    os.kill(pids["second"], signal.SIGKILL)
    second = RunLayout(Path(records["second"]["run_dir"]))
    wait_until(lambda: not local_backend.supervisor_alive(second), "the killed supervisor's lock")
    for name in ("first", "third"):
        assert local_backend.supervisor_alive(RunLayout(Path(records[name]["run_dir"])))

    app.run_pass()

    assert _record(app, "second")["status"] == "failed"
    assert [_record(app, n)["status"] for n in ("first", "third")] == ["running", "running"]
    _stop_runs(app)


def test_jobs_whose_supervisors_never_started_start_on_a_later_pass(quiet_app, monkeypatch):
    app = quiet_app
    for name in ("one", "two"):
        app.submit(name, run_sh=f"#!/bin/bash\necho {name}\n")
    app.run_pass()
    for name in ("one", "two"):
        app.cli("jobs", "approve", name, check=True)
    monkeypatch.setattr(local_backend, "APP_PARENT", str(app.home.root / "no-such-folder"))

    result = app.run_pass()  # the launcher cannot even import the app

    assert "started" not in result.summary
    assert [_record(app, n)["status"] for n in ("one", "two")] == ["running", "running"]
    assert "No module named" in (
        RunLayout(Path(_record(app, "one")["run_dir"])).supervisor_errors.read_text()
    )
    monkeypatch.undo()

    states = run_until_finished(app, ["one", "two"])

    assert [states[n]["status"] for n in ("one", "two")] == ["done", "done"]
    assert (_review(app, "two") / "stdout.txt").read_text() == "two\n"
    runs = [local_backend.read_run_status(RunLayout(d)) for d in app.home.runs_dir.iterdir()]
    assert [status["phase"] for status in runs] == ["finished", "finished"]  # each ran once


def _two_approved(app, names=("good", "bad")):
    app.set_config(execute={"max_concurrent": 2, "timeout": JOB_TIMEOUT})
    for name in names:
        app.submit(name, run_sh=f"#!/bin/bash\necho {name}\n")
    app.run_pass()
    for name in names:
        app.cli("jobs", "approve", name, check=True)


def test_a_job_that_cannot_be_marked_running_does_not_hold_up_the_others(quiet_app, monkeypatch):
    app = quiet_app
    _two_approved(app)
    real_write = Datasite.write_job_state

    def io_error_for_bad(self, ref, **changes):
        if ref.name == "bad" and changes.get("status") == "running":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_write(self, ref, **changes)

    monkeypatch.setattr(Datasite, "write_job_state", io_error_for_bad)
    result = app.run_pass()
    monkeypatch.undo()

    assert result.exit_code == 1 and "1 started" in result.summary
    assert _record(app, "good")["status"] == "running"
    assert _record(app, "bad")["status"] == "approved"
    states = run_until_finished(app, ["good", "bad"])
    assert [states[n]["status"] for n in ("good", "bad")] == ["done", "done"]


def test_a_full_disk_when_handing_runs_over_is_reported_and_the_jobs_wait(quiet_app, monkeypatch):
    app = quiet_app
    _two_approved(app)

    def disk_full(layout):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(local_backend, "take_run_lock", disk_full)
    result = app.run_pass()
    monkeypatch.undo()

    assert result.exit_code == 1
    assert "No space left" in str(State.load(app.home.state_file).data["steps"]["execute"])
    assert [_record(app, n)["status"] for n in ("good", "bad")] == ["approved", "approved"]
    assert [app.job_state(n)["status"] for n in ("good", "bad")] == ["approved", "approved"]
    states = run_until_finished(app, ["good", "bad"])
    assert [states[n]["status"] for n in ("good", "bad")] == ["done", "done"]


def test_a_pass_killed_before_its_supervisor_started_runs_the_job_once_later(
    quiet_app, monkeypatch
):
    app = quiet_app
    _approved(app, "once", "#!/bin/bash\necho ran-once\n")

    def pass_dies_here(runs):
        raise SystemExit("killed")

    monkeypatch.setattr(local_backend, "start_supervisors", pass_dies_here)
    with pytest.raises(SystemExit):
        app.run_pass()
    monkeypatch.undo()
    assert _record(app, "once")["status"] == "running"  # saved before the launch

    state = run_until_finished(app, "once")["once"]

    assert state["status"] == "done"
    assert (_review(app, "once") / "stdout.txt").read_text() == "ran-once\n"
    finished = [
        d
        for d in app.home.runs_dir.iterdir()
        if local_backend.read_run_status(RunLayout(d)).get("phase") == "finished"
    ]
    assert len(finished) == 1


def test_a_pass_killed_while_a_published_run_is_cleared_keeps_the_outputs_it_published(
    quiet_app, monkeypatch
):
    app = quiet_app
    _approved(app, "kept", RESULT_JOB)
    real_remove_tree = publish.remove_tree
    died = []

    def pass_dies_half_way(path):
        # The working copy was published and renamed for removal: part of it goes,
        # then the pass is killed (before the job is recorded as done).
        if Path(path).name.startswith(publish.GOING_PREFIX) and not died:
            (Path(path) / "code" / "outputs" / "result.csv").unlink()
            died.append(path)
            raise SystemExit("killed")
        real_remove_tree(path)

    monkeypatch.setattr(publish, "remove_tree", pass_dies_half_way)

    def a_pass_died() -> bool:
        try:
            app.run_pass()
        except SystemExit:
            return True
        return False

    wait_until(a_pass_died, "a pass to reach the clearing of the published run")
    monkeypatch.undo()
    assert _record(app, "kept")["status"] == "running"

    state = run_until_finished(app, "kept")["kept"]

    assert state["status"] == "done"
    outputs = _review(app, "kept") / "outputs"
    assert (outputs / "result.csv").read_text() == "x,y\n1,2\n"
    assert (outputs / "plots" / "p.txt").read_text() == "plot\n"
    assert (_review(app, "kept") / "stdout.txt").read_text() == "rows: 3\n"
    assert len(_finished_events(app, "kept")) == 1


def test_rerun_runs_a_finished_job_again_from_its_approval_snapshot(quiet_app):
    app = quiet_app
    _approved(app, "again", "#!/bin/bash\necho first-version\n")
    run_until_finished(app, "again")
    # The data scientist changes the job after approval: that never runs by itself.
    job_dir = app.datasite.submission_dir(JobRef(DS, "again"))
    (job_dir / "run.sh").write_text("#!/bin/bash\necho changed-after-approval\n")

    out = app.cli("jobs", "rerun", "again", check=True).stdout

    assert "approved again" in out
    assert app.job_state("again")["status"] == "approved"
    assert app.job_state("again")["return_code"] is None
    assert not (_review(app, "again") / "stdout.txt").exists()
    state = run_until_finished(app, "again")["again"]
    assert state["status"] == "done"
    assert (_review(app, "again") / "stdout.txt").read_text() == "first-version\n"

    app.cli("jobs", "rerun", f"{DS}/again", "--fresh-snapshot", check=True)
    run_until_finished(app, "again")
    assert (_review(app, "again") / "stdout.txt").read_text() == "changed-after-approval\n"
    decisions = [
        json.loads(line)["decision"] for line in app.home.audit_log.read_text().splitlines()
    ]
    assert decisions.count("rerun") == 2


def test_rerun_refuses_a_job_that_has_not_finished(quiet_app):
    app = quiet_app
    app.submit("waiting")
    app.run_pass()

    result = app.cli("jobs", "rerun", "waiting")

    assert result.returncode == 2  # a usage error, as for approving a finished job
    assert "only done or failed jobs can be rerun" in result.stderr
    assert app.job_state("waiting")["status"] == "pending"


def test_old_run_folders_are_removed_after_keep_days_and_results_stay(quiet_app):
    app = quiet_app
    app.set_config(execute={"keep_days": 3, "timeout": JOB_TIMEOUT})
    _approved(app, "old", RESULT_JOB)
    run_until_finished(app, "old")
    [run_dir] = list(app.home.runs_dir.iterdir())

    with freeze_time(datetime.now(timezone.utc) + timedelta(days=2)):
        app.run_pass()
    assert run_dir.is_dir()

    with freeze_time(datetime.now(timezone.utc) + timedelta(days=4)):
        app.run_pass()
    assert not run_dir.exists()
    assert (_review(app, "old") / "outputs" / "result.csv").is_file()
    assert app.job_state("old")["status"] == "done"


def _can_read(app, ds_email, rel):
    from syft_permissions.engine.request import AccessLevel, ACLRequest, User
    from syft_permissions.engine.service import ACLService

    service = ACLService(owner=app.do_email)
    service.load_permissions_from_filesystem(app.datasite.path)
    path = (app.datasite.review_dir(JobRef(DS, "private")) / rel).relative_to(app.datasite.path)
    return service.can_access(ACLRequest(str(path), AccessLevel.READ, User(ds_email)))


@pytest.mark.parametrize(
    ("share_outputs", "share_logs"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_results_are_shared_with_the_submitter_only_as_configured(
    quiet_app, share_outputs, share_logs
):
    pytest.importorskip("syft_permissions")
    app = quiet_app
    app.set_config(execute={"share_outputs": share_outputs, "share_logs": share_logs})
    _approved(app, "private", RESULT_JOB)
    run_until_finished(app, "private")

    assert _can_read(app, DS, "state.yaml")
    for rel in ("stdout.txt", "stderr.txt", "returncode.txt"):
        assert _can_read(app, DS, rel) is share_logs, rel
    assert _can_read(app, DS, "outputs/result.csv") is share_outputs
    assert _can_read(app, DS, "outputs/plots/p.txt") is share_outputs
    for rel in ("state.yaml", "stdout.txt", "outputs/result.csv"):
        assert not _can_read(app, "eve@elsewhere.org", rel)
        assert _can_read(app, app.do_email, rel)


def test_a_job_cannot_grant_itself_permissions_through_its_outputs(quiet_app):
    app = quiet_app
    app.set_config(execute={"share_outputs": False})
    grant = yaml.safe_dump({"rules": [{"pattern": "**", "access": {"read": ["*"]}}]})
    _approved(
        app,
        "sneaky",
        f"#!/bin/bash\ncat > code/outputs/syft.pub.yaml <<'EOF'\n{grant}EOF\n"
        "echo data > code/outputs/data.txt\nln -s /etc/passwd code/outputs/link\n",
    )
    run_until_finished(app, "sneaky")

    outputs = _review(app, "sneaky") / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["data.txt"]
    perms = yaml.safe_load((_review(app, "sneaky") / "syft.pub.yaml").read_text())
    assert perms["terminal"] is True


def test_a_job_whose_snapshot_was_altered_fails_without_running(quiet_app, tamper_snapshot):
    app = quiet_app
    _approved(app, "tampered", "#!/bin/bash\necho original\n")
    [snapshot_dir] = list(app.home.snapshots_dir.iterdir())
    tamper_snapshot(snapshot_dir, "run.sh", b"#!/bin/bash\necho injected\n")

    state = run_until_finished(app, "tampered")["tampered"]

    assert state["status"] == "failed"
    [event] = _finished_events(app, "tampered")
    assert "altered" in event["reason"]
    assert "altered" in (_review(app, "tampered") / "stderr.txt").read_text()
    assert not app.home.runs_dir.exists() or not list(app.home.runs_dir.iterdir())


def test_sandbox_bwrap_required_but_missing_keeps_jobs_waiting_and_the_step_says_why(
    quiet_app, monkeypatch, tmp_path
):
    app = quiet_app
    app.set_config(execute={"sandbox": "bwrap"})
    _approved(app, "needs-bwrap", "#!/bin/bash\necho hi\n")
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    result = app.run_pass()

    assert result.exit_code == 1 and result.failed_steps == ["execute"]
    assert app.job_state("needs-bwrap")["status"] == "approved"
    step = State.load(app.home.state_file).data["steps"]["execute"]
    assert "execute.sandbox is bwrap but bwrap is not installed" in step["error"]


def test_status_warns_without_bwrap_and_lists_running_jobs(quiet_app):
    app = quiet_app
    app.set_config(execute={"sandbox": "none", "timeout": JOB_TIMEOUT})
    _approved(app, "slow", "#!/bin/bash\nsleep 20\n")
    app.run_pass()

    out = app.cli("status", check=True).stdout

    assert "WARNING execute.sandbox is none: jobs run without" in out
    if os.geteuid() == 0:
        assert "unprivileged uid of its own, never as root" in out
    else:
        assert "can read everything" in out
    assert "running jobs:" in out
    assert f"{DS}/slow: running since" in out
    _stop_runs(app)
    state = run_until_finished(app, "slow")["slow"]
    assert state["status"] == "failed"
    assert "SIGTERM" in _finished_events(app, "slow")[0]["reason"]


def test_execute_step_with_nothing_to_do_does_not_probe_or_start_anything(quiet_app):
    app = quiet_app
    ctx = open_view(app.home)
    execute_step.run(ctx)
    assert ctx.counts["started"] == 0
    assert not app.home.runs_dir.exists()


def test_only_the_listed_tools_of_the_apps_path_reach_a_job(quiet_app, monkeypatch, tmp_path):
    app = quiet_app
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("mytool", "othertool"):
        (tools / name).write_text(f"#!/bin/sh\necho {name} works\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    app.set_config(execute={"tools": ["mytool"]})
    _approved(app, "tools", "#!/bin/bash\nmytool\nothertool || echo no-othertool\n")

    run_until_finished(app, "tools")

    out = (_review(app, "tools") / "stdout.txt").read_text()
    assert out == "mytool works\nno-othertool\n"


def test_a_supervisor_that_cannot_start_fails_the_job_after_a_few_attempts(quiet_app, monkeypatch):
    app = quiet_app
    _approved(app, "unstartable", "#!/bin/bash\necho never\n")
    real_write = start.atomic_write_json

    def broken_spec(path, data, mode=0o644):
        if path.name == "spec.json":
            path.write_text("{ not json")
            return
        real_write(path, data, mode=mode)

    monkeypatch.setattr(start, "atomic_write_json", broken_spec)

    state = run_until_finished(app, "unstartable")["unstartable"]

    assert state["status"] == "failed"
    [event] = _finished_events(app, "unstartable")
    assert event["reason"].startswith("its supervisor failed to start 3 times: ")
    assert "JSONDecodeError" in event["reason"]
    assert "supervisor failed to start" in (_review(app, "unstartable") / "stderr.txt").read_text()
    assert not (_review(app, "unstartable") / "stdout.txt").exists()


# -- outputs a job controls: links, depth, size, count ---------------------------------------


@pytest.fixture
def deep_trees(tmp_path):
    """Folders deeper than shutil.rmtree can recurse would break pytest's own cleanup of
    old temporary folders: remove them whatever the test did (GNU rm has no such limit)."""
    yield
    subprocess.run(["rm", "-rf", "--", str(tmp_path)], check=False)


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# One mkdir for all 1100 levels (2,200 characters, within PATH_MAX): the job is quick
# on any machine, and the tree is as deep as 1100 separate mkdir calls would make it.
DEEP_JOB = """#!/bin/bash
cd code/outputs
echo top > top.txt
deep=$(printf 'd/%.0s' $(seq 1100))
mkdir -p "$deep" && cd "$deep" || exit 9
echo bottom > bottom.txt
echo nested
"""


def test_a_job_nesting_1100_folders_finishes_and_other_jobs_still_run(quiet_app, deep_trees):
    app = quiet_app
    app.set_config(execute={"max_concurrent": 1, "timeout": JOB_TIMEOUT, "keep_days": 1})
    _approved(app, "deep", DEEP_JOB)
    _approved(app, "after", "#!/bin/bash\necho after-ran\n")

    states = run_until_finished(app, ["deep", "after"])

    assert states["deep"]["status"] == "done"
    assert states["after"]["status"] == "done"
    assert (_review(app, "after") / "stdout.txt").read_text() == "after-ran\n"
    outputs = _review(app, "deep") / "outputs"
    assert (outputs / "top.txt").read_text() == "top\n"
    kept = outputs.joinpath(*["d"] * publish.MAX_OUTPUT_DEPTH)
    assert kept.is_dir() and not any(kept.iterdir())
    assert not outputs.joinpath(*["d"] * (publish.MAX_OUTPUT_DEPTH + 1)).exists()
    stderr = (_review(app, "deep") / "stderr.txt").read_text()
    assert f"folders nested deeper than {publish.MAX_OUTPUT_DEPTH} levels" in stderr
    assert "outputs left out" in _record(app, "deep")["outputs_note"]
    [event] = _finished_events(app, "deep")
    assert "nested deeper" in event["outputs_note"]
    # The run folder holding the 1100 levels is removed in time like any other.
    with freeze_time(datetime.now(timezone.utc) + timedelta(days=2)):
        result = app.run_pass()
    assert result.exit_code == 0, result.summary
    assert not app.home.runs_dir.exists() or list(app.home.runs_dir.iterdir()) == []


def test_outputs_beyond_the_size_and_entry_caps_are_left_out_and_stderr_says_so(quiet_app):
    app = quiet_app
    app.set_config(execute={"outputs_cap_mb": 1, "timeout": JOB_TIMEOUT})
    _approved(
        app,
        "big",
        "#!/bin/bash\ncd code/outputs\n"
        "for n in a b c; do head -c 400000 /dev/zero > $n.bin; done\n",
    )
    _approved(
        app,
        "many",
        f"#!/bin/bash\ncd code/outputs\ntouch f{{1..{publish.MAX_OUTPUT_ENTRIES + 50}}}\n",
    )

    states = run_until_finished(app, ["big", "many"])

    assert states["big"]["status"] == "done" and states["many"]["status"] == "done"
    assert _files_under(_review(app, "big") / "outputs") == ["a.bin", "b.bin"]
    big_err = (_review(app, "big") / "stderr.txt").read_text()
    assert "1 files beyond the 1 MiB outputs cap (execute.outputs_cap_mb)" in big_err
    published = list((_review(app, "many") / "outputs").iterdir())
    assert len(published) == publish.MAX_OUTPUT_ENTRIES
    many_err = (_review(app, "many") / "stderr.txt").read_text()
    assert f"everything past the first {publish.MAX_OUTPUT_ENTRIES} entries" in many_err


def test_one_run_that_cannot_be_collected_fails_alone_and_the_next_job_starts(
    quiet_app, monkeypatch
):
    app = quiet_app
    app.set_config(execute={"max_concurrent": 1, "timeout": JOB_TIMEOUT})
    _approved(app, "breaks", "#!/bin/bash\necho fine\n")
    _approved(app, "waits", "#!/bin/bash\necho waited\n")
    real = publish.replace_outputs

    def fails_for_one(run_root, review, cap):
        if review.name == "breaks":
            raise RecursionError("maximum recursion depth exceeded")
        return real(run_root, review, cap)

    monkeypatch.setattr(publish, "replace_outputs", fails_for_one)

    states = run_until_finished(app, ["breaks", "waits"])

    assert states["breaks"]["status"] == "failed"
    assert states["waits"]["status"] == "done"
    [event] = _finished_events(app, "breaks")
    assert event["reason"] == reap.COLLECT_FAILED
    assert "RecursionError" in _record(app, "breaks")["reason"]
    log = (app.home.logs_dir / "syft-bg.log").read_text()
    assert "collecting alice@uni.edu/breaks failed" in log and "Traceback" in log
    stderr = (_review(app, "breaks") / "stderr.txt").read_text()
    assert "could not be collected" in stderr


def test_remove_tree_deletes_deep_folders_and_never_follows_links(tmp_path, deep_trees):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    victim = tmp_path / "victim"
    # Deeper than recursion allows and longer than a path may be: built level by level.
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for name in ["victim"] + ["d" * 200] * 40 + ["d"] * 1100:
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.symlink(str(outside), "link", dir_fd=fd)
        os.mkdir("locked", 0o500, dir_fd=fd)
    finally:
        os.close(fd)
    (victim / "file.txt").write_text("x")
    os.symlink(str(outside), victim / "top-link")

    linksafe.remove_tree(victim)

    assert not victim.exists()
    assert (outside / "keep.txt").read_text() == "keep"
    linksafe.remove_tree(tmp_path / "missing")  # nothing there: no error


# -- what the DS reads carries no local paths; result permissions ---------------------------


def _ds_visible_text(app, name):
    review = _review(app, name)
    texts = [p.read_text(errors="replace") for p in review.rglob("*") if p.is_file()]
    texts += [json.dumps(e) for e in _finished_events(app, name)]
    return "\n".join(texts)


def test_a_job_approved_by_another_tool_fails_without_showing_the_owners_paths(quiet_app):
    app = quiet_app
    app.submit("elsewhere", run_sh="#!/bin/bash\necho never\n")
    app.run_pass()
    # syft-job's own approve: state.yaml says approved, and no snapshot exists.
    app.datasite.write_job_state(
        JobRef(DS, "elsewhere"), status="approved", approved_by=app.do_email
    )

    state = run_until_finished(app, "elsewhere")["elsewhere"]

    assert state["status"] == "failed"
    visible = _ds_visible_text(app, "elsewhere")
    assert str(app.home.root) not in visible and str(app.tmp) not in visible
    assert "snapshots" not in visible
    assert "no approval snapshot" in visible
    # The data owner still learns what to do, and where.
    assert "--fresh-snapshot" in _record(app, "elsewhere")["reason"]
    log = (app.home.logs_dir / "syft-bg.log").read_text()
    assert str(app.home.snapshots_dir) in log and "--fresh-snapshot" in log


def test_a_job_that_could_not_start_names_no_local_paths_to_the_ds(quiet_app, monkeypatch):
    app = quiet_app
    _approved(app, "unstarted", "#!/bin/bash\necho never\n")

    def refused(layout, files, mode, **options):
        raise PermissionError(13, "Permission denied", str(layout.root / "job" / "run.sh"))

    monkeypatch.setattr(sandbox, "prepare_layout", refused)

    state = run_until_finished(app, "unstarted")["unstarted"]

    assert state["status"] == "failed"
    [event] = _finished_events(app, "unstarted")
    assert event["reason"] == "could not start: Permission denied"
    visible = _ds_visible_text(app, "unstarted")
    assert "Permission denied" in visible
    assert str(app.home.root) not in visible and str(app.tmp) not in visible
    assert str(app.home.runs_dir) in _record(app, "unstarted")["reason"]


def test_public_text_replaces_the_owners_folders(quiet_app):
    ctx = open_view(quiet_app.home)
    home = quiet_app.home.root
    text = publish.public_text(ctx, f"cannot read {home}/snapshots/x and {quiet_app.root}/y")
    assert text == "cannot read <app home>/snapshots/x and <SyftBox folder>/y"


def test_results_stay_readable_by_the_ds_without_a_review_folder_grant(quiet_app):
    pytest.importorskip("syft_permissions")
    app = quiet_app
    # A peer accepted by another tool: no grant on review/<ds>/ from this app.
    (app.datasite.review / DS / "syft.pub.yaml").unlink()
    _approved(app, "private", RESULT_JOB)
    run_until_finished(app, "private")

    perms = yaml.safe_load((_review(app, "private") / "syft.pub.yaml").read_text())
    assert perms["terminal"] is True
    for rel in ("state.yaml", "stdout.txt", "stderr.txt", "returncode.txt"):
        assert _can_read(app, DS, rel), rel
    assert _can_read(app, DS, "outputs/result.csv")
    assert _can_read(app, DS, "outputs/plots/p.txt")
    assert not _can_read(app, DS, "syft.pub.yaml")
    assert not _can_read(app, "eve@elsewhere.org", "outputs/result.csv")


@pytest.mark.parametrize(
    ("name", "run_sh", "published"),
    [
        ("beside", "mkdir outputs\necho r > outputs/result.txt\n", []),
        ("nested", "mkdir -p outputs/deep\necho r > outputs/deep/r.txt\n", []),
        (
            "both",
            "mkdir outputs\necho r > outputs/a.txt\necho r > code/outputs/b.txt\n",
            ["b.txt"],
        ),
    ],
)
def test_outputs_written_beside_run_sh_come_with_a_note_on_where_they_go(
    quiet_app, name, run_sh, published
):
    app = quiet_app
    _approved(app, name, "#!/bin/bash\n" + run_sh)

    state = run_until_finished(app, name)[name]

    assert state["status"] == "done"
    [event] = _finished_events(app, name)
    note = event["outputs_note"]
    assert "outputs/ beside run.sh, which are not published" in note
    assert "results go to code/outputs/" in note
    assert note in (_review(app, name) / "stderr.txt").read_text()  # the DS reads it
    assert sorted(p.name for p in (_review(app, name) / "outputs").iterdir()) == published


def test_an_empty_outputs_folder_beside_run_sh_needs_no_note(quiet_app):
    app = quiet_app
    _approved(app, "empty", "#!/bin/bash\nmkdir outputs\necho r > code/outputs/r.txt\n")
    run_until_finished(app, "empty")
    [event] = _finished_events(app, "empty")
    assert not event.get("outputs_note")


def test_status_says_plainly_when_a_running_job_has_stopped(app, tmp_path):
    """A run whose supervisor is gone (finished between passes, or killed) reads as
    English in status: when it started, and that the next pass collects it."""
    app.submit("gone")
    app.run_pass()
    state = State.load(app.home.state_file)
    record = state.job(DS, "gone", "1")
    record.update(
        status="running",
        run_dir=str(tmp_path / "no-such-run"),
        started_at="2026-11-20T09:00:00Z",
        timeout=60,
        sandbox="bwrap",
    )
    state.save()

    out = app.cli("status", check=True).stdout

    assert (
        f"  {DS}/gone: started 2026-11-20T09:00:00Z, no longer running; the next pass "
        "collects the result (timeout 60 s, sandbox bwrap)"
    ) in out
    assert "since" not in next(line for line in out.splitlines() if "/gone:" in line)
