"""A data scientist who controls folders of the datasite: links, swaps, huge trees, twins.

Everything under ``inbox/<ds>/`` and ``peers/<ds>/`` is written by a data
scientist. These tests make those folders links (to another data scientist's
folders, to system folders, to the owner's app home), swap a received job's
folder for a link or another folder at each step, submit trees too large or
deep to walk, and submit a v0 and a v1 job of the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import outbox, text_of

from syft_bg_app.approval import decisions, snapshot
from syft_bg_app.datasite import jobfiles
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.session import changing
from syft_bg_app.store.state import State

RUN_SH = "#!/bin/bash\nbash code/script.sh\n"
SCRIPT = "echo hello\n"
ALICE = "alice@uni.edu"
BOB = "bob@co.com"
EVE = "eve@evil.org"


@pytest.fixture(autouse=True)
def no_execution(request):
    """Jobs are looked at, approved and snapshotted here; running them is tested elsewhere."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").set_config(execute={"enabled": False})


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def rule(peers=(), files=None) -> dict:
    files = {"run.sh": RUN_SH, "code/script.sh": SCRIPT} if files is None else files
    return {
        "name": "hello",
        "peers": list(peers),
        "files": {path: sha(content) for path, content in files.items()},
    }


def set_rules(app, *rules: dict) -> None:
    app.set_config(approve={"auto_approvals": list(rules)})


def accept(app, *emails: str) -> None:
    with changing(app.home, "test") as ctx:
        for email in emails:
            decisions.accept_peer(ctx, email, "manual", "test")


def audit_entries(app, subject: str) -> list[dict]:
    try:
        lines = app.home.audit_log.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [e for e in map(json.loads, lines) if e["subject"] == subject]


def submit(app, name, ds=ALICE, protocol="1", run_sh=RUN_SH, files=None):
    files = {"script.sh": SCRIPT} if files is None else files
    return app.submit(name, ds_email=ds, protocol=protocol, run_sh=run_sh, files=files)


def jobs_of(app, ds: str) -> dict[str, dict]:
    state = State.load(app.home.state_file)
    return {
        (f"v{rec['protocol']}/{name}" if rec["protocol"] != "1" else name): rec
        for d, name, rec in state.iter_jobs()
        if d == ds
    }


def mail_to(app, address: str) -> list:
    """Emails about jobs to ``address`` (an accepted peer also gets one about that)."""
    return [m for m in outbox(app) if address in str(m["To"]) and "job" in str(m["Subject"])]


def secret_owner_folder(app) -> Path:
    """A folder of the owner's a link could point at, with a file that must never leak."""
    folder = app.tmp / "owner-private"
    (folder / "stats" / "code").mkdir(parents=True, exist_ok=True)
    (folder / "stats" / "run.sh").write_text(RUN_SH)
    (folder / "stats" / "code" / "script.sh").write_text(SCRIPT)
    (folder / "stats" / "config.yaml").write_text("name: stats\ntype: bash\n")
    (folder / "owner-secret-name.txt").write_text("do not show\n")
    return folder


def link_targets(app) -> dict[str, Path]:
    return {
        "another-ds": app.datasite.inbox / BOB,
        "system": Path("/etc"),
        "owner": secret_owner_folder(app),
        "app-home": app.home.root,
    }


def assert_no_leak(text: str, *targets: Path) -> None:
    for target in targets:
        assert str(target) not in text
    assert "owner-secret-name" not in text
    assert BOB not in text


# -- class 2: links where a data scientist's folder belongs ------------------------------


@pytest.mark.parametrize("target", ["another-ds", "system", "owner", "app-home"])
def test_an_inbox_folder_that_is_a_symlink_is_never_listed(app, target):
    accept(app, ALICE, BOB)
    submit(app, "stats", ds=BOB)
    to = link_targets(app)[target]
    (app.datasite.inbox / EVE).symlink_to(to, target_is_directory=True)

    summary = app.run_pass()
    app.run_pass()

    assert summary.exit_code == 0, summary
    assert jobs_of(app, EVE) == {}
    assert not (app.datasite.review / EVE).exists()
    assert mail_to(app, EVE) == []
    assert list(jobs_of(app, BOB)) == ["stats"]
    assert app.job_state("stats", ds_email=BOB)["status"] == "pending"
    assert EVE not in (State.load(app.home.state_file).data["peers"])

    # Accepting Eve would write her permission file wherever the link points
    # (into Bob's inbox: Eve could then write there). It is refused instead.
    permission = to / "syft.pub.yaml"
    before = permission.read_bytes() if permission.exists() else None
    accepted = app.cli("peers", "accept", EVE)
    assert accepted.returncode != 0 and "symlink" in accepted.stderr
    assert (permission.read_bytes() if permission.exists() else None) == before


@pytest.mark.parametrize("target", ["another-ds", "system", "owner"])
def test_a_v1_folder_that_is_a_symlink_is_never_listed(app, target):
    accept(app, ALICE, BOB, EVE)
    submit(app, "stats", ds=BOB)
    to = {"another-ds": app.datasite.inbox / BOB / "v1"}.get(target) or link_targets(app)[target]
    (app.datasite.inbox / EVE / "v1").symlink_to(to, target_is_directory=True)

    assert app.run_pass().exit_code == 0

    assert jobs_of(app, EVE) == {}
    assert mail_to(app, EVE) == []
    assert app.job_state("stats", ds_email=BOB)["status"] == "pending"


@pytest.mark.parametrize("protocol", ["1", "0"])
@pytest.mark.parametrize("target", ["another-ds-job", "system", "owner"])
def test_a_job_folder_that_is_a_symlink_is_rejected_without_naming_its_target(
    app, target, protocol
):
    accept(app, ALICE, BOB, EVE)
    bob_job = submit(app, "stats", ds=BOB)
    to = {
        "another-ds-job": bob_job,
        "system": Path("/etc"),
        "owner": secret_owner_folder(app) / "stats",
    }[target]
    base = app.datasite.inbox / EVE
    folder = base / "v1" / "stolen" if protocol == "1" else base / "stolen"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(to, target_is_directory=True)

    assert app.run_pass().exit_code == 0

    state = app.job_state("stolen", ds_email=EVE, protocol=protocol)
    assert state["status"] == "rejected"
    assert "is a symlink" in state["review_reason"]
    assert_no_leak(state["review_reason"], to, app.tmp)
    for message in mail_to(app, EVE):
        assert_no_leak(text_of(message), to, app.tmp)
    assert app.job_state("stats", ds_email=BOB)["status"] == "pending"
    assert not any(p.name == "files.tar" for p in app.home.snapshots_dir.rglob("*"))


def swap_for_link(folder: Path, to: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".orig"))
    folder.symlink_to(to, target_is_directory=True)


def swap_for_folder(folder: Path, to: Path) -> None:
    """Replace the folder with another real folder holding the same bytes (a new inode)."""
    copy = folder.with_name(folder.name + ".new")
    shutil.copytree(folder, copy)
    folder.rename(folder.with_name(folder.name + ".orig"))
    copy.rename(folder)


SWAPS = {
    "link-to-another-ds-job": lambda app, folder: swap_for_link(
        folder, app.datasite.inbox / BOB / "v1" / "stats"
    ),
    "link-to-owner-folder": lambda app, folder: swap_for_link(
        folder, secret_owner_folder(app) / "stats"
    ),
    "another-real-folder": lambda app, folder: swap_for_folder(folder, folder),
}


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_job_folder_swapped_after_receipt_is_rejected_by_the_next_pass(app, swap):
    accept(app, ALICE, BOB, EVE)
    submit(app, "stats", ds=BOB)
    folder = submit(app, "mine", ds=EVE)
    assert app.run_pass().exit_code == 0
    assert app.job_state("mine", ds_email=EVE)["status"] == "pending"

    SWAPS[swap](app, folder)
    # A rule that matches what the swapped-in folder holds: it must not approve it.
    set_rules(app, rule())
    assert app.run_pass().exit_code == 0

    state = app.job_state("mine", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "replaced" in state["review_reason"] or "symlink" in state["review_reason"]
    assert_no_leak(state["review_reason"], app.tmp)
    assert not [e for e in audit_entries(app, f"{EVE}/mine") if e["decision"] == "approved"]
    # Bob's own job is approved by the same rule: only the swapped one is refused.
    assert app.job_state("stats", ds_email=BOB)["status"] == "approved"
    for message in mail_to(app, EVE):
        assert_no_leak(text_of(message), app.tmp)


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_job_folder_swapped_while_it_is_still_arriving_is_rejected(app, swap):
    accept(app, EVE, BOB)
    submit(app, "stats", ds=BOB)
    folder = submit(app, "mine", ds=EVE)
    (folder / "run.sh").unlink()  # still arriving: run.sh comes later
    app.run_pass()
    assert jobs_of(app, EVE)["mine"]["status"] == "received"

    SWAPS[swap](app, folder)
    app.run_pass()

    state = app.job_state("mine", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "replaced" in state["review_reason"] or "symlink" in state["review_reason"]
    assert_no_leak(state["review_reason"], app.tmp)


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_manual_approval_of_a_swapped_job_folder_is_refused_and_rejects_it(app, swap):
    accept(app, EVE, BOB)
    submit(app, "stats", ds=BOB)
    folder = submit(app, "mine", ds=EVE)
    app.run_pass()
    SWAPS[swap](app, folder)

    result = app.cli("jobs", "approve", f"{EVE}/mine")

    assert result.returncode != 0
    assert "cannot approve" in result.stderr
    assert app.job_state("mine", ds_email=EVE)["status"] == "rejected"
    assert not snapshot.snapshot_dir(app.home.snapshots_dir, JobRef(EVE, "mine")).exists()


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_folder_swapped_between_the_match_and_the_snapshot_is_never_snapshotted(
    app, swap, monkeypatch
):
    accept(app, EVE, BOB)
    submit(app, "stats", ds=BOB)
    folder = submit(app, "mine", ds=EVE)
    app.run_pass()
    set_rules(app, rule(peers=[EVE]))
    real_open = decisions.open_received_job

    def swap_then_open(ctx, ref, record):
        # The rule matched (the approve step hashed the files); the folder is
        # swapped just before the approval reopens it to take the snapshot.
        if ref.ds_email == EVE and not folder.with_name("mine.orig").exists():
            SWAPS[swap](app, folder)
        return real_open(ctx, ref, record)

    monkeypatch.setattr(decisions, "open_received_job", swap_then_open)
    app.run_pass()

    assert app.job_state("mine", ds_email=EVE)["status"] == "rejected"
    assert not snapshot.snapshot_dir(app.home.snapshots_dir, JobRef(EVE, "mine")).exists()


def test_a_folder_swapped_while_the_snapshot_is_taken_is_read_from_the_folder_checked(
    app, monkeypatch
):
    accept(app, EVE)
    folder = submit(app, "mine", ds=EVE)
    app.run_pass()
    owner = secret_owner_folder(app)
    (owner / "stats" / "code" / "script.sh").write_text("cat /owner/secret\n")
    set_rules(app, rule(peers=[EVE]))
    real_take = snapshot.take

    def swap_then_take(*args, **kwargs):
        swap_for_link(folder, owner / "stats")
        return real_take(*args, **kwargs)

    monkeypatch.setattr(snapshot, "take", swap_then_take)
    app.run_pass()

    # The folder was opened and checked before the swap: the snapshot holds the
    # bytes that were matched, never what the link points at.
    assert app.job_state("mine", ds_email=EVE)["status"] == "approved"
    files, _ = snapshot.verified(app.home.snapshots_dir, JobRef(EVE, "mine"))
    assert (files / "code" / "script.sh").read_text() == SCRIPT


def _done_job_of_eve(app) -> Path:
    """Eve's job "mine", approved and done; its folder."""
    accept(app, EVE)
    folder = submit(app, "mine", ds=EVE)
    app.run_pass()
    app.cli("jobs", "approve", f"{EVE}/mine", check=True)
    # Finished (here by another tool, as syft-job can); the next pass notices.
    app.datasite.write_job_state(JobRef(EVE, "mine"), status="done", return_code=0)
    app.run_pass()
    assert jobs_of(app, EVE)["mine"]["status"] == "done"
    return folder


def test_a_rerun_with_a_fresh_snapshot_never_reads_through_a_swapped_folder(app):
    folder = _done_job_of_eve(app)
    swap_for_link(folder, secret_owner_folder(app) / "stats")

    result = app.cli("jobs", "rerun", f"{EVE}/mine", "--fresh-snapshot")

    assert result.returncode != 0
    assert "symlink" in result.stderr
    assert app.job_state("mine", ds_email=EVE)["status"] in ("done", "failed")


def test_a_rerun_with_a_fresh_snapshot_refuses_a_job_folder_replaced_by_another(app):
    folder = _done_job_of_eve(app)
    # Another real folder (no link) in its place, with other files: not what was received.
    replaced = folder.with_name("mine-new")
    shutil.copytree(folder, replaced)
    (replaced / "code" / "extra.py").write_text("print('not reviewed')\n")
    shutil.rmtree(folder)
    replaced.rename(folder)

    result = app.cli("jobs", "rerun", f"{EVE}/mine", "--fresh-snapshot")

    assert result.returncode != 0
    assert "replaced" in result.stderr or "not the folder" in result.stderr, result.stderr
    assert app.job_state("mine", ds_email=EVE)["status"] == "done"


@pytest.mark.parametrize(
    "where", ["code-subfolder", "code-subfolder-after-receipt", "file", "file-after-receipt"]
)
def test_a_link_inside_code_is_never_followed(app, where):
    accept(app, EVE, BOB)
    bob_job = submit(app, "stats", ds=BOB, files={"lib/data.py": "BOB = 1\n"})
    folder = submit(app, "mine", ds=EVE, files={"script.sh": SCRIPT, "lib/data.py": "X = 1\n"})
    after = where.endswith("after-receipt")
    if after:
        app.run_pass()
    if where.startswith("code-subfolder"):
        shutil.rmtree(folder / "code" / "lib")
        (folder / "code" / "lib").symlink_to(bob_job / "code" / "lib")
    else:
        (folder / "code" / "lib" / "data.py").unlink()
        (folder / "code" / "lib" / "data.py").symlink_to(bob_job / "code" / "lib" / "data.py")
    # A rule trusting exactly Bob's bytes at those paths.
    set_rules(
        app,
        rule(files={"run.sh": RUN_SH, "code/script.sh": SCRIPT, "code/lib/data.py": "BOB = 1\n"}),
    )
    app.run_pass()

    state = app.job_state("mine", ds_email=EVE)
    if after:
        # Received before the link appeared: never approved, and a manual
        # approval (of what was received) refuses the changed files.
        assert state["status"] == "pending"
        assert app.cli("jobs", "approve", f"{EVE}/mine").returncode != 0
        assert app.job_state("mine", ds_email=EVE)["status"] == "pending"
    else:
        assert state["status"] == "rejected"
        assert "code/lib" in state["review_reason"] and "symlink" in state["review_reason"]
        assert_no_leak(state["review_reason"], app.tmp)
    assert not snapshot.snapshot_dir(app.home.snapshots_dir, JobRef(EVE, "mine")).exists()


@pytest.mark.parametrize("what", ["folder-to-another-ds", "folder-to-owner", "request-file"])
def test_a_peer_request_through_a_link_is_never_read(app, what):
    bob_request = app.request_peer(BOB, message="Bob here")
    owner = secret_owner_folder(app)
    (owner / "request.yaml").write_text(f"email: {EVE}\nrequested_at: 2026-11-20T09:00:00Z\n")
    eve = app.datasite.peers / EVE
    if what == "folder-to-another-ds":
        eve.symlink_to(bob_request.parent, target_is_directory=True)
    elif what == "folder-to-owner":
        eve.symlink_to(owner, target_is_directory=True)
    else:
        eve.mkdir(parents=True)
        (eve / "request.yaml").symlink_to(owner / "request.yaml")

    assert app.run_pass().exit_code == 0
    app.run_pass()

    peers = State.load(app.home.state_file).data["peers"]
    assert peers[BOB]["status"] == "requested"
    assert EVE not in peers
    assert mail_to(app, EVE) == []


# -- class 4: bounded work per job ----------------------------------------------------------


def write_many_files(folder: Path, count: int) -> None:
    """``count`` one-byte files, written with one descriptor of the folder (fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            fd = os.open(f"f{i}.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dir_fd)
            os.write(fd, b"x")
            os.close(fd)
    finally:
        os.close(dir_fd)


class WalkCounter:
    """Counts the entries the job-file walk looks at (the work a pass does per job)."""

    def __init__(self, monkeypatch):
        self.entries = 0
        real = os.scandir

        def counting(path=".", _real=real):
            iterator = _real(path)
            counter = self

            class Counted:
                def __enter__(self):
                    iterator.__enter__()
                    return self

                def __exit__(self, *exc):
                    return iterator.__exit__(*exc)

                def __iter__(self):
                    for entry in iterator:
                        counter.entries += 1
                        yield entry

                def close(self):
                    iterator.close()

            return Counted()

        monkeypatch.setattr(jobfiles.os, "scandir", counting)


def test_a_job_of_100000_files_is_rejected_with_a_reason_and_later_passes_do_not_walk_it(
    app, monkeypatch
):
    accept(app, EVE, ALICE)
    folder = submit(app, "many", ds=EVE)
    write_many_files(folder / "code" / "data", 100_000)
    submit(app, "fine", ds=ALICE)
    counter = WalkCounter(monkeypatch)

    assert app.run_pass().exit_code == 0

    state = app.job_state("many", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "more than 10000 files" in state["review_reason"]
    # The walk stopped at the limit instead of listing every file.
    assert counter.entries < 10_000 + 1_000
    assert app.job_state("fine")["status"] == "pending"
    emails = mail_to(app, EVE)
    assert emails and all(len(m.as_bytes()) < 100_000 for m in emails)

    counter.entries = 0
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    assert counter.entries < 100  # the rejected job is never walked again


def test_a_job_that_grows_past_the_file_limit_after_receipt_is_rejected(app):
    app.set_config(sync={"max_job_files": 50})
    accept(app, EVE)
    folder = submit(app, "grows", ds=EVE)
    app.run_pass()
    assert app.job_state("grows", ds_email=EVE)["status"] == "pending"

    write_many_files(folder / "code" / "more", 200)
    app.run_pass()

    state = app.job_state("grows", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "more than 50 files" in state["review_reason"]


def make_deep_tree(base: Path, depth: int, name: str = "deeper-folder") -> None:
    """A chain of ``depth`` folders with a file at the bottom, built relative to each
    parent (the full path is far longer than PATH_MAX)."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"x = 1\n")
        os.close(leaf)
    finally:
        os.close(fd)


@pytest.mark.parametrize("depth", [1100, 40])
def test_a_tree_deeper_than_the_limit_gets_an_outcome_and_sync_keeps_working(app, depth):
    accept(app, EVE, ALICE)
    folder = submit(app, "deep", ds=EVE)
    make_deep_tree(folder / "code", depth)
    if depth == 1100:
        assert len(str(folder)) + depth * len("/deeper-folder") > os.pathconf("/", "PC_PATH_MAX")

    first = app.run_pass()
    submit(app, "after", ds=ALICE)
    second = app.run_pass()

    assert first.exit_code == second.exit_code == 0, (first, second)
    state = app.job_state("deep", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "nested more than 32 deep" in state["review_reason"]
    assert app.job_state("after")["status"] == "pending"
    assert app.cli("jobs", "show", f"{EVE}/deep").returncode == 0
    remove_deep_tree(folder / "code", "deeper-folder")


def remove_deep_tree(base: Path, name: str) -> None:
    """Flatten the chain one level at a time (never a path longer than two names), then
    remove it: pytest's own clean-up would recurse past Python's limit."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        top, flat = name, 0
        while True:
            try:
                os.rename(f"{top}/{name}", f"flat{flat}", src_dir_fd=fd, dst_dir_fd=fd)
            except FileNotFoundError:
                break
            top, flat = f"flat{flat}", flat + 1
    finally:
        os.close(fd)
    shutil.rmtree(base)


def test_a_path_longer_than_the_limit_is_rejected(app):
    accept(app, EVE)
    folder = submit(app, "long", ds=EVE)
    make_deep_tree(folder / "code", 5, name="n" * 250)

    app.run_pass()

    state = app.job_state("long", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "longer than 1024 characters" in state["review_reason"]


def test_a_tree_within_the_limits_is_received(app):
    accept(app, EVE)
    folder = submit(app, "ok-depth", ds=EVE)
    make_deep_tree(folder / "code", 30, name="d")

    app.run_pass()

    assert app.job_state("ok-depth", ds_email=EVE)["status"] == "pending"


@pytest.mark.parametrize("layout", ["one-sparse-file", "many-files"])
def test_a_job_larger_than_the_size_limit_is_rejected(app, layout):
    app.set_config(sync={"max_job_mb": 1})
    accept(app, EVE)
    folder = submit(app, "big", ds=EVE)
    if layout == "one-sparse-file":
        with open(folder / "code" / "big.bin", "wb") as handle:
            handle.truncate(3_000_000)
    else:
        for i in range(30):
            (folder / "code" / f"part{i}.bin").write_bytes(b"y" * 50_000)

    app.run_pass()

    state = app.job_state("big", ds_email=EVE)
    assert state["status"] == "rejected"
    assert "more than the 1 MB this datasite accepts" in state["review_reason"]


# -- class 9: a v0 and a v1 job of the same name -----------------------------------------------


def test_a_v0_and_a_v1_job_of_the_same_name_are_two_jobs_with_two_outcomes(app):
    accept(app, ALICE)
    submit(app, "stats", protocol="0", run_sh="#!/bin/bash\necho v0\n")
    submit(app, "stats", protocol="1", run_sh="#!/bin/bash\necho v1\n")

    app.run_pass()

    assert app.job_state("stats", protocol="0")["status"] == "pending"
    assert app.job_state("stats", protocol="1")["status"] == "pending"
    listing = app.cli("jobs", "list", check=True).stdout
    assert f"{ALICE}/v0/stats" in listing and f"{ALICE}/stats" in listing
    submitted = [m for m in mail_to(app, app.do_email) if "stats" in m["Subject"]]
    assert len({m["Subject"] for m in submitted}) == 2

    ambiguous = app.cli("jobs", "approve", "stats")
    assert ambiguous.returncode != 0 and f"{ALICE}/v0/stats" in ambiguous.stderr

    app.cli("jobs", "approve", f"{ALICE}/v0/stats", check=True)
    app.cli("jobs", "reject", f"{ALICE}/stats", "-r", "not this one", check=True)
    app.run_pass()

    assert app.job_state("stats", protocol="0")["status"] == "approved"
    v1 = app.job_state("stats", protocol="1")
    assert v1["status"] == "rejected" and v1["review_reason"] == "not this one"
    alice_mail = [m["Subject"] for m in mail_to(app, ALICE)]
    assert any("v0/stats" in s for s in alice_mail)
    show = app.cli("jobs", "show", f"{ALICE}/v1/stats", check=True).stdout
    assert "rejected" in show


def test_a_schema_2_checkpoint_is_migrated_and_the_job_it_left_out_is_received(app):
    accept(app, ALICE)
    submit(app, "stats", protocol="0")
    submit(app, "stats", protocol="1")
    app.run_pass()
    # What the older app left behind: one record for both (the v0 job's), keyed by
    # name, and no state.yaml for the v1 job, which it never received.
    path = app.home.state_file
    data = json.loads(path.read_text())
    record = data["jobs"][ALICE].pop("v0/stats")
    data["jobs"][ALICE] = {"stats": record}
    data["schema"] = 2
    path.write_text(json.dumps(data))
    (app.datasite.review / ALICE / "v1" / "stats" / "state.yaml").unlink()

    app.run_pass()

    state = State.load(path)
    assert state.data["schema"] == 3
    assert state.job(ALICE, "stats", "0")["status"] == "pending"
    assert state.job(ALICE, "stats", "1")["status"] == "pending"
    assert app.job_state("stats", protocol="1")["status"] == "pending"
    app.cli("jobs", "approve", f"{ALICE}/v0/stats", check=True)
    assert app.job_state("stats", protocol="0")["status"] == "approved"
    assert app.job_state("stats", protocol="1")["status"] == "pending"


def test_an_old_v0_job_keeps_its_short_name_where_it_has_no_v1_twin(app):
    accept(app, ALICE)
    submit(app, "legacy", protocol="0")
    app.run_pass()
    path = app.home.state_file
    data = json.loads(path.read_text())
    data["jobs"][ALICE] = {"legacy": data["jobs"][ALICE].pop("v0/legacy")}
    data["schema"] = 2
    path.write_text(json.dumps(data))

    app.cli("jobs", "approve", f"{ALICE}/legacy", check=True)

    assert app.job_state("legacy", protocol="0")["status"] == "approved"
    assert State.load(path).job(ALICE, "legacy", "0")["status"] == "approved"
