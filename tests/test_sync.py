"""The sync step: receiving jobs and peer requests, noticing changes made elsewhere."""

from __future__ import annotations

import shutil

import yaml
from freezegun import freeze_time

from syft_bg_app.datasite.layout import Datasite, JobRef
from syft_bg_app.store.state import State
from syft_bg_app.sync import local as sync


def _events(app, kind=None):
    events = State.load(app.home.state_file).data["events"]
    return [e for e in events if kind is None or e["kind"] == kind]


def _disable_notify(app):
    # Keeps the event queue visible: nothing consumes it.
    app.set_config(notify={"enabled": False})


def test_a_complete_job_becomes_pending_with_syft_job_state_fields(app):
    app.submit("stats")
    app.run_pass()
    state = app.job_state("stats")
    assert state["status"] == "pending"
    assert state["canonical_name"] == "JobState" and state["version"] == "1"
    assert state["received_at"].endswith("Z")
    for field in ("approved_by", "rejected_by", "review_reason", "return_code"):
        assert field in state and state[field] is None


def test_the_same_job_name_from_two_data_scientists_are_two_jobs(app):
    _disable_notify(app)
    app.submit("analysis", ds_email="alice@uni.edu")
    app.submit("analysis", ds_email="bob@lab.org")
    app.run_pass()
    assert app.job_state("analysis", "alice@uni.edu")["status"] == "pending"
    assert app.job_state("analysis", "bob@lab.org")["status"] == "pending"
    submitted = {(e["ds_email"], e["job"]) for e in _events(app, "job_submitted")}
    assert submitted == {("alice@uni.edu", "analysis"), ("bob@lab.org", "analysis")}


def test_protocol_0_jobs_are_read_and_answered_in_the_v0_layout(app):
    app.submit("old-style", protocol="0")
    app.run_pass()
    state = app.job_state("old-style", protocol="0")
    assert state["status"] == "pending"
    assert "canonical_name" not in state


def test_an_arriving_job_waits_and_is_received_once_complete(app):
    folder = app.submit("partial", files={"main.py": "print(1)\n", "util.py": "X = 1\n"})
    util = (folder / "code" / "util.py").read_bytes()
    (folder / "code" / "util.py").unlink()
    app.run_pass()
    review = app.datasite.review / "alice@uni.edu" / "v1" / "partial"
    assert not (review / "state.yaml").exists()
    (folder / "code" / "util.py").write_bytes(util)
    app.run_pass()
    assert app.job_state("partial")["status"] == "pending"


def test_an_incomplete_job_is_rejected_with_a_reason_after_the_grace_period(app):
    app.set_config(sync={"incomplete_grace": 600})
    folder = app.submit("stuck", files={"main.py": "print(1)\n"})
    (folder / "run.sh").unlink()
    with freeze_time("2026-11-22 10:00:00"):
        app.run_pass()
    with freeze_time("2026-11-22 10:09:00"):
        app.run_pass()
    assert not (app.datasite.review / "alice@uni.edu" / "v1" / "stuck" / "state.yaml").exists()
    with freeze_time("2026-11-22 10:10:01"):
        app.run_pass()
    state = app.job_state("stuck")
    assert state["status"] == "rejected"
    assert state["rejected_by"] == app.do_email
    assert "incomplete after 601 seconds" in state["review_reason"]
    assert "run.sh has not arrived" in state["review_reason"]


def test_an_invalid_job_is_rejected_at_once_and_others_proceed(app):
    bad = app.submit("extra-entry")
    (bad / "notes.txt").write_text("not allowed at the top level")
    app.submit("fine")
    result = app.run_pass()
    assert result.exit_code == 0
    rejected = app.job_state("extra-entry")
    assert rejected["status"] == "rejected"
    assert "unexpected entry 'notes.txt'" in rejected["review_reason"]
    assert app.job_state("fine")["status"] == "pending"


def test_a_symlinked_run_sh_is_rejected(app, tmp_path):
    outside = tmp_path / "outside.sh"
    outside.write_text("cat /etc/shadow\n")
    folder = app.submit("sneaky")
    (folder / "run.sh").unlink()
    (folder / "run.sh").symlink_to(outside)
    app.run_pass()
    assert app.job_state("sneaky")["review_reason"] == "run.sh is a symlink"


def test_a_status_written_by_another_tool_is_noticed_once(app):
    _disable_notify(app)
    app.set_config(execute={"enabled": False})  # the other tool runs it
    app.submit("done-elsewhere")
    app.run_pass()
    ds = app.datasite
    ref = JobRef("alice@uni.edu", "done-elsewhere")
    ds.write_job_state(ref, status="approved", approval_method="manual")
    app.run_pass()
    ds.write_job_state(ref, status="done", return_code=0, completed_at="2026-11-22T10:00:00Z")
    app.run_pass()
    app.run_pass()
    kinds = [e["kind"] for e in _events(app) if e.get("job") == "done-elsewhere"]
    assert kinds == ["job_submitted", "job_approved", "job_finished"]
    finished = _events(app, "job_finished")[0]
    assert finished["status"] == "done" and finished["return_code"] == 0


def test_the_first_pass_on_a_datasite_with_history_queues_no_events(app):
    _disable_notify(app)
    for name in ("old-1", "old-2"):
        app.submit(name)
        Datasite(app.root, app.do_email).write_job_state(
            JobRef("alice@uni.edu", name), status="done", return_code=0
        )
    app.datasite.ensure_peer_folders("alice@uni.edu")
    app.run_pass()
    state = State.load(app.home.state_file)
    assert state.data["events"] == []
    assert state.job("alice@uni.edu", "old-1")["status"] == "done"
    assert state.peer("alice@uni.edu")["status"] == "accepted"
    app.submit("new")
    app.run_pass()
    assert [e["job"] for e in _events(app, "job_submitted")] == ["new"]


def test_the_go_client_layout_is_detected(bare_app):
    (bare_app.root / "datasites" / "owner@datasite.org").mkdir(parents=True)
    bare_app.init()
    assert bare_app.datasite.path == bare_app.root / "datasites" / "owner@datasite.org"
    bare_app.submit("go-layout")
    bare_app.run_pass()
    state_file = (
        bare_app.root
        / "datasites/owner@datasite.org/app_data/job/review/alice@uni.edu/v1/go-layout/state.yaml"
    )
    assert yaml.safe_load(state_file.read_text())["status"] == "pending"


def test_peer_requests_are_read_once_and_bad_ones_are_reported(app):
    _disable_notify(app)
    app.request_peer("bob@lab.org", message="hello")
    forged = app.request_peer("carol@lab.org")
    forged.write_text(yaml.safe_dump({"email": "admin@datasite.org", "requested_at": "x"}))
    app.run_pass()
    app.run_pass()
    state = State.load(app.home.state_file)
    assert state.peer("bob@lab.org")["status"] == "requested"
    assert state.peer("bob@lab.org")["message"] == "hello"
    assert "does not match its folder" in state.peer("carol@lab.org")["problem"]
    assert [e["ds_email"] for e in _events(app, "peer_requested")] == ["bob@lab.org"]


def test_an_idle_pass_does_not_list_unchanged_inbox_folders(app, monkeypatch):
    for i in range(5):
        app.submit(f"job-{i}")
        Datasite(app.root, app.do_email).write_job_state(
            JobRef("alice@uni.edu", f"job-{i}"), status="done"
        )
    app.run_pass()
    # Age the folders past the racy window so their mtimes are trusted.
    state = State.load(app.home.state_file)
    for key in list(state.data["scan"]):
        state.data["scan"][key] = None
    state.save()
    app.run_pass()
    listed = []
    original = Datasite.list_job_names
    monkeypatch.setattr(
        Datasite,
        "list_job_names",
        lambda self, ds: listed.append(ds) or original(self, ds),
    )
    monkeypatch.setattr(sync, "RACY_SECONDS", 0.0)
    app.run_pass()
    app.run_pass()
    assert listed.count("alice@uni.edu") <= 1
    app.submit("fresh")
    app.run_pass()
    assert app.job_state("fresh")["status"] == "pending"


def test_a_deleted_job_folder_does_not_break_the_pass(app):
    folder = app.submit("vanishing", files={"a.py": "1"})
    (folder / "code" / "a.py").unlink()
    app.run_pass()
    shutil.rmtree(folder)
    assert app.run_pass().exit_code == 0


def test_a_job_that_cannot_be_received_does_not_hold_up_others_and_is_retried(app):
    app.submit("blocked", ds_email="alice@uni.edu")
    app.submit("fine", ds_email="bob@lab.org")
    # A file where alice's review folder belongs: writing her state.yaml fails.
    app.datasite.review.mkdir(parents=True, exist_ok=True)
    blocker = app.datasite.review / "alice@uni.edu"
    blocker.write_text("in the way")

    result = app.run_pass()

    assert result.exit_code == 1 and result.failed_steps == ["sync"]
    assert app.job_state("fine", "bob@lab.org")["status"] == "pending"
    steps = State.load(app.home.state_file).data["steps"]
    assert "alice@uni.edu/blocked" in steps["sync"]["error"]

    blocker.unlink()
    assert app.run_pass().exit_code == 0
    assert app.job_state("blocked", "alice@uni.edu")["status"] == "pending"


def test_a_request_yaml_that_is_a_folder_is_reported_and_other_requests_still_read(app):
    _disable_notify(app)
    (app.datasite.peers / "mallory@evil.example" / "request.yaml" / "x").mkdir(parents=True)
    app.request_peer("bob@lab.org")
    assert app.run_pass().exit_code == 0
    state = State.load(app.home.state_file)
    assert state.peer("bob@lab.org")["status"] == "requested"
    assert "cannot be read" in state.peer("mallory@evil.example")["problem"]


def test_a_rejected_peer_asks_again_only_with_a_newer_request(app):
    _disable_notify(app)
    app.set_config(approve={"peers": {"rerequest_after_days": 0}})
    path = app.request_peer("bob@lab.org")
    app.run_pass()
    app.cli("peers", "reject", "bob@lab.org", "-r", "unknown", check=True)
    # Rewriting the same request does not reopen it.
    path.write_text(path.read_text() + "\n")
    app.run_pass()
    assert State.load(app.home.state_file).peer("bob@lab.org")["status"] == "rejected"
    path.write_text(
        yaml.safe_dump({"email": "bob@lab.org", "requested_at": "2099-01-01T00:00:00Z"})
    )
    app.run_pass()
    assert State.load(app.home.state_file).peer("bob@lab.org")["status"] == "requested"
    assert len(_events(app, "peer_requested")) == 2


def test_a_huge_value_in_config_yaml_does_not_end_up_whole_in_the_reason(app):
    folder = app.submit("huge-type")
    metadata = yaml.safe_load((folder / "config.yaml").read_text())
    metadata["type"] = "r" * 100_000
    metadata["files"] = ["script.sh", "/" + "e" * 100_000]
    (folder / "config.yaml").write_text(yaml.safe_dump(metadata))

    app.run_pass()

    state = app.job_state("huge-type")
    assert state["status"] == "rejected"
    assert "type must be python or bash, got 'rrrr" in state["review_reason"]
    assert "unsafe path '/eeee" in state["review_reason"]
    assert len(state["review_reason"]) < 400
