"""Peer requests and submissions from data scientists who try to spam the owner or
slip past peer acceptance: one email per request, a cool-down after a rejection,
blocking for good, and jobs of non-peers that wait until the peer is accepted."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from conftest import DO_EMAIL, App, outbox

from syft_bg_app.clock import iso, utcnow
from syft_bg_app.store.state import State

MALLORY = "mallory@evil.example"
RUN_SH = "#!/bin/bash\nbash code/script.sh\n"
SCRIPT = "echo hello\n"


def _sha(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _rule(name: str = "hello", peers: tuple[str, ...] = ()) -> dict:
    return {
        "name": name,
        "peers": list(peers),
        "files": {"run.sh": _sha(RUN_SH), "code/script.sh": _sha(SCRIPT)},
    }


def _write_request(app: App, email: str, requested_at: str, message: str | None = None) -> None:
    path = app.datasite.peers / email / "request.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"email": email, "requested_at": requested_at}
    if message is not None:
        data["message"] = message
    path.write_text(yaml.safe_dump(data))


def _peer_emails(app: App, to: str) -> int:
    return sum(1 for m in outbox(app) if m["X-Syft-BG-Event"] == "peer_requested" and m["To"] == to)


def _peer(app: App, email: str) -> dict | None:
    return State.load(app.home.state_file).peer(email)


def _pass_ok(app: App) -> None:
    result = app.run_pass()
    assert result.exit_code == 0, result.summary


def _later(days: float) -> str:
    return iso(utcnow() + timedelta(days=days))


def _age_decision(app: App, email: str, days: float) -> None:
    """Move the data owner's decision on ``email`` into the past (no pass is running)."""
    data = json.loads(app.home.state_file.read_text())
    data["peers"][email]["decided_at"] = iso(utcnow() - timedelta(days=days))
    app.home.state_file.write_text(json.dumps(data))


# -- one email per request ------------------------------------------------------------


def _rewrite_new_date(app: App, n: int) -> None:
    _write_request(app, MALLORY, _later(n + 1), "please")


def _rewrite_new_message(app: App, n: int) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z", f"please, round {n}")


def _rewrite_same_bytes(app: App, n: int) -> None:
    path = app.datasite.peers / MALLORY / "request.yaml"
    path.write_bytes(path.read_bytes())


def _rewrite_invalid_then_valid(app: App, n: int) -> None:
    path = app.datasite.peers / MALLORY / "request.yaml"
    if n % 2:
        path.write_text("email: [not, an, address]\n")
    else:
        _write_request(app, MALLORY, _later(n + 1))


def _rewrite_delete_and_recreate(app: App, n: int) -> None:
    import shutil

    shutil.rmtree(app.datasite.peers / MALLORY)
    _pass_ok(app)
    _write_request(app, MALLORY, _later(n + 1))


@pytest.mark.parametrize(
    "rewrite",
    [
        _rewrite_new_date,
        _rewrite_new_message,
        _rewrite_same_bytes,
        _rewrite_invalid_then_valid,
        _rewrite_delete_and_recreate,
    ],
)
def test_rewriting_a_request_never_sends_a_second_email(app: App, rewrite) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z", "please")
    _pass_ok(app)
    for n in range(4):
        rewrite(app, n)
        _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == 1
    assert _peer_emails(app, MALLORY) == 1
    # Also after a rejection, within the cool-down.
    app.cli("peers", "reject", MALLORY, "-r", "no", check=True)
    for n in range(4, 8):
        rewrite(app, n)
        _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == 1
    assert _peer(app, MALLORY)["status"] == "rejected"


def test_after_a_rejection_a_new_request_counts_only_after_the_cool_down(app: App) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _pass_ok(app)
    app.cli("peers", "reject", MALLORY, check=True)
    _write_request(app, MALLORY, _later(1), "again")
    _pass_ok(app)
    _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == 1
    listed = app.cli("peers", "list", check=True).stdout
    assert "asked again" in listed and "rejected" in listed

    # The cool-down (default 7 days) passes: the request already there counts, once.
    _age_decision(app, MALLORY, 6.9)
    _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == 1
    _age_decision(app, MALLORY, 7.1)
    _pass_ok(app)
    _pass_ok(app)
    assert _peer(app, MALLORY)["status"] == "requested"
    assert _peer_emails(app, DO_EMAIL) == 2
    assert _peer_emails(app, MALLORY) == 2


def test_a_request_dated_before_the_rejection_never_counts_again(app: App) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _pass_ok(app)
    app.cli("peers", "reject", MALLORY, check=True)
    _age_decision(app, MALLORY, 30)
    for n in range(3):
        _write_request(app, MALLORY, "2020-01-01T00:00:00Z", f"old {n}")
        _pass_ok(app)
    assert _peer(app, MALLORY)["status"] == "rejected"
    assert _peer_emails(app, DO_EMAIL) == 1


def test_the_cool_down_is_a_config_key(app: App) -> None:
    app.set_config(approve={"peers": {"rerequest_after_days": 0}})
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _pass_ok(app)
    app.cli("peers", "reject", MALLORY, check=True)
    _write_request(app, MALLORY, _later(1))
    _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == 2
    app.set_config(approve={"peers": {"rerequest_after_days": -1}})
    result = app.cli("run", "--once")
    assert result.returncode == 2 and "rerequest_after_days" in result.stderr


# -- block ----------------------------------------------------------------------------


def _block_first(app: App) -> None:
    app.cli("peers", "block", MALLORY, check=True)


def _block_while_requested(app: App) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _pass_ok(app)
    app.cli("peers", "block", MALLORY, check=True)


def _block_after_rejection(app: App) -> None:
    _block_while_requested(app)
    app.cli("peers", "unblock", MALLORY, check=True)
    app.cli("peers", "reject", MALLORY, check=True)
    app.cli("peers", "block", MALLORY, check=True)


def _block_an_accepted_peer(app: App) -> None:
    app.cli("peers", "accept", MALLORY, check=True)
    _pass_ok(app)
    app.cli("peers", "block", MALLORY, check=True)


def _block_by_another_spelling(app: App) -> None:
    app.cli("peers", "block", MALLORY.upper(), check=True)


def _block_two_spellings_at_once(app: App) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _write_request(app, MALLORY.capitalize(), "2026-11-20T09:00:00Z")
    _pass_ok(app)
    app.cli("peers", "block", MALLORY.upper(), check=True)
    peers = State.load(app.home.state_file).data["peers"]
    assert {k: r["status"] for k, r in peers.items()} == {
        MALLORY: "blocked",
        MALLORY.capitalize(): "blocked",
    }


@pytest.mark.parametrize(
    "block",
    [
        _block_first,
        _block_while_requested,
        _block_after_rejection,
        _block_an_accepted_peer,
        _block_by_another_spelling,
        _block_two_spellings_at_once,
    ],
)
def test_a_blocked_data_scientist_is_ignored_for_good(app: App, block) -> None:
    app.set_config(approve={"auto_approvals": [_rule()]})
    block(app)
    before = _peer_emails(app, DO_EMAIL)
    for n in range(3):
        _write_request(app, MALLORY, _later(n + 30), f"round {n}")
        # Even an inbox permission file (as another tool writes it) does not make them a peer.
        app.submit(f"job-{n}", ds_email=MALLORY, run_sh=RUN_SH, files={"script.sh": SCRIPT})
        _pass_ok(app)
    _age_decision(app, MALLORY, 365)
    _pass_ok(app)
    assert _peer_emails(app, DO_EMAIL) == before
    sent = [m for m in outbox(app) if m["X-Syft-BG-Event"] == "job_submitted"]
    assert sent == []
    assert not (app.datasite.review / MALLORY / "v1").exists()
    listed = app.cli("peers", "list", check=True).stdout
    assert "blocked" in listed

    # Unblocking restores what was before; a blocked-first stranger is forgotten.
    app.cli("peers", "unblock", MALLORY, check=True)
    assert "blocked" not in app.cli("peers", "list", check=True).stdout


def test_unblocking_an_accepted_peer_receives_their_jobs(app: App) -> None:
    app.cli("peers", "accept", MALLORY, check=True)
    app.cli("peers", "block", MALLORY, check=True)
    app.submit("waited", ds_email=MALLORY)
    _pass_ok(app)
    assert not (app.datasite.review / MALLORY / "v1" / "waited").exists()
    result = app.cli("peers", "unblock", MALLORY, check=True)
    assert "accepted again" in result.stdout
    _pass_ok(app)
    assert app.job_state("waited", MALLORY)["status"] == "pending"


# -- jobs of non-peers ------------------------------------------------------------------


def _stranger(app: App) -> None:
    pass


def _requested(app: App) -> None:
    _write_request(app, MALLORY, "2026-11-20T09:00:00Z")
    _pass_ok(app)


def _rejected(app: App) -> None:
    _requested(app)
    app.cli("peers", "reject", MALLORY, check=True)


@pytest.mark.parametrize("standing", [_stranger, _requested, _rejected])
@pytest.mark.parametrize("peers", [(), (MALLORY,)])
def test_jobs_of_a_non_peer_wait_until_the_peer_is_accepted_and_no_rule_approves_them(
    app: App, standing, peers
) -> None:
    app.set_config(approve={"auto_approvals": [_rule(peers=peers)]}, execute={"enabled": False})
    standing(app)
    for name in ("one", "two"):
        app.submit(
            name, ds_email=MALLORY, run_sh=RUN_SH, files={"script.sh": SCRIPT}, as_peer=False
        )
    _pass_ok(app)
    _pass_ok(app)
    assert not (app.datasite.review / MALLORY / "v1").exists()
    assert [m for m in outbox(app) if m["X-Syft-BG-Event"] == "job_submitted"] == []
    assert "2 job(s) waiting for peer acceptance" in app.cli("peers", "list", check=True).stdout
    assert "jobs waiting for peer acceptance: 2" in app.cli("status", check=True).stdout
    jobs = app.cli("jobs", "list", check=True).stdout
    assert "one" not in jobs and "two" not in jobs
    refused = app.cli("jobs", "approve", f"{MALLORY}/one")
    assert refused.returncode == 2 and "not an accepted peer" in refused.stderr

    if standing is _rejected:
        # A permission file appearing in the inbox does not undo the data owner's rejection.
        app.datasite.write_permissions(app.datasite.inbox / MALLORY, write=[MALLORY])
        _pass_ok(app)
        assert not (app.datasite.review / MALLORY / "v1").exists()
        assert _peer(app, MALLORY)["status"] == "rejected"

    app.cli("peers", "accept", MALLORY, check=True)
    _pass_ok(app)
    assert app.job_state("one", MALLORY)["status"] == "approved"
    assert app.job_state("two", MALLORY)["status"] == "approved"
    assert "waiting for peer acceptance" not in app.cli("peers", "list", check=True).stdout
    submitted = [m for m in outbox(app) if m["X-Syft-BG-Event"] == "job_submitted"]
    assert len(submitted) == 4  # two jobs, owner and data scientist, once each


def test_a_job_of_a_non_peer_is_held_also_when_it_arrives_over_several_passes(app: App) -> None:
    folder = app.submit("slow", ds_email=MALLORY, as_peer=False)
    (folder / "run.sh").unlink()
    app.set_config(sync={"incomplete_grace": 0})
    _pass_ok(app)
    _pass_ok(app)
    # Never rejected as incomplete: it is not received at all until acceptance.
    assert not (app.datasite.review / MALLORY).exists()
    (folder / "run.sh").write_text("#!/bin/bash\necho hi\n")
    app.cli("peers", "accept", MALLORY, check=True)
    _pass_ok(app)
    assert app.job_state("slow", MALLORY)["status"] == "pending"


# -- who counts as a peer on an existing datasite ----------------------------------------


def test_data_scientists_given_an_inbox_by_syft_job_or_before_this_app_are_peers(app: App) -> None:
    from syft_perms.syftperm_context import SyftPermContext

    def grant(email: str) -> None:
        inbox = app.datasite.inbox / email
        inbox.mkdir(parents=True, exist_ok=True)
        context = SyftPermContext(datasite=app.datasite.path)
        context.open(inbox.relative_to(app.datasite.path)).grant_write_access(email)

    grant("old@uni.edu")
    app.submit("before", ds_email="old@uni.edu", as_peer=False)
    _pass_ok(app)
    assert _peer(app, "old@uni.edu")["status"] == "accepted"
    assert app.job_state("before", "old@uni.edu")["status"] == "pending"

    grant("later@uni.edu")
    app.submit("after", ds_email="later@uni.edu", as_peer=False)
    _pass_ok(app)
    assert _peer(app, "later@uni.edu")["status"] == "accepted"
    assert app.job_state("after", "later@uni.edu")["status"] == "pending"


def test_a_non_peer_with_a_folder_name_that_is_not_utf8_waits_like_any_other(app: App) -> None:
    import os

    inbox = os.fsencode(app.datasite.inbox)
    job = os.path.join(inbox, b"ev\xffl@evil.example", b"v1", b"job", b"code")
    os.makedirs(job)
    for _ in range(2):
        result = app.cli("run", "--once")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    status = app.cli("status", check=True).stdout
    assert "jobs waiting for peer acceptance: 1 from 1 data scientist(s)" in status
    assert not (app.datasite.review).exists() or not any(app.datasite.review.iterdir())
