"""Datasets: mock data published for exactly the users it is shared with, private data
kept outside the synced folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from syft_bg_app.datasite import datasets as store

ALICE = "alice@uni.edu"
BOB = "bob@other.org"
PRIVATE_CSV = "age\n31\n45\n52\n"
MOCK_CSV = "age\n20\n30\n40\n"


def _can_read(app, email: str, path: Path) -> bool:
    """Whether ``email`` may read ``path``, as the SyftBox client's permission engine decides."""
    from syft_permissions.engine.request import AccessLevel, ACLRequest, User
    from syft_permissions.engine.service import ACLService

    service = ACLService(owner=app.do_email)
    service.load_permissions_from_filesystem(app.datasite.path)
    rel = path.relative_to(app.datasite.path)
    return service.can_access(ACLRequest(str(rel), AccessLevel.READ, User(email)))


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    mock = tmp_path / "mock"
    mock.mkdir()
    (mock / "ages.csv").write_text(MOCK_CSV)
    private = tmp_path / "private"
    (private / "raw").mkdir(parents=True)
    (private / "ages.csv").write_text(PRIVATE_CSV)
    (private / "raw" / "notes.txt").write_text("secret notes\n")
    return mock, private


def _create(app, data, name="census", *extra: str):
    mock, private = data
    return app.cli(
        "datasets", "create", name, "--mock", str(mock), "--private", str(private), *extra
    )


def test_create_publishes_the_mock_for_the_listed_users_only(app, data):
    result = _create(app, data, "census", "--share", ALICE, "--summary", "ages")
    assert result.returncode == 0, result.stderr
    assert ALICE in result.stdout

    public = app.datasite.path / "public" / "syft_datasets" / "census"
    assert (public / "ages.csv").read_text() == MOCK_CSV
    metadata = yaml.safe_load((public / "dataset.yaml").read_text())
    assert metadata["name"] == "census" and metadata["summary"] == "ages"
    assert metadata["mock_url"] == f"syft://{app.do_email}/public/syft_datasets/census"
    assert _can_read(app, ALICE, public / "ages.csv")
    assert _can_read(app, ALICE, public / "dataset.yaml")
    assert not _can_read(app, BOB, public / "ages.csv")


def test_private_files_are_kept_outside_the_synced_folder_owner_only(app, data):
    assert _create(app, data).returncode == 0

    private = store.private_dir(app.home, "census")
    assert (private / "ages.csv").read_text() == PRIVATE_CSV
    assert (private / "raw" / "notes.txt").is_file()
    assert not private.resolve().is_relative_to(app.root.resolve())
    for path in [private, *private.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    synced = [p.read_bytes() for p in app.root.rglob("*") if p.is_file()]
    assert PRIVATE_CSV.encode() not in synced
    assert b"secret notes\n" not in synced


def test_any_shares_with_every_accepted_peer_also_those_accepted_later(app, data):
    assert _create(app, data, "census", "--share", "any").returncode == 0
    mock_file = app.datasite.path / "public" / "syft_datasets" / "census" / "ages.csv"
    assert not _can_read(app, ALICE, mock_file)

    app.request_peer(ALICE)
    app.cli("peers", "accept", ALICE, check=True)

    assert _can_read(app, ALICE, mock_file)
    assert not _can_read(app, BOB, mock_file)
    shown = json.loads(app.cli("datasets", "show", "census", "--json", check=True).stdout)
    assert shown["shared_with"] == ["any"] and shown["readers"] == [ALICE]


def test_auto_share_datasets_shares_with_peers_a_pass_accepts(app, data):
    assert _create(app, data, "census").returncode == 0
    assert _create(app, data, "other").returncode == 0
    app.set_config(
        approve={"peers": {"approved_domains": ["uni.edu"], "auto_share_datasets": ["census"]}}
    )
    app.request_peer(ALICE)

    assert app.run_pass().exit_code == 0

    public = app.datasite.path / "public" / "syft_datasets"
    assert _can_read(app, ALICE, public / "census" / "ages.csv")
    assert not _can_read(app, ALICE, public / "other" / "ages.csv")
    listed = json.loads(app.cli("datasets", "list", "--json", check=True).stdout)
    assert {d["name"]: d["shared_with"] for d in listed} == {"census": [ALICE], "other": []}


def test_unshare_and_delete_take_the_mock_away(app, data):
    assert _create(app, data, "census", "--share", ALICE, "--share", BOB).returncode == 0
    mock_file = app.datasite.path / "public" / "syft_datasets" / "census" / "ages.csv"

    app.cli("datasets", "unshare", "census", BOB, check=True)
    assert _can_read(app, ALICE, mock_file) and not _can_read(app, BOB, mock_file)

    app.cli("datasets", "delete", "census", check=True)
    assert not mock_file.parent.exists()
    assert not store.store_dir(app.home, "census").exists()
    assert "no datasets" in app.cli("datasets", "list", check=True).stdout


@pytest.mark.parametrize(
    "name", ["a/b", "..", "../escape", ".hidden", "bad\x07name", "x" * 65, "census\n"]
)
def test_a_bad_dataset_name_is_refused_and_nothing_is_written(app, data, name):
    result = _create(app, data, name)
    assert result.returncode == 2
    assert "dataset name" in result.stderr
    assert not (app.datasite.path / "public" / "syft_datasets").exists()
    assert not store.store_root(app.home).exists()


def test_a_missing_path_is_refused_and_nothing_is_written(app, data, tmp_path):
    mock, _ = data
    result = app.cli(
        "datasets", "create", "census", "--mock", str(mock), "--private", str(tmp_path / "nope")
    )
    assert result.returncode == 2
    assert "private path" in result.stderr and "does not exist" in result.stderr
    assert not (app.datasite.path / "public" / "syft_datasets").exists()


def test_a_mock_with_the_private_bytes_is_warned_about(app, data):
    mock, _ = data
    (mock / "copy.csv").write_text(PRIVATE_CSV)
    result = _create(app, data)
    assert result.returncode == 0
    assert "warning: mock file copy.csv has the same bytes as a private file" in result.stdout


def test_a_second_dataset_with_the_same_name_is_refused(app, data):
    assert _create(app, data).returncode == 0
    result = _create(app, data)
    assert result.returncode == 2 and "exists already" in result.stderr


def test_the_python_api_works_on_the_same_datasets(app, data):
    import syft_bg_app as bg

    mock, private = data
    made = bg.create_dataset("census", mock, private, users=ALICE, home=app.home.root)
    assert made["readers"] == [ALICE] and made["private_files"] == ["ages.csv", "raw/notes.txt"]
    assert bg.share_dataset("census", BOB, home=app.home.root) == [ALICE, BOB]
    assert list(bg.datasets(home=app.home.root)) == ["census"]
    assert bg.unshare_dataset("census", [ALICE], home=app.home.root) == [BOB]
    bg.delete_dataset("census", home=app.home.root)
    assert bg.datasets(home=app.home.root) == {}


def test_setup_status_flags_private_dataset_files_inside_the_synced_folder(app):
    leaked = app.datasite.path / "private" / "syft_datasets" / "census"
    leaked.mkdir(parents=True)
    (leaked / "private_metadata.yaml").write_text("name: census\n")
    before = app.cli("setup-status")
    assert "private datasets" not in before.stdout

    (leaked / "ages.csv").write_text(PRIVATE_CSV)
    after = app.cli("setup-status")
    assert "✗ private datasets: 1 private dataset file(s) inside the synced folder" in after.stdout
    assert "census/ages.csv" in after.stdout
    assert os.fspath(leaked.parent) in after.stdout


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("shared_with: [alice@uni.edu\n", "its record.yaml is not YAML"),
        ("- just\n- a list\n", "its record.yaml is not a mapping"),
        ("shared_with: alice@uni.edu\n", "its shared_with is not a list of email addresses"),
        (None, "its record.yaml is missing"),
    ],
)
def test_a_damaged_dataset_record_is_listed_as_damaged_and_the_others_as_they_are(
    app, data, damage, reason
):
    assert _create(app, data, "census", "--share", ALICE).returncode == 0
    assert _create(app, data, "survey", "--share", BOB, "--summary", "votes").returncode == 0
    record = store.store_dir(app.home, "census") / store.RECORD_FILE
    if damage is None:
        record.unlink()
    else:
        record.write_text(damage)

    listed = app.cli("datasets", "list", check=True).stdout
    rows = {line.split()[0]: line for line in listed.splitlines() if line.strip()}
    assert f"DAMAGED: {reason}" in rows["census"]
    assert BOB in rows["survey"] and "votes" in rows["survey"]
    assert f"warning: dataset census is damaged: {reason}" in listed
    as_json = json.loads(app.cli("datasets", "list", "--json", check=True).stdout)
    assert [d["name"] for d in as_json] == ["census", "survey"]
    assert as_json[0]["damaged"].startswith(reason) and "damaged" not in as_json[1]

    shown = app.cli("datasets", "show", "census")
    assert shown.returncode == 1
    assert f"dataset 'census' is damaged: {reason}" in shown.stderr
    assert str(record) in shown.stderr
    assert " datasets delete census and create it again" in shown.stderr


def test_a_damaged_dataset_stops_neither_a_peer_accept_nor_its_own_deletion(app, data):
    assert _create(app, data, "census", "--share", "any").returncode == 0
    assert _create(app, data, "survey", "--share", "any").returncode == 0
    (store.store_dir(app.home, "census") / store.RECORD_FILE).write_text("{{{\n")
    app.request_peer(ALICE)

    accepted = app.cli("peers", "accept", ALICE)

    assert accepted.returncode == 0, accepted.stderr
    public = app.datasite.path / "public" / "syft_datasets"
    assert _can_read(app, ALICE, public / "survey" / "ages.csv")
    app.cli("datasets", "delete", "census", check=True)
    assert not store.store_dir(app.home, "census").exists()
    assert not (public / "census").exists()
    assert [d["name"] for d in json.loads(app.cli("datasets", "list", "--json").stdout)] == [
        "survey"
    ]


def test_a_private_source_inside_the_syftbox_folder_is_warned_about(app, data, tmp_path):
    import syft_bg_app as bg

    mock, private = data
    inside = app.root / "staging" / "census"
    inside.mkdir(parents=True)
    (inside / "ages.csv").write_text(PRIVATE_CSV)
    # Reached through a link from outside: where the files are is what counts.
    (tmp_path / "via-link").symlink_to(app.root / "staging")

    made = _create(app, (mock, inside), "census")
    through_link = bg.create_dataset(
        "survey", mock, tmp_path / "via-link" / "census", home=app.home.root
    )
    outside = _create(app, (mock, private), "other")

    assert made.returncode == 0, made.stderr
    warning = f"the private source {inside} is inside the SyftBox folder {app.root}"
    assert f"warning: {warning}" in made.stdout and "being synced" in made.stdout
    assert any("inside the SyftBox folder" in w for w in through_link["warnings"])
    assert outside.returncode == 0 and "warning" not in outside.stdout
    status = app.cli("setup-status").stdout
    assert "✗ private dataset sources: 2 dataset(s)" in status
    assert f"census (from {inside})" in status and "survey (from" in status
    assert "other (from" not in status

    # Moved out of the SyftBox folder, the source is no longer flagged.
    (inside / "ages.csv").rename(tmp_path / "ages.csv")
    inside.rmdir()
    assert "private dataset sources" not in app.cli("setup-status").stdout


def test_over_drive_private_files_in_the_datasite_raise_no_alarm(app, data):
    """Over Google Drive the app is the only syncer and never sends private/: the syft
    client's private folder and a private source inside the SyftBox folder are fine."""
    app.set_config(sync={"transport": "drive"})
    synced_private = app.datasite.path / "private" / "syft_datasets" / "census"
    synced_private.mkdir(parents=True)
    (synced_private / "ages.csv").write_text(PRIVATE_CSV)
    mock, _ = data

    made = _create(app, (mock, synced_private), "census")
    status = app.cli("setup-status").stdout

    assert made.returncode == 0, made.stderr
    assert "warning" not in made.stdout
    assert (
        "✓ private datasets: this app syncs the datasite over Google Drive and never sends "
        "private files" in status
    )
    assert "✗ private dataset" not in status
    assert "no sign of a SyftBox client" not in status
    assert f"✓ SyftBox folder: {app.root}: kept in sync by this app over Google Drive" in status


def _client_made_dataset(app, name: str) -> tuple[Path, Path]:
    """A dataset as the syft client's ``create_dataset`` leaves it in the datasite."""
    public = app.datasite.path / "public" / "syft_datasets" / name
    public.mkdir(parents=True)
    (public / "ages.csv").write_text(MOCK_CSV)
    (public / "dataset.yaml").write_text(f"name: {name}\nsummary: null\n")
    private = app.datasite.path / "private" / "syft_datasets" / name
    private.mkdir(parents=True)
    (private / "ages.csv").write_text(PRIVATE_CSV)
    (private / "private_metadata.yaml").write_text(f"name: {name}\n")
    return public, private


def test_a_dataset_the_syft_client_made_is_listed_with_the_commands_that_serve_it(app, tmp_path):

    _client_made_dataset(app, "trial")

    listed = app.cli("datasets", "list")
    status = app.cli("setup-status").stdout

    assert listed.returncode == 0, listed.stderr
    assert "trial" in listed.stdout and "made by the syft client" in listed.stdout
    note = next(line for line in listed.stdout.splitlines() if line.startswith("note: "))
    assert "a job naming it is rejected" in note
    assert "⚠ datasets made by the syft client: trial" in status
    commands = note.split("create it again: ", 1)[1]
    assert commands in status

    # The commands work as printed: the folders leave the datasite, the app creates it.
    assert " datasets create trial " in commands
    ran = subprocess.run(
        ["bash", "-c", commands.replace("--share EMAIL", f"--share {ALICE}")],
        env={**app.env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    shown = json.loads(app.cli("datasets", "show", "trial", "--json").stdout)
    assert "ages.csv" in shown["private_files"] and shown["shared_with"] == [ALICE]
    assert not (app.datasite.path / "private" / "syft_datasets" / "trial").exists()
    assert "made by the syft client" not in app.cli("datasets", "list").stdout


def test_over_drive_dataset_commands_say_the_change_reaches_drive_at_the_next_pass(app, data):
    said = "it reaches Google Drive at the next pass"
    assert said not in _create(app, data, "local").stdout
    app.set_config(sync={"transport": "drive"})
    results = [
        _create(app, data, "census"),
        app.cli("datasets", "share", "census", ALICE),
        app.cli("datasets", "unshare", "census", ALICE),
        app.cli("datasets", "delete", "census"),
    ]
    for result in results:
        assert result.returncode == 0, result.stderr
        assert said in result.stdout
