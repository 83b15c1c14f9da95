"""The owner's Drive round at scale and over time: big listings, generation changes,
the owner's own checkpoints.

The other side is the fake Drive of tests/fake_drive.py (which pages as Drive does
and refuses over-long queries) and, where it matters, the real syft clients from
PyPI, as in tests/test_drive_sync.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import DS_EMAIL, App
from tests.fake_drive import FOLDER, MAX_PAGE_SIZE, FakeDrive
from tests.test_drive_sync import (
    SYFT_0_10,
    SYFT_CLIENT,
    RealClient,
    client_venv,
    connected_peer,
    drive_app,
    run_until,
)


@pytest.fixture(scope="session")
def syft_client_python() -> Path:
    return client_venv(SYFT_CLIENT)


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    yield fake
    fake.stop()


def proposal(ds: str, do: str, files: dict[str, str]) -> bytes:
    """A ``msgv2`` message as the clients write it: new files under ``ds``'s inbox."""
    from syft_bg_app.sync.drive import protocol

    changes = [
        {
            "id": str(uuid.uuid4()),
            "path_in_datasite": path,
            "content": text,
            "content_type": "text",
            "old_hash": None,
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
    message = f"msgv2_{stamp}_{uuid.uuid4().hex}.tar.gz"
    meta = {"name": message, "parents": [inbox_of(drive, ds).id]}
    drive._create(ds, meta, proposal(ds, do, job_files(ds, name)))


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


def test_a_listing_is_retried_on_transient_answers_within_the_pass(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, notify={"enabled": False})
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    assert app.run_pass().exit_code == 0
    drive.add_peer_folders("bob@uni.edu", app.do_email, "0.1.117")
    drive.failures = [(503, "backendError"), (429, "rateLimitExceeded")]
    assert app.run_pass().exit_code == 0
    assert not drive.failures
    assert app.datasite.peer_request_file("bob@uni.edu").exists()
