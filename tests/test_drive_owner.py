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

import pytest

from tests.conftest import DS_EMAIL, App
from tests.fake_drive import MAX_PAGE_SIZE, FakeDrive
from tests.test_drive_sync import drive_app


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
    peers = [f"ds{i:03d}@uni.edu" for i in range(100)]
    for peer in peers:
        drive.add_peer_folders(peer, app.do_email, "0.1.117")
    for _ in range(3):  # requests read, accepted, accepted on Drive
        assert app.run_pass().exit_code == 0
    # One query naming every inbox would be too long for Drive.
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
    # One listing of the peers' folders, three of the 100 inboxes (40 a query).
    assert drive.count(app.do_email) - before == 4


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
