"""Datasets over Google Drive: the mock data travels only as the owner's collection
folder, shared with exactly the dataset's readers; the private data never travels.

The data scientist is the real syft-client 0.1.117 (and syft 0.10.0) from PyPI,
against the local Drive server of tests/fake_drive.py, which enforces who may read
what: a client sees a collection only when Drive lets it.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from pathlib import Path

from tests.conftest import DS_EMAIL, App
from tests.fake_drive import FakeDrive
from tests.test_drive_sync import (
    SYFT_0_10,
    RealClient,
    client_venv,
    connected_peer,
    drive_app,
    killed_passes,
)

BOB = "bob@uni.edu"
MOCK_CSV = "age\n20\n30\n40\n"
NORTH_CSV = "region\nnorth\n"
PRIVATE_CSV = "age\n31\n45\n52\nPRIVATE-MARKER-7f3a\n"
PRIVATE_NOTES = "secret notes PRIVATE-MARKER-91c2\n"

SEEN = """
import json
from pathlib import Path
c.sync()
folder = Path(c.syftbox_folder) / {do!r} / "public" / "syft_datasets"
seen = {{}}
if folder.is_dir():
    for d in sorted(folder.iterdir()):
        seen[d.name] = {{p.name: p.read_text() for p in sorted(d.iterdir()) if p.is_file()}}
print("SEEN", json.dumps(seen, sort_keys=True))
"""


def seen_by(ds: RealClient, do_email: str, code: str = SEEN) -> dict[str, dict[str, str]]:
    """The datasets of ``do_email`` the client has on disk after a sync: name -> files."""
    out = ds.run(code.format(do=do_email))
    line = [row for row in out.splitlines() if row.startswith("SEEN ")][-1]
    return json.loads(line[len("SEEN ") :])


def make_data(tmp: Path, tag: str, mock_text: str = MOCK_CSV) -> tuple[Path, Path]:
    mock = tmp / f"mock-{tag}"
    mock.mkdir()
    (mock / "ages.csv").write_text(mock_text)
    private = tmp / f"private-{tag}"
    (private / "raw").mkdir(parents=True)
    (private / "ages.csv").write_text(PRIVATE_CSV)
    (private / "raw" / "notes.txt").write_text(PRIVATE_NOTES)
    return mock, private


def create(app: App, name: str, *share: str, mock_text: str = MOCK_CSV) -> None:
    mock, private = make_data(app.tmp, name, mock_text)
    args = ["datasets", "create", name, "--mock", str(mock), "--private", str(private)]
    for who in share:
        args += ["--share", who]
    app.cli(*args, check=True)


def collections(drive: FakeDrive, do_email: str, name: str | None = None) -> list:
    prefix = f"syft_datasetcollection_{name}_" if name else "syft_datasetcollection_"
    return [
        f
        for f in drive.files.values()
        if f.owner == do_email and f.name.startswith(prefix) and not f.trashed
    ]


def readers_of(folder) -> set[str]:
    return {who for who, role in folder.grants.items() if role == "reader"}


def test_drive_dataset_mock_reaches_exactly_the_users_it_is_shared_with(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    mock, private = make_data(app.tmp, "census")
    (mock / "regions").mkdir()
    (mock / "regions" / "north.csv").write_text(NORTH_CSV)
    app.cli(
        "datasets", "create", "census", "--mock", str(mock), "--private", str(private),
        "--share", DS_EMAIL, check=True,
    )  # fmt: skip
    create(app, "bobs", BOB)
    create(app, "open", "any")
    assert app.run_pass().exit_code == 0

    public = app.datasite.path / "public" / "syft_datasets" / "census"
    files = {
        "ages.csv": MOCK_CSV.encode(),
        "dataset.yaml": (public / "dataset.yaml").read_bytes(),
        "regions/north.csv": NORTH_CSV.encode(),
    }
    (folder,) = collections(drive, app.do_email, "census")
    assert folder.name.startswith("syft_datasetcollection_census_")
    assert {f.name: f.content for f in drive.children(folder.id)} == files
    assert readers_of(folder) == {DS_EMAIL}
    assert readers_of(collections(drive, app.do_email, "bobs")[0]) == {BOB}

    seen = seen_by(ds, app.do_email)
    assert sorted(seen) == ["census", "open"]
    assert seen["census"]["ages.csv"] == MOCK_CSV
    assert "syft.pub.yaml" not in seen["census"]
    nested = ds.syftbox / app.do_email / "public/syft_datasets/census/regions/north.csv"
    assert nested.read_text() == NORTH_CSV
    # The real client reads them as datasets too.
    out = ds.run(
        f"""
        names = sorted(d.name for d in c.datasets.get_all() if d.owner == {app.do_email!r})
        print("NAMES", json.dumps(names))
        census = c.datasets.get("census", datasite={app.do_email!r})
        print("MOCK", json.dumps([p.read_text() for p in census.mock_files]))
        # The folder name the client's own create_dataset/share_dataset would look for.
        from syft_client.sync.file_utils import compute_file_hashes
        files = {{p.name: p.read_bytes() for p in census.mock_files}}
        files["dataset.yaml"] = (census.mock_dir / "dataset.yaml").read_bytes()
        print("HASH", compute_file_hashes(files))
        """
    )
    assert 'NAMES ["census", "open"]' in out, out
    assert "MOCK " + json.dumps([MOCK_CSV, NORTH_CSV]) in out, out
    assert f"HASH {folder.name.rpartition('_')[2]}" in out, out

    # A changed mock replaces the folder: one folder, the new content.
    (public / "ages.csv").write_text("age\n99\n")
    assert app.run_pass().exit_code == 0
    (replaced,) = collections(drive, app.do_email, "census")
    assert replaced.id != folder.id and folder.id not in drive.files
    assert readers_of(replaced) == {DS_EMAIL}
    assert seen_by(ds, app.do_email)["census"]["ages.csv"] == "age\n99\n"

    # unshare and delete take it away.
    app.cli("datasets", "unshare", "census", DS_EMAIL, check=True)
    app.cli("datasets", "delete", "open", check=True)
    assert app.run_pass().exit_code == 0
    assert readers_of(collections(drive, app.do_email, "census")[0]) == set()
    assert collections(drive, app.do_email, "open") == []
    assert seen_by(ds, app.do_email) == {}


def test_drive_dataset_shared_with_any_reaches_a_peer_accepted_later(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    drive_app(app, drive)
    create(app, "survey", "any")
    assert app.run_pass().exit_code == 0
    (folder,) = collections(drive, app.do_email, "survey")
    assert readers_of(folder) == set()
    # The real client's own mark: its notebook shares it with the peers it accepts.
    assert folder.app_properties == {"syft_shared_with_any": "true"}

    ds = connected_peer(app, drive, syft_client_python)
    assert readers_of(folder) == {DS_EMAIL}
    assert seen_by(ds, app.do_email)["survey"]["ages.csv"] == MOCK_CSV


def _texts(data: bytes) -> list[bytes]:
    """``data`` and, for a gzip tar or gzip file, what it holds."""
    found = [data]
    try:
        unpacked = gzip.decompress(data)
    except (OSError, EOFError):
        return found
    found.append(unpacked)
    try:
        with tarfile.open(fileobj=io.BytesIO(unpacked)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                if handle is not None:
                    found.append(handle.read())
    except tarfile.TarError:
        pass
    return found


def test_drive_private_dataset_files_are_nowhere_on_drive(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    create(app, "census", "any")
    create(app, "mine", DS_EMAIL)
    app.cli("datasets", "share", "census", BOB, check=True)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo hi', job_name='hi')")
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert sorted(seen_by(ds, app.do_email)) == ["census", "mine"]

    markers = (b"PRIVATE-MARKER-7f3a", b"PRIVATE-MARKER-91c2")
    assert collections(drive, app.do_email)
    for f in drive.files.values():
        for text in _texts(f.content):
            assert not any(marker in text for marker in markers), f.name
        assert "notes.txt" not in f.name and "privatecollection" not in f.name


def test_drive_idle_pass_with_datasets_makes_no_extra_requests(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    for i in range(5):
        drive.add_peer_folders(f"ds{i}@uni.edu", app.do_email, "0.1.117")
    create(app, "census", "any")
    create(app, "small", "ds1@uni.edu")
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert len(readers_of(collections(drive, app.do_email, "census")[0])) == 5
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_a_damaged_dataset_is_named_and_the_others_still_travel(
    app: App, drive: FakeDrive
) -> None:
    from syft_bg_app.datasite import datasets as store

    drive_app(app, drive)
    create(app, "broken", BOB)
    create(app, "fine", BOB)
    store.store_dir(app.home, "broken").joinpath("record.yaml").write_text("shared_with: [\n")
    result = app.run_pass()
    assert result.failed_steps == ["sync"]
    state = json.loads(app.home.state_file.with_name("last_pass.json").read_text())
    assert "dataset broken: dataset 'broken' is damaged" in state["steps"]["sync"]["error"]
    assert collections(drive, app.do_email, "broken") == []
    (folder,) = collections(drive, app.do_email, "fine")
    assert readers_of(folder) == {BOB}


def test_drive_dataset_passes_killed_at_random_instants_leave_one_complete_folder_each(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    peers = [f"ds{i}@uni.edu" for i in range(4)]
    for peer in peers:
        drive.add_peer_folders(peer, app.do_email, "0.1.117")
    names = [f"set{i}" for i in range(4)]
    for n, name in enumerate(names):
        mock, private = make_data(app.tmp, name, mock_text=f"age\n{n}\n")
        for extra in range(6):
            (mock / f"part{extra}.csv").write_text(f"{name} part {extra}\n")
        share = ["--share", "any"] if n % 2 else ["--share", peers[n]]
        app.cli(
            "datasets", "create", name, "--mock", str(mock), "--private", str(private), *share,
            check=True,
        )  # fmt: skip
    rng = random.Random(16)
    killed_passes(app, 10, rng, 1.5)
    app.cli("datasets", "unshare", "set0", peers[0], check=True)
    app.cli("datasets", "delete", "set3", check=True)
    killed_passes(app, 10, rng, 1.5)
    assert app.run_pass().exit_code == 0
    assert app.run_pass().exit_code == 0
    expected_readers = {"set0": set(), "set1": set(peers), "set2": {peers[2]}}
    for name, wanted in expected_readers.items():
        (folder,) = collections(drive, app.do_email, name)
        public = app.datasite.path / "public" / "syft_datasets" / name
        local = {p.name: p.read_bytes() for p in public.iterdir() if p.name != "syft.pub.yaml"}
        assert {f.name: f.content for f in drive.children(folder.id)} == local
        assert len(drive.children(folder.id)) == len(local)
        assert readers_of(folder) == wanted
    assert collections(drive, app.do_email, "set3") == []


SYFT_0_10_SEEN = """
import json
from pathlib import Path
from syft.sync.login import _init_client_login
from syft.sync.syftbox_manager import SyftboxManager, SyftboxManagerConfig
from syft.sync.sync.collection_spec import CollectionSyncSpec
spec = CollectionSyncSpec.public("syft_datasetcollection", Path("public/syft_datasets"))
config = SyftboxManagerConfig.for_jupyter(
    email={ds!r}, has_ds_role=True, token_path=Path({token!r}), collection_specs=[spec]
)
c = SyftboxManager.from_config(config)
c = _init_client_login(c, True, True)
"""


def test_drive_dataset_mock_reaches_the_real_syft_0_10(app: App, drive: FakeDrive) -> None:
    ds = connected_peer(app, drive, client_venv(SYFT_0_10), generation="0.10", module="syft")
    create(app, "census", DS_EMAIL)
    create(app, "bobs", BOB)
    assert app.run_pass().exit_code == 0
    # syft 0.10 syncs the collections an application registers (syft-rds: datasets).
    seen = seen_by(ds, app.do_email, SYFT_0_10_SEEN.format(ds=ds.email, token=str(ds.token)) + SEEN)
    assert sorted(seen) == ["census"]
    assert seen["census"]["ages.csv"] == MOCK_CSV


def test_drive_a_blocked_peer_keeps_no_grant_on_any_owner_file(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    create(app, "census", DS_EMAIL)
    create(app, "open", "any")
    assert app.run_pass().exit_code == 0
    assert sorted(seen_by(ds, app.do_email)) == ["census", "open"]

    app.cli("peers", "block", DS_EMAIL, check=True)
    assert app.run_pass().exit_code == 0
    # Nothing of the owner's is shared with them any more: not the mirror folders,
    # not the version file, not a dataset shared with them by name or with "any".
    mine = [f for f in drive.files.values() if f.owner == app.do_email]
    assert [f.name for f in mine if DS_EMAIL in f.grants] == []
    # Their client keeps its own record of the peer (it never learns of a block), but
    # what it had of the owner's datasets goes at its next sync.
    assert seen_by(ds, app.do_email) == {}
    (peers_file,) = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    assert json.loads(peers_file.content)[DS_EMAIL] == {"state": "rejected"}
    # The dataset stays as it was, shared with them again once they are unblocked.
    assert DS_EMAIL in app.cli("datasets", "show", "census", check=True).stdout
