"""The idle check: a pass ends after a few stats only when a full pass would do nothing.

Each test first runs full passes until one leaves the idle record (nothing it
watches changed for RACY_SECONDS), checks that the idle check would now end a
pass, makes one kind of change, and checks that the next pass, started the
way run.sh and the schedule start it, does the work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from conftest import DS_EMAIL, PATIENCE, App, outbox, wait_until
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_bg_app.schedule import idle
from syft_bg_app.store.lock import PassLock
from syft_bg_app.store.state import State

RUN_SH = "#!/bin/bash\nbash code/sub/deep.sh\n"
RUN_SH_FILE = Path(__file__).resolve().parent.parent / "run.sh"
PEER = "carol@uni.edu"


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def deep_rule(deep: str) -> dict:
    """A rule that approves the job whose code/sub/deep.sh holds ``deep``."""
    return {
        "name": "deep",
        "peers": [DS_EMAIL],
        "files": {"run.sh": sha(RUN_SH), "code/sub/deep.sh": sha(deep)},
        "name_only": [],
    }


def settle(app) -> None:
    """Full passes until one leaves the idle record, then the idle check ends passes."""

    def record_left() -> bool:
        app.run_pass()
        if idle.read_record(app.home.root) is None:
            time.sleep(0.3)
            return False
        return True

    wait_until(record_left, "a full pass that leaves the idle record", limit=60)
    assert idle.try_idle_pass(str(app.home.root)) == 0


def skips(app) -> bool:
    return idle.try_idle_pass(str(app.home.root)) == 0


def scheduled_pass(app) -> subprocess.CompletedProcess:
    """One pass as the schedule starts it (python -m syft_bg_app run --once)."""
    result = app.cli("run", "--once")
    assert result.returncode == 0, result.stderr
    return result


def full_passes_in_log(app) -> int:
    log = app.home.logs_dir / "syft-bg.log"
    return log.read_text().count("pass started") if log.exists() else 0


def status(app, name: str) -> str:
    return app.job_state(name)["status"]


def accept_peer(app, email: str = DS_EMAIL) -> None:
    app.cli("peers", "accept", email, check=True)


@pytest.fixture
def pending_job(app):
    """An accepted peer's job, pending: its deep file does not match the one rule."""
    app.set_config(execute={"enabled": False}, approve={"auto_approvals": [deep_rule("ok\n")]})
    app.request_peer(DS_EMAIL)
    app.run_pass()
    accept_peer(app)
    folder = app.submit("deep", run_sh=RUN_SH, files={"sub/deep.sh": "no\n"})
    app.run_pass()
    assert status(app, "deep") == "pending"
    settle(app)
    return folder


# -- each kind of change: the next pass does the full work ------------------------------


def test_an_idle_pass_ends_at_the_check_and_leaves_everything_as_it_was(app):
    app.submit("first")
    app.run_pass()
    settle(app)
    checkpoint = app.home.state_file.read_bytes()
    passes = full_passes_in_log(app)

    result = scheduled_pass(app)

    assert "nothing new" in result.stderr and "nothing changed since the full pass" in result.stderr
    assert full_passes_in_log(app) == passes
    assert app.home.state_file.read_bytes() == checkpoint


def test_a_new_job_folder_is_received_by_the_next_pass(app):
    settle(app)
    app.submit("new-job")
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "new-job") == "pending"


def test_a_job_of_a_new_data_scientist_and_a_protocol_0_job_are_received(app):
    settle(app)
    app.submit("v0-job", protocol="0")
    app.submit("other", ds_email="dave@lab.org")
    scheduled_pass(app)
    assert app.job_state("v0-job", protocol="0")["status"] == "pending"
    assert app.job_state("other", ds_email="dave@lab.org")["status"] == "pending"


def test_a_file_changed_deep_inside_a_pending_job_is_matched_again(app, pending_job):
    # code/sub/ changes; code/, the job folder and v1/ keep their times.
    (pending_job / "code" / "sub" / "deep.sh").write_text("ok\n")
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "deep") == "approved"


def test_a_file_added_deep_inside_a_pending_job_is_seen(app, pending_job):
    (pending_job / "code" / "sub" / "extra.sh").write_text("x\n")
    assert not skips(app)


def test_a_change_that_keeps_size_and_sets_the_old_mtime_back_is_seen(app, pending_job):
    deep = pending_job / "code" / "sub" / "deep.sh"
    before = deep.stat()
    deep.write_text("ok\n")  # same size
    os.utime(deep, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert deep.stat().st_mtime_ns == before.st_mtime_ns
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "deep") == "approved"


def test_a_pass_right_after_a_change_leaves_no_record_so_a_second_change_in_that_second_counts(
    app, pending_job
):
    deep = pending_job / "code" / "sub" / "deep.sh"
    deep.write_text("xx\n")
    app.run_pass()  # within the same second (and timestamp tick) as the write
    assert idle.read_record(app.home.root) is None
    # A second change of the same size in the same tick, time set back to the first:
    # what a file system with coarse timestamps shows.
    first = deep.stat()
    deep.write_text("ok\n")
    os.utime(deep, ns=(first.st_atime_ns, first.st_mtime_ns))
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "deep") == "approved"


def test_a_peer_request_is_read_by_the_next_pass(app):
    settle(app)
    app.request_peer(PEER)
    assert not skips(app)
    scheduled_pass(app)
    assert State.load(app.home.state_file).peer(PEER)["status"] == "requested"


def test_a_peer_request_written_into_a_folder_that_was_empty_is_read(app):
    (app.datasite.peers / PEER).mkdir(parents=True)
    app.run_pass()
    settle(app)
    app.request_peer(PEER)  # peers/ itself does not change
    assert not skips(app)
    scheduled_pass(app)
    assert State.load(app.home.state_file).peer(PEER)["status"] == "requested"


def test_a_data_scientist_deleting_a_pending_job_is_noticed(app, pending_job):
    shutil.rmtree(pending_job)
    assert not skips(app)
    scheduled_pass(app)
    record = State.load(app.home.state_file).job(DS_EMAIL, "deep")
    assert record["auto_note"].startswith("gone")


def test_a_config_edit_applies_at_the_next_pass(app, pending_job):
    app.set_config(approve={"auto_approvals": [deep_rule("no\n")]})
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "deep") == "approved"


def test_jobs_approve_and_the_pass_after_it_start_the_job(app, pending_job):
    app.set_config(execute={"enabled": True, "timeout": 60})
    settle(app)
    app.cli("jobs", "approve", f"{DS_EMAIL}/deep", check=True)
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "deep") in ("running", "done", "failed")


def test_jobs_reject_is_emailed_by_the_next_pass(app, pending_job):
    before = len(outbox(app))
    app.cli("jobs", "reject", f"{DS_EMAIL}/deep", "-r", "not now", check=True)
    assert not skips(app)
    scheduled_pass(app)
    assert len(outbox(app)) > before


def test_peers_accept_is_emailed_by_the_next_pass(app):
    app.request_peer(PEER)
    app.run_pass()
    settle(app)
    before = len(outbox(app))
    app.cli("peers", "accept", PEER, check=True)
    assert not skips(app)
    scheduled_pass(app)
    assert any(PEER in str(m["To"]) for m in outbox(app)[before:])


def test_any_command_that_takes_the_app_lock_makes_the_next_pass_full(app):
    settle(app)
    with PassLock(app.home, purpose="mail retry"):
        pass
    assert not skips(app)
    settle(app)
    app.cli("mail", "retry")
    assert not skips(app)


def test_stop_and_start_of_a_service_apply_at_the_next_pass(app):
    app.cli("stop", "sync")  # exits 1 here: no cron or systemd to schedule passes
    assert not app.config.step_enabled("sync")
    app.run_pass()
    settle(app)
    app.submit("while-stopped")
    app.run_pass()  # sync is off: nothing received, and nothing to do
    settle(app)
    app.cli("start", "sync")
    assert not skips(app)
    scheduled_pass(app)
    assert status(app, "while-stopped") == "pending"


def test_an_outbox_folder_removed_makes_the_next_pass_full(app):
    app.submit("mailed")
    app.run_pass()
    assert outbox(app)
    settle(app)
    passes = full_passes_in_log(app)
    shutil.rmtree(app.home.outbox_dir)
    assert not skips(app)
    scheduled_pass(app)
    assert full_passes_in_log(app) == passes + 1


def test_a_hand_edited_checkpoint_or_a_missing_record_makes_the_pass_full(app):
    settle(app)
    data = app.home.state_file.read_text()
    app.home.state_file.write_text(data)
    assert not skips(app)
    settle(app)
    idle.record_path(app.home.root)
    os.unlink(idle.record_path(app.home.root))
    assert not skips(app)
    Path(idle.record_path(app.home.root)).write_bytes(b"not a record")
    assert not skips(app)


def test_another_app_version_or_a_clock_gone_back_makes_the_pass_full(app, monkeypatch):
    settle(app)
    monkeypatch.setattr(idle, "__version__", "0.0.0-other")
    assert not skips(app)
    monkeypatch.undo()
    assert skips(app)
    with freeze_time(datetime.now(timezone.utc) - timedelta(minutes=5)):
        assert not skips(app)


def test_idle_check_off_makes_every_pass_full(app):
    app.set_config(schedule={"idle_check": False})
    for _ in range(3):
        app.run_pass()
        time.sleep(0.8)
    assert idle.read_record(app.home.root) is None


# -- each deadline: the pass after it does the work -----------------------------------


def test_the_heartbeat_is_due_at_its_hour(app):
    app.set_config(notify={"heartbeat": True, "heartbeat_hours": 1})
    app.run_pass()
    sent = len(outbox(app))
    assert sent == 1
    settle(app)
    later = datetime.now(timezone.utc) + timedelta(hours=1, minutes=1)
    with freeze_time(later):
        assert not skips(app)
        app.run_pass()
    assert len(outbox(app)) == sent + 1


def test_the_hourly_clean_up_of_run_folders_is_due_at_its_hour(app):
    settle(app)
    with freeze_time(datetime.now(timezone.utc) + timedelta(minutes=59)):
        assert skips(app)
    with freeze_time(datetime.now(timezone.utc) + timedelta(hours=1, minutes=1)):
        assert not skips(app)


def test_a_request_made_during_the_cool_down_is_read_when_the_cool_down_ends(app):
    # No run folders to clean up hourly: the cool-down is the only deadline.
    app.set_config(execute={"enabled": False}, approve={"peers": {"rerequest_after_days": 1}})
    app.request_peer("mallory@evil.example")
    app.run_pass()
    app.cli("peers", "reject", "mallory@evil.example", check=True)
    app.run_pass()
    again = app.request_peer("mallory@evil.example")
    asked = (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    again.write_text(yaml.safe_dump({"email": "mallory@evil.example", "requested_at": asked}))
    app.run_pass()
    record = State.load(app.home.state_file).peer("mallory@evil.example")
    assert record["status"] == "rejected" and record.get("asked_again")
    settle(app)
    with freeze_time(datetime.now(timezone.utc) + timedelta(hours=23)):
        assert skips(app)
    with freeze_time(datetime.now(timezone.utc) + timedelta(days=1, minutes=1)):
        assert not skips(app)
        app.run_pass()
    assert State.load(app.home.state_file).peer("mallory@evil.example")["status"] == "requested"


def test_a_job_still_arriving_is_rejected_after_its_grace(app):
    app.set_config(sync={"incomplete_grace": 2})
    folder = app.submit("arriving")
    (folder / "run.sh").unlink()
    app.run_pass()
    assert idle.read_record(app.home.root) is None

    def rejected() -> bool:
        scheduled_pass(app)
        return State.load(app.home.state_file).job(DS_EMAIL, "arriving")["status"] == "rejected"

    wait_until(rejected, "the incomplete job's rejection after its grace")


def test_a_running_job_is_reaped_after_its_timeout(app):
    app.set_config(execute={"timeout": 2})
    app.request_peer(DS_EMAIL)
    app.run_pass()
    accept_peer(app)
    app.submit("sleeper", run_sh="#!/bin/bash\nsleep 600\n", files={})
    app.run_pass()
    app.cli("jobs", "approve", f"{DS_EMAIL}/sleeper", check=True)
    app.run_pass()
    assert status(app, "sleeper") == "running"

    def finished() -> bool:
        assert not skips(app)
        scheduled_pass(app)
        return status(app, "sleeper") == "failed"

    wait_until(finished, "the job's timeout")


class RefusingSmtp:
    """An SMTP server that refuses one recipient for good (550) until told otherwise."""

    def __init__(self, refused: str) -> None:
        self.refused: str | None = refused
        self.accepted: list[list[str]] = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address == self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted.append(list(envelope.rcpt_tos))
        return "250 OK queued"


def test_an_email_held_back_is_retried_at_its_time(app):
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from faults_support import free_port

    handler = RefusingSmtp(refused=DS_EMAIL)
    controller = controller_module.Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        app.set_config(
            notify={
                "transport": "smtp",
                "smtp": {"host": "127.0.0.1", "port": controller.port, "security": "none"},
            },
            execute={"enabled": False},
        )
        app.submit("mailed")
        app.run_pass()
        queue = State.load(app.home.state_file).data["mail"]["queue"]
        assert [e["to"] for e in queue] == [DS_EMAIL] and queue[0]["not_before"]
        settle(app)
        handler.refused = None
        with freeze_time(datetime.now(timezone.utc) + timedelta(minutes=50)):
            assert skips(app)
        with freeze_time(datetime.now(timezone.utc) + timedelta(hours=1, minutes=1)):
            assert not skips(app)
            app.run_pass()
        assert [DS_EMAIL] in handler.accepted
        assert State.load(app.home.state_file).data["mail"]["queue"] == []
    finally:
        controller.stop()


# -- lock, status, run.sh ---------------------------------------------------------------


def test_a_pass_while_another_holds_the_lock_exits_0(app):
    app.submit("j")
    with PassLock(app.home):
        result = app.cli("run", "--once")
    assert result.returncode == 0
    assert "another pass is running" in result.stderr


def test_status_shows_the_idle_pass_and_when_the_last_full_pass_ran(app):
    settle(app)
    full_at = idle.read_record(app.home.root)["full_pass_at"]
    time.sleep(0.01)
    scheduled_pass(app)
    out = app.cli("status", check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("last pass:"))
    assert f"nothing changed since the full pass at {full_at}" in line
    checked_at = line.split()[2]
    assert checked_at > full_at


@pytest.mark.skipif(
    not (RUN_SH_FILE.parent / ".venv" / ".syft-bg-env").exists(),
    reason="run.sh's environment is made by ./run.sh --test",
)
def test_run_sh_ends_an_idle_pass_at_the_check_and_runs_a_full_one_after_a_change(app):
    settle(app)
    passes = full_passes_in_log(app)
    idle_run = subprocess.run(
        ["bash", str(RUN_SH_FILE)], env=app.env, capture_output=True, text=True, timeout=PATIENCE
    )
    assert idle_run.returncode == 0, idle_run.stderr
    assert "nothing changed since the full pass" in idle_run.stderr
    assert "preparing" not in idle_run.stderr
    assert full_passes_in_log(app) == passes
    app.submit("after")
    full_run = subprocess.run(
        ["bash", str(RUN_SH_FILE)], env=app.env, capture_output=True, text=True, timeout=PATIENCE
    )
    assert full_run.returncode == 0, full_run.stderr
    assert status(app, "after") == "pending"


# -- property: idle checks change nothing a full pass would not --------------------------

CHANGES = ("submit", "edit", "delete", "peer", "config", "nothing")


def test_idle_checks_and_full_passes_end_in_the_same_place(tmp_path_factory):
    """Two apps get the same changes; one starts each pass with the idle check, the
    other runs every pass in full: jobs, peers and emails end the same."""
    skipped = []

    @settings(max_examples=3)
    @given(steps=st.lists(st.sampled_from(CHANGES), min_size=2, max_size=3))
    def same_place(steps: list[str]) -> None:
        apps = [
            App(tmp_path_factory.mktemp(label)).init(execute={"enabled": False}) for label in "ab"
        ]
        for number, change in enumerate(steps):
            for built in apps:
                _apply(built, change, number)
            # Two rounds, each after the racy window: the first pass after a change
            # runs in full, the pass after an idle one may end at the check.
            for _ in range(2):
                time.sleep(idle.RACY_SECONDS + 0.1)
                for _ in range(2):
                    if skips(apps[0]):
                        skipped.append(change)
                    else:
                        apps[0].run_pass()
                    apps[1].run_pass()
            assert _outcome(apps[0]) == _outcome(apps[1]), steps[: number + 1]

    same_place()
    assert skipped, "the idle check never ended a pass"


def _apply(app, change: str, number: int) -> None:
    if change == "submit":
        app.submit(f"job-{number}", run_sh=RUN_SH, files={"sub/deep.sh": "no\n"})
    elif change == "edit":
        for folder in sorted((app.datasite.inbox / DS_EMAIL / "v1").glob("job-*")):
            (folder / "code" / "sub" / "deep.sh").write_text("ok\n")
            break
    elif change == "delete":
        for folder in sorted((app.datasite.inbox / DS_EMAIL / "v1").glob("job-*"))[-1:]:
            shutil.rmtree(folder)
    elif change == "peer":
        app.request_peer(f"peer{number}@uni.edu")
    elif change == "config":
        app.set_config(
            approve={
                "auto_approvals": [deep_rule("ok\n")],
                "peers": {"approved_emails": [DS_EMAIL]},
            }
        )


def _outcome(app) -> tuple:
    state = State.load(app.home.state_file).data
    jobs = sorted(
        (ds, name, record["status"], record.get("auto_note", "").startswith("gone"))
        for ds, per_ds in state["jobs"].items()
        for name, record in per_ds.items()
    )
    peers = sorted((email, record["status"]) for email, record in state["peers"].items())
    mails = sorted((str(m["To"]), str(m["Subject"])) for m in outbox(app))
    return jobs, peers, mails


def test_the_idle_check_imports_nothing_of_the_app_but_its_version(app):
    settle(app)
    # As run.sh runs it: without site-packages, the app folder first on the path.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from syft_bg_app.schedule.idle import try_idle_pass; "
        "code = try_idle_pass(); "
        "mods = sorted(m for m in sys.modules if m.startswith('syft_bg_app') or m in "
        "('yaml', 'filelock', 'logging', 'dataclasses', 'pathlib', 'json')); "
        "print(code, mods)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(RUN_SH_FILE.parent)],
        env=app.env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = "['syft_bg_app', 'syft_bg_app.schedule', 'syft_bg_app.schedule.idle']"
    assert result.stdout.strip() == f"0 {loaded}"
