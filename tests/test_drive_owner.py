"""The owner's Drive round at scale and over time: big listings, generation changes,
the owner's own checkpoints.

The other side is the fake Drive of tests/fake_drive.py (which pages as Drive does
and refuses over-long queries) and, where it matters, the real syft clients from
PyPI, as in tests/test_drive_sync.py.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time

from tests.conftest import DS_EMAIL, App
from tests.fake_drive import FOLDER, MAX_PAGE_SIZE, FakeDrive
from tests.test_drive_sync import (
    SYFT_0_10,
    RealClient,
    client_venv,
    connected_peer,
    drive_app,
    run_until,
)


def proposal(ds: str, do: str, files: dict[str, str], old_hash: str | None = None) -> bytes:
    """A ``msgv2`` message as the clients write it: files under ``ds``'s inbox, new
    ones unless ``old_hash`` names the content the data scientist saw."""
    from syft_bg_app.sync.drive import protocol

    changes = [
        {
            "id": str(uuid.uuid4()),
            "path_in_datasite": path,
            "content": text,
            "content_type": "text",
            "old_hash": old_hash,
            "new_hash": protocol.sha256_hex(text.encode()),
            "is_deleted": False,
            "submitted_timestamp": 1000.0,
            "datasite_email": do,
        }
        for path, text in files.items()
    ]
    body = {"id": str(uuid.uuid4()), "sender_email": ds, "proposed_file_changes": changes}
    return protocol.compress(json.dumps(body).encode())


def job_files(ds: str, name: str) -> dict[str, str]:
    top = f"app_data/job/inbox/{ds}/{name}"
    return {
        f"{top}/run.sh": "#!/bin/bash\nbash code/script.sh\n",
        f"{top}/code/script.sh": f"echo {name}\n",
        f"{top}/config.yaml": f"name: {name}\ntype: bash\nfiles: [script.sh]\n",
    }


def inbox_of(drive: FakeDrive, ds: str):
    return [f for f in drive.files.values() if f.name.endswith(f"#inbox#{ds}") and f.owner == ds][0]


def send(drive: FakeDrive, ds: str, do: str, name: str, stamp: float) -> None:
    drop(drive, ds, proposal(ds, do, job_files(ds, name)), stamp)


def drop(drive: FakeDrive, ds: str, message: bytes, stamp: float) -> str:
    """Put ``message`` in ``ds``'s inbox on Drive as their client would; its name."""
    name = f"msgv2_{stamp}_{uuid.uuid4().hex}.tar.gz"
    drive._create(ds, {"name": name, "parents": [inbox_of(drive, ds).id]}, message)
    return name


def test_more_peers_folders_than_one_page_are_all_seen(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, notify={"enabled": False})
    peers = [f"ds{i}@uni.edu" for i in range(1100)]
    for peer in peers:
        drive.add_peer_folders(peer, app.do_email, "0.1.117")
    assert len(drive.files) > 2 * MAX_PAGE_SIZE
    assert app.run_pass().exit_code == 0
    asked = [p for p in peers if app.datasite.peer_request_file(p).exists()]
    assert len(asked) == len(peers)


def test_inboxes_of_many_peers_are_listed_in_queries_drive_accepts(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, notify={"enabled": False})
    app.set_config(approve={"peers": {"approved_domains": ["uni.edu"]}})
    # Drive refuses a query naming too many folders at a bound it does not document.
    drive.max_query_length = 2000
    peers = [f"ds{i:03d}@uni.edu" for i in range(100)]
    for peer in peers:
        drive.add_peer_folders(peer, app.do_email, "0.1.117")
    for _ in range(3):  # requests read, accepted, accepted on Drive
        assert app.run_pass().exit_code == 0
    assert sum(len(f"'{inbox_of(drive, p).id}' in parents or ") for p in peers) > 2000
    for peer in (peers[0], peers[-1]):
        send(drive, peer, app.do_email, f"job-of-{peer.split('@')[0]}", 1000.0)
    assert app.run_pass().exit_code == 0
    for peer in (peers[0], peers[-1]):
        name = f"job-of-{peer.split('@')[0]}"
        assert (app.datasite.inbox / peer / name / "run.sh").exists(), peer
        assert not drive.children(inbox_of(drive, peer).id)
    assert app.run_pass().exit_code == 0  # the jobs' state travels to their senders
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    # One listing of the peers' folders and two of the 100 inboxes: the query Drive
    # refused once (100 folders) is not tried again.
    assert drive.count(app.do_email) - before == 3


def test_an_idle_pass_at_100_peers_makes_two_drive_requests(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, notify={"enabled": False})
    app.set_config(approve={"peers": {"approved_domains": ["uni.edu"]}})
    for i in range(100):
        drive.add_peer_folders(f"ds{i:03d}@uni.edu", app.do_email, "0.1.117")
    for _ in range(4):
        assert app.run_pass().exit_code == 0
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before == 2  # the peers' folders, their inboxes


def test_a_proposal_behind_more_than_a_page_of_other_files_is_applied(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, notify={"enabled": False})
    app.set_config(approve={"peers": {"approved_emails": [DS_EMAIL]}})
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    inbox = inbox_of(drive, DS_EMAIL)
    for i in range(MAX_PAGE_SIZE + 50):  # what the inbox holds besides messages
        drive._create(DS_EMAIL, {"name": f"note{i}.txt", "parents": [inbox.id]}, b"x")
    send(drive, DS_EMAIL, app.do_email, "late", 2000.0)
    assert app.run_pass().exit_code == 0
    assert (app.datasite.inbox / DS_EMAIL / "late" / "code" / "script.sh").read_text() == (
        "echo late\n"
    )
    assert not [f for f in drive.children(inbox.id) if f.name.startswith("msgv2_")]


def push_job_0_10(ds: RealClient, do: str, name: str) -> None:
    """A job as the real syft 0.10 client sends one: its files, pushed as one proposal."""
    ds.run(
        f"""
        from pathlib import Path
        job = Path(c.syftbox_folder) / {do!r} / "app_data/job/inbox"
        job = job / {ds.email!r} / "v1" / {name!r}
        (job / "code").mkdir(parents=True)
        (job / "code" / "script.sh").write_text("echo {name} on syft 0.10\\n")
        (job / "run.sh").write_text("#!/bin/bash\\nbash code/script.sh\\n")
        (job / "config.yaml").write_text(
            "name: {name}\\ntype: bash\\nsubmitted_at: '2026-11-20T10:00:00Z'\\n"
            "files: [script.sh]\\ndependencies: []\\njob_type: local\\n"
            "canonical_name: JobSubmissionMetadata\\nversion: '1'\\n"
        )
        c.push_job_files(job)
        """
    )


def test_a_change_of_generation_serves_the_new_one_and_names_the_old(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    alice = connected_peer(app, drive, syft_client_python)  # generation 0.1
    alice.run(f"c.submit_bash_job({app.do_email!r}, 'echo before the change', job_name='old')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/old").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/old", check=True)
    run_until(app, lambda: app.job_state("old", protocol="0").get("status") == "done", "the job")
    app.run_pass()
    old_folders = {f.id for f in drive.files.values() if f.owner == app.do_email}

    app.set_config(drive={"generation": "0.10"})
    assert app.run_pass().exit_code == 0
    mine = [f for f in drive.named("SYFT_version.json") if f.owner == app.do_email]
    assert len(mine) == 1
    assert json.loads(mine[0].content)["syft_client_version"] == "0.10.0"
    status = app.cli("status", check=True).stdout
    assert f"Drive peer {DS_EMAIL} runs syft-client 0.1.117" in status
    assert "set drive.generation: '0.1'" in status

    python_0_10 = client_venv(SYFT_0_10)
    bob = RealClient(python_0_10, drive, app.tmp / "bob", "bob@uni.edu", module="syft")
    bob.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()
    app.run_pass()
    push_job_0_10(bob, app.do_email, "new")
    run_until(app, lambda: app.cli("jobs", "show", "bob@uni.edu/new").returncode == 0, "job")
    app.cli("jobs", "approve", "bob@uni.edu/new", check=True)
    run_until(app, lambda: app.job_state("new", "bob@uni.edu").get("status") == "done", "the job")
    app.run_pass()
    bob.run("c.sync()")
    result = bob.result_file(app.do_email, "v1/new", "stdout.txt")
    assert result.read_text() == "new on syft 0.10\n"

    # Alice moves to syft 0.10 as well: her earlier results reach her new client,
    # through folders of her new generation, never the 0.1 ones.
    alice_0_10 = RealClient(python_0_10, drive, app.tmp / "alice10", DS_EMAIL, module="syft")
    with (alice_0_10.redirect / "sitecustomize.py").open("a") as answers:
        # Her login asks what to do with her 0.1 data: "1", upgrade and keep it.
        answers.write("import builtins\nbuiltins.input = lambda prompt='': '1'\n")
    alice_0_10.run(f"c.add_peer({app.do_email!r}, force=True)")
    app.run_pass()
    app.run_pass()
    alice_0_10.run("c.sync()")
    state = yaml.safe_load(alice_0_10.result_file(app.do_email, "old", "state.yaml").read_text())
    assert state["status"] == "done"
    made_since = [
        f.name
        for f in drive.files.values()
        if f.owner == app.do_email and f.id not in old_folders and f.mime == FOLDER
    ]
    assert sorted(made_since) == sorted(
        [
            f"0.10.0#{app.do_email}",
            f"{app.do_email}-0.10.0-rolling-state",
            *(
                f"syft_datasite#0.10.0#{ds}#{kind}#{app.do_email}"
                for ds in ("bob@uni.edu", DS_EMAIL)
                for kind in ("inbox", "outbox")
            ),
            f"syft_bob@uni.edu_to_{app.do_email}_archive",
        ]
    ), made_since
    assert "other-version" not in app.cli("peers", "list", check=True).stdout


def test_the_owners_checkpoints_stay_small_and_the_owners_notebook_sees_everything(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    from syft_bg_app.sync.drive import protocol

    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo checkpointed', job_name='hello')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/hello").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/hello", check=True)
    run_until(app, lambda: app.job_state("hello", protocol="0").get("status") == "done", "job")
    notes = app.datasite.review / DS_EMAIL / "notes"
    notes.mkdir(parents=True)
    # Four times the client's threshold of 50 paths: four incremental checkpoints,
    # merged into one full checkpoint; then a few changes the rolling state holds.
    for batch in range(4):
        for i in range(60):
            (notes / f"n{batch}-{i}.txt").write_text(f"note {batch} {i}\n")
        app.run_pass()
    (notes / "n0-0.txt").write_text("changed after the checkpoint\n")
    (notes / "n0-1.txt").unlink()
    (notes / "late.txt").write_text("after the checkpoint\n")
    app.run_pass()

    mine = {f.name: f for f in drive.files.values() if f.owner == app.do_email}
    folder = mine[f"{app.do_email}-0.1.117-checkpoints"]
    kept = sorted(f.name.split("_")[0] for f in drive.children(folder.id))
    assert kept == ["checkpoint"], kept
    rolling_folder = mine[f"{app.do_email}-0.1.117-rolling-state"]
    (rolling,) = drive.children(rolling_folder.id)
    events = json.loads(protocol.uncompress(rolling.content, 10**8))["events"]
    assert len(events) < protocol.CHECKPOINT_AT, len(events)

    notebook = RealClient(
        syft_client_python, drive, app.tmp / "do-notebook", app.do_email, login="login_do"
    )
    out = notebook.run(
        f"""
        from pathlib import Path
        print("JOBS", json.dumps({{j.name: j.status for j in c.jobs}}))
        notes = Path(c.syftbox_folder) / {app.do_email!r} / "app_data/job/review"
        notes = notes / {DS_EMAIL!r} / "notes"
        print("NOTES", json.dumps({{p.name: p.read_text() for p in notes.iterdir()}}))
        """
    )
    # Restored from the one full checkpoint and the rolling state of the last pass.
    assert "Found full checkpoint with" in out and "Found rolling state with 3 events" in out
    assert 'JOBS {"hello": "done"}' in out, out
    seen = json.loads(out.split("NOTES ", 1)[1].splitlines()[0])
    expected = {p.name: p.read_text() for p in notes.iterdir()}
    assert len(expected) == 4 * 60
    assert seen == expected


BOB = "bob@uni.edu"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits of Drive retries, recorded instead of slept."""
    from syft_bg_app.mail import retry

    recorded: list[float] = []
    monkeypatch.setattr(retry, "SLEEP", recorded.append)
    return recorded


def outbox_of(drive: FakeDrive, ds: str):
    return [f for f in drive.files.values() if f.name.endswith(f"#outbox#{ds}") and f.owner == ds][
        0
    ]


def sent_to(drive: FakeDrive, outbox_id: str, do: str) -> dict[str, str | None]:
    """Each path's latest content in the event messages the owner put in an outbox."""
    from syft_bg_app.sync.drive import protocol

    messages = [
        f
        for f in drive.files.values()
        if f.owner == do and outbox_id in f.parents and f.name.startswith("syfteventsmessagev3_")
    ]
    seen: dict[str, str | None] = {}
    for message in sorted(messages, key=lambda f: f.name):
        for event in protocol.parse_events(message.content, 10**8):
            seen[event["path_in_datasite"]] = event["content"]
    return seen


def sync_error(app: App) -> str:
    steps = json.loads(app.home.state_file.with_name("last_pass.json").read_text())["steps"]
    assert all(info["ok"] for step, info in steps.items() if step != "sync"), steps
    return steps["sync"]["error"]


def two_accepted_peers(app: App, drive: FakeDrive) -> None:
    drive_app(
        app,
        drive,
        notify={"enabled": False},
        approve={"peers": {"approved_domains": ["uni.edu"]}},
    )
    for ds in (DS_EMAIL, BOB):
        drive.add_peer_folders(ds, app.do_email, "0.1.117")
    for _ in range(2):  # requests read and accepted; accepted on Drive
        assert app.run_pass().exit_code == 0


@pytest.mark.parametrize("breakage", ["read-only", "unshared", "deleted"])
def test_a_peer_whose_drive_folder_is_read_only_or_gone_is_named_and_the_others_are_served(
    app: App, drive: FakeDrive, breakage: str
) -> None:
    two_accepted_peers(app, drive)
    alice_outbox = outbox_of(drive, DS_EMAIL)
    bob_outbox = outbox_of(drive, BOB)
    if breakage == "read-only":
        bob_outbox.grants[app.do_email.lower()] = "reader"
    elif breakage == "unshared":
        del bob_outbox.grants[app.do_email.lower()]
    else:
        drive._delete_tree(BOB, bob_outbox.id)
    for ds in (DS_EMAIL, BOB):
        send(drive, ds, app.do_email, f"job-of-{ds.split('@')[0]}", 1000.0)

    result = app.run_pass()
    assert result.failed_steps == ["sync"]
    error = sync_error(app)
    assert f"{BOB}: a Drive folder shared between you and {BOB}" in error, error
    assert f"syft-bg peers block {BOB}" in error and "sign in" not in error
    assert DS_EMAIL not in error
    status = app.cli("status").stdout
    assert f"{BOB}: a Drive folder shared" in status and f"peers block {BOB}" in status, status
    # Both jobs came in: only what goes out to Bob is refused.
    for ds in (DS_EMAIL, BOB):
        assert (app.datasite.inbox / ds / f"job-of-{ds.split('@')[0]}" / "run.sh").exists()

    app.cli("jobs", "approve", f"{DS_EMAIL}/job-of-alice", check=True)
    run_until(app, lambda: app.job_state("job-of-alice", protocol="0")["status"] == "done", "run")
    app.run_pass()  # the results travel
    review = f"app_data/job/review/{DS_EMAIL}/job-of-alice"
    seen = sent_to(drive, alice_outbox.id, app.do_email)
    assert seen[f"{review}/stdout.txt"] == "job-of-alice\n"
    assert yaml.safe_load(seen[f"{review}/state.yaml"])["status"] == "done"
    assert BOB in sync_error(app)


def test_an_inbox_listing_drive_refuses_for_one_peer_still_serves_the_others(
    app: App, drive: FakeDrive
) -> None:
    two_accepted_peers(app, drive)
    bob_inbox = inbox_of(drive, BOB).id

    def refuse_bobs_inbox(user: str, method: str, path: str, query: dict[str, str]):
        return (404, "notFound") if f"'{bob_inbox}' in parents" in query.get("q", "") else None

    drive.refuse = refuse_bobs_inbox
    send(drive, DS_EMAIL, app.do_email, "listed", 1000.0)
    assert app.run_pass().failed_steps == ["sync"]
    assert (app.datasite.inbox / DS_EMAIL / "listed" / "run.sh").exists()
    error = sync_error(app)
    assert f"{BOB} (their inbox): a Drive folder shared between" in error, error
    drive.refuse = None
    assert app.run_pass().exit_code == 0


def one_peer(app: App, drive: FakeDrive) -> int:
    """A requesting peer on Drive, set up; the Drive requests of an idle pass."""
    drive_app(app, drive, notify={"enabled": False})
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    assert app.run_pass().exit_code == 0
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    return drive.count(app.do_email) - before


@pytest.mark.parametrize(
    "answer",
    [(503, "backendError"), (429, "rateLimitExceeded"), (403, "userRateLimitExceeded")],
    ids=["503", "429", "403-rate-limit"],
)
def test_a_temporary_drive_answer_is_retried_within_the_pass(
    app: App, drive: FakeDrive, waits: list[float], answer: tuple[int, str]
) -> None:
    idle = one_peer(app, drive)
    drive.add_peer_folders(BOB, app.do_email, "0.1.117")
    drive.failures = [answer]
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before == idle + 1
    assert len(waits) == 1
    assert app.datasite.peer_request_file(BOB).exists()


@pytest.mark.parametrize(
    "answer",
    [
        (400, "badRequest"),
        (404, "notFound"),
        (403, "insufficientFilePermissions"),
        (403, "dailyLimitExceeded"),
    ],
    ids=["400", "404", "403-file", "403-daily-limit"],
)
def test_a_lasting_drive_answer_is_not_retried(
    app: App, drive: FakeDrive, waits: list[float], answer: tuple[int, str]
) -> None:
    one_peer(app, drive)
    drive.failures = [answer]
    before = drive.count(app.do_email)
    assert app.run_pass().failed_steps == ["sync"]
    assert drive.count(app.do_email) - before == 1
    assert waits == []
    error = sync_error(app)
    assert f"Drive answered {answer[0]} {answer[1]}" in error and "sign in" not in error


@pytest.mark.parametrize(
    "answer, signs_in_again",
    [
        ((403, "insufficientPermissions", "Request had insufficient authentication scopes."), 1),
        ((403, "authError", "Invalid Credentials"), 1),
        ((403, "insufficientPermissions", "The user does not have sufficient permissions."), 0),
    ],
    ids=["scope", "auth-error", "one-file"],
)
def test_only_a_403_about_the_sign_in_asks_to_sign_in_again(
    app: App, drive: FakeDrive, waits: list[float], answer: tuple, signs_in_again: int
) -> None:
    one_peer(app, drive)
    drive.failures = [answer]
    assert app.run_pass().failed_steps == ["sync"]
    assert waits == []
    error = sync_error(app)
    assert ("sign in to Google Drive again" in error) == bool(signs_in_again), error


def test_a_drive_that_keeps_failing_stops_the_pass_within_its_budget(
    app: App, drive: FakeDrive, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syft_bg_app.mail import retry

    one_peer(app, drive)
    app.set_config(drive={"retry_budget": 10})
    drive.failures = [(503, "backendError")] * 50
    before = drive.count(app.do_email)
    with freeze_time(datetime.now(timezone.utc)) as clock:
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock.tick(seconds)

        monkeypatch.setattr(retry, "SLEEP", sleep)
        began = time.monotonic()
        result = app.run_pass()
        spent = time.monotonic() - began
    assert result.failed_steps == ["sync"]
    # Backoff grows, and the budget, not the cap on attempts, ends it.
    assert slept == sorted(slept) and slept[-1] >= 2 * slept[0]
    assert spent <= 10 and drive.count(app.do_email) - before == len(slept) + 1
    assert len(slept) + 1 < retry.MAX_ATTEMPTS
    assert "Drive answered 503 backendError" in sync_error(app)
    assert "looks temporary" in app.cli("status").stdout


def test_a_drive_out_of_reach_is_retried_and_fails_the_sync_step_plainly(
    app: App, drive: FakeDrive, waits: list[float]
) -> None:
    from tests.faults_support import free_port

    one_peer(app, drive)
    app.set_config(drive={"api_endpoint": f"http://127.0.0.1:{free_port()}"})
    assert app.run_pass().failed_steps == ["sync"]
    assert waits, "a connection refused is retried"
    assert "cannot reach Google Drive" in sync_error(app)


def test_drive_proposals_over_the_job_caps_or_on_a_changed_file_are_refused_and_archived(
    app: App, drive: FakeDrive
) -> None:
    from syft_bg_app.sync.drive import protocol

    drive_app(app, drive, notify={"enabled": False})
    app.set_config(
        approve={"peers": {"approved_emails": [DS_EMAIL]}},
        sync={"max_job_files": 5, "max_job_mb": 1},
    )
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    send(drive, DS_EMAIL, app.do_email, "first", 1000.0)
    assert app.run_pass().exit_code == 0
    top = f"app_data/job/inbox/{DS_EMAIL}"
    script = app.datasite.path / top / "first" / "code" / "script.sh"
    assert script.read_text() == "echo first\n"

    many = {f"{top}/many/code/f{i}.txt": "x\n" for i in range(6)}
    big = {f"{top}/big/run.sh": "#!/bin/bash\n", f"{top}/big/code/data.txt": "y" * 1_100_000}
    stale = protocol.sha256_hex(b"echo what the DS saw\n")
    changed = {f"{top}/first/code/script.sh": "echo changed\n"}
    flood = {f"{top}/j{i}/run.sh": "#!/bin/bash\n" for i in range(30)}
    names = [
        drop(drive, DS_EMAIL, proposal(DS_EMAIL, app.do_email, many), 2000.1),
        drop(drive, DS_EMAIL, proposal(DS_EMAIL, app.do_email, big), 2000.2),
        drop(drive, DS_EMAIL, proposal(DS_EMAIL, app.do_email, changed, stale), 2000.3),
        drop(drive, DS_EMAIL, proposal(DS_EMAIL, app.do_email, flood), 2000.35),
    ]
    send(drive, DS_EMAIL, app.do_email, "after", 2000.4)
    assert app.run_pass().exit_code == 0

    refused = json.loads(app.home.state_file.read_text())["drive"]["ds"][DS_EMAIL]["refused"]
    assert [r["message"] for r in refused] == names
    caps = "more files or bytes than sync.max_job_files/max_job_mb allow"
    assert refused[0]["why"] == caps and refused[1]["why"] == caps
    assert "changed here since the DS saw it" in refused[2]["why"]
    assert not (app.datasite.inbox / DS_EMAIL / "many").exists()
    assert not (app.datasite.inbox / DS_EMAIL / "big").exists()
    assert script.read_text() == "echo first\n"
    # The job whose file could not be changed is rejected with the reason, which
    # travels to the data scientist like any rejection.
    first = app.job_state("first", protocol="0")
    assert first["status"] == "rejected"
    assert "changed here since the DS saw it" in first["review_reason"]
    # The next message was applied, and every message is archived, none left waiting.
    assert app.job_state("after", protocol="0")["status"] == "pending"
    assert not drive.children(inbox_of(drive, DS_EMAIL).id)
    (archive,) = drive.named(f"syft_{DS_EMAIL}_to_{app.do_email}_archive")
    assert set(names) <= {f.name for f in drive.children(archive.id)}

    # The jobs refused whole, none of whose files were taken, are rejected all the
    # same: the owner sees them, and the reason reaches the data scientist.
    for job in ("many", "big"):
        state = app.job_state(job, protocol="0")
        assert state["status"] == "rejected"
        assert state["review_reason"] == f"not accepted over Google Drive: {caps}"
    listed = app.cli("jobs", "list", "--status", "rejected", "--json", check=True).stdout
    rejected = {job["name"] for job in json.loads(listed)}
    assert {"many", "big"} <= rejected
    # A message naming countless jobs makes a bounded number of records.
    assert len({name for name in rejected if name.startswith("j")}) == 20
    assert app.run_pass().exit_code == 0
    sent = sent_to(drive, outbox_of(drive, DS_EMAIL).id, app.do_email)
    for job in ("many", "big"):
        told = yaml.safe_load(sent[f"app_data/job/review/{DS_EMAIL}/{job}/state.yaml"])
        assert told["status"] == "rejected" and caps in told["review_reason"]


def test_drive_peers_rejected_or_blocked_are_rejected_on_drive_and_never_shared_with(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    drive_app(app, drive, notify={"enabled": False})
    clients = {
        who: RealClient(syft_client_python, drive, app.tmp / who.split("@")[0], who)
        for who in ("carol@uni.edu", "dave@uni.edu")
    }
    for client in clients.values():
        client.run(f"c.add_peer({app.do_email!r})")
    assert app.run_pass().exit_code == 0  # the requests are read
    carol, dave = clients
    app.cli("peers", "reject", carol, check=True)
    app.cli("peers", "block", dave, check=True)
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    (peers_file,) = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    rejected = {"state": "rejected"}
    assert json.loads(peers_file.content) == {carol: rejected, dave: rejected}
    # A client learns it was accepted from the owner's mirror folders shared with it:
    # none exists, nothing of the owner's is shared with them, and their client says so.
    mine = [f for f in drive.files.values() if f.owner == app.do_email]
    assert not [f for f in mine if f.name.startswith("syft_datasite#")]
    assert not [f for f in mine if {carol, dave} & set(f.grants)]
    for client in clients.values():
        out = client.run(
            f"""
            peer = [p for p in c.peers if p.email == {app.do_email!r}][0]
            print("STATE", peer.state.value)
            """
        )
        assert "STATE requested_by_me" in out, out


def _a_peer_with_a_rejected_job(app: App, drive: FakeDrive) -> None:
    """An accepted peer whose job "first" was rejected with "not this one", the
    rejection sent to their outbox."""
    drive_app(app, drive, notify={"enabled": False})
    app.set_config(approve={"peers": {"approved_emails": [DS_EMAIL]}})
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    send(drive, DS_EMAIL, app.do_email, "first", 1000.0)
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "reject", f"{DS_EMAIL}/first", "-r", "not this one", check=True)
    assert app.run_pass().exit_code == 0


def test_drive_a_new_outbox_gets_every_result_again(app: App, drive: FakeDrive) -> None:
    _a_peer_with_a_rejected_job(app, drive)
    state = f"app_data/job/review/{DS_EMAIL}/first/state.yaml"
    assert "not this one" in sent_to(drive, outbox_of(drive, DS_EMAIL).id, app.do_email)[state]

    # They trash their folders and ask again (their client's add_peer makes new ones):
    # the new outbox starts empty, and everything they may read is sent to it again.
    for f in drive.files.values():
        if f.owner == DS_EMAIL and f.name.startswith("syft_datasite#"):
            f.trashed = True
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    assert app.run_pass().exit_code == 0
    (new_outbox,) = [
        f
        for f in drive.files.values()
        if f.owner == DS_EMAIL and f.name.endswith(f"#outbox#{DS_EMAIL}") and not f.trashed
    ]
    assert "not this one" in sent_to(drive, new_outbox.id, app.do_email)[state]


def test_drive_two_outboxes_of_one_peer_never_make_the_results_travel_again(
    app: App, drive: FakeDrive
) -> None:
    _a_peer_with_a_rejected_job(app, drive)
    # Their folders made again without trashing the old ones: two of each kind.
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    outboxes = [
        f
        for f in drive.files.values()
        if f.owner == DS_EMAIL and f.name.endswith(f"#outbox#{DS_EMAIL}")
    ]
    assert len(outboxes) == 2

    def messages() -> dict[str, int]:
        return {box.id: len(drive.children(box.id)) for box in outboxes}

    before = messages()
    for _ in range(4):
        # Drive promises no order of a listing: each pass sees the other one first.
        with drive._lock:
            drive.files = dict(reversed(list(drive.files.items())))
        assert app.run_pass().exit_code == 0
    assert messages() == before


def test_drive_the_other_generation_email_counts_only_accepted_peers(
    app: App, drive: FakeDrive
) -> None:
    from tests.conftest import outbox

    drive_app(app, drive, approve={"peers": {"approved_emails": [DS_EMAIL]}})
    # One peer accepted, two who merely asked: only the accepted one is served.
    for ds in (DS_EMAIL, "bob@uni.edu", "carol@uni.edu"):
        drive.add_peer_folders(ds, app.do_email, "0.1.117")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    drive.add_peer_folders("dan@uni.edu", app.do_email, "0.10.0")
    assert app.run_pass().exit_code == 0
    (email,) = [m for m in outbox(app) if "dan@uni.edu runs syft" in m["Subject"]]
    body = " ".join(email.get_body(("plain",)).get_content().split())
    assert "your 1 data scientist(s) on 0.1.x would then no longer be served" in body


def test_drive_names_no_file_system_can_hold_are_refused_and_stop_nothing(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, notify={"enabled": False})
    app.set_config(approve={"peers": {"approved_emails": [DS_EMAIL]}})
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    inbox = f"app_data/job/inbox/{DS_EMAIL}"
    # A job name of 100 three-byte characters (300 bytes), one with a lone surrogate,
    # and a timestamp no float holds: each refused, none holding up the next message.
    long_name = "作" * 100
    drop(
        drive, DS_EMAIL, proposal(DS_EMAIL, app.do_email, {f"{inbox}/{long_name}/run.sh": "x"}), 1.0
    )
    body = json.loads(gzip_json(proposal(DS_EMAIL, app.do_email, {f"{inbox}/odd/run.sh": "x"})))
    body["proposed_file_changes"][0]["path_in_datasite"] = f"{inbox}/odd\ud800/run.sh"
    body["proposed_file_changes"][0]["submitted_timestamp"] = 10**400
    drop(drive, DS_EMAIL, _compress(body), 2.0)
    send(drive, DS_EMAIL, app.do_email, "fine", 3.0)
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert (app.datasite.inbox / DS_EMAIL / "fine" / "run.sh").exists()
    assert not drive.children(inbox_of(drive, DS_EMAIL).id)
    refused = app.home.state_file.read_text()
    assert "a name this file system cannot hold" in refused


def gzip_json(message: bytes) -> str:
    """The JSON inside a message, as text."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(message), mode="r:gz") as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read().decode()


def _compress(body: dict) -> bytes:
    from syft_bg_app.sync.drive import protocol

    return protocol.compress(json.dumps(body).encode())
