"""Sync over Google Drive, with the real syft-client 0.1.117 as the data scientist.

The data scientist is the published client from PyPI, in its own cached virtual
environment, talking to a local Drive v3 server (tests/fake_drive.py) through a
``sitecustomize.py`` that sends its Google calls there; the app talks to the
same server through ``drive.api_endpoint``. Nothing on either side is mocked.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.client_venvs import SYFT_0_10, SYFT_CLIENT, client_venv
from tests.conftest import DS_EMAIL, PATIENCE, App, outbox, wait_until
from tests.fake_drive import FOLDER, FakeDrive


@pytest.fixture(scope="session")
def syft_client_python() -> Path:
    return client_venv(SYFT_CLIENT)


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    yield fake
    fake.stop()


class RealClient:
    """The real syft client, logged in (as a data scientist by default), one process per call."""

    def __init__(
        self,
        python: Path,
        drive: FakeDrive,
        home: Path,
        email: str = DS_EMAIL,
        module: str = "syft_client",
        login: str = "login_ds",
    ):
        self.python = python
        self.module = module
        self.login = login
        self.email = email
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.token = drive.write_token(home / "token.json", email)
        self.redirect = drive.client_redirect(home / "redirect")

    @property
    def syftbox(self) -> Path:
        return self.home / f"SyftBox_{self.email}"

    def run(self, code: str) -> str:
        script = (
            f"import json, {self.module} as sc\n"
            f"c = sc.{self.login}(email={self.email!r}, token_path={str(self.token)!r})\n"
            + textwrap.dedent(code)
        )
        env = dict(os.environ, HOME=str(self.home), PYTHONPATH=str(self.redirect))
        env.pop("SYFT_BG_HOME", None)
        result = subprocess.run(
            [str(self.python), "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        return result.stdout

    def result_file(self, do_email: str, job: str, name: str) -> Path:
        return self.syftbox / do_email / "app_data/job/review" / self.email / job / name


def drive_app(app: App, drive: FakeDrive, generation: str = "0.1", **config: object) -> App:
    token = drive.write_token(app.tmp / "do_drive_token.json", app.do_email)
    app.set_config(
        sync={"transport": "drive"},
        drive={"generation": generation, "api_endpoint": drive.url, "token": str(token)},
        **config,
    )
    return app


def connected_peer(
    app: App, drive: FakeDrive, python: Path, generation: str = "0.1", module: str = "syft_client"
) -> RealClient:
    """A data scientist whose add_peer the app accepted by domain, on Drive too."""
    drive_app(app, drive, generation, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = RealClient(python, drive, app.tmp / "ds", module=module)
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()  # the request is read and accepted by its domain
    app.run_pass()  # accepted on Drive: the mirror folders and the version file
    return ds


def killed_passes(app: App, rounds: int, rng: random.Random, longest: float) -> None:
    """``rounds`` passes, each killed (SIGKILL) after a random time up to ``longest`` s."""
    for _ in range(rounds):
        process = subprocess.Popen(
            [sys.executable, "-m", "syft_bg_app", "run", "--once"],
            env=app.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, longest))
        process.kill()
        process.wait()


def run_until(app: App, condition, what: str) -> None:
    def one_pass():
        app.run_pass()
        return condition()

    wait_until(one_pass, what)


def test_drive_peer_job_and_result_with_the_real_client(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = RealClient(syft_client_python, drive, app.tmp / "ds")
    ds.run(f"c.add_peer({app.do_email!r})")

    app.run_pass()  # the request is read and accepted by its domain
    assert app.cli("peers", "list", check=True).stdout.count(DS_EMAIL) == 1
    app.run_pass()  # accepted on Drive: the mirror folders and the version file
    out = ds.run(
        f"""
        peer = [p for p in c.peers if p.email == {app.do_email!r}][0]
        print("STATE", peer.state.value)
        """
    )
    assert "STATE accepted" in out
    owned = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    assert json.loads(owned[0].content) == {DS_EMAIL: {"state": "accepted"}}

    ds.run(
        f"""
        c.submit_bash_job({app.do_email!r}, "echo hello over drive; mkdir -p outputs;"
                          " echo 42 > outputs/answer.txt", job_name="hello")
        """
    )
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/hello").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/hello", check=True)
    run_until(
        app,
        lambda: app.job_state("hello", protocol="0").get("status") in ("done", "failed"),
        "the job to finish",
    )
    assert app.job_state("hello", protocol="0")["status"] == "done"
    app.run_pass()  # the results travel to the data scientist's outbox

    ds.run("print(len(c.jobs))")
    state = yaml.safe_load(ds.result_file(app.do_email, "hello", "state.yaml").read_text())
    assert state["status"] == "done"
    stdout = ds.result_file(app.do_email, "hello", "stdout.txt").read_text()
    assert "hello over drive" in stdout
    # Only this data scientist's own folder travelled, never another's or the owner's.
    received = {
        p.relative_to(ds.syftbox / app.do_email)
        for p in (ds.syftbox / app.do_email).rglob("*")
        if p.is_file()
    }
    assert all(
        str(p).startswith(("app_data/job/review/alice@uni.edu", "app_data/job/inbox/alice@uni.edu"))
        for p in received
    ), received
    # The owner's own notebook (the real client's login_do) sees the same peer and job.
    notebook = RealClient(
        syft_client_python, drive, app.tmp / "do-notebook", app.do_email, login="login_do"
    )
    out = notebook.run(
        """
        print("PEERS", json.dumps({p.email: p.state.value for p in c.peers}))
        print("JOBS", json.dumps({j.name: j.status for j in c.jobs}))
        """
    )
    assert f'PEERS {{"{DS_EMAIL}": "accepted"}}' in out, out
    assert 'JOBS {"hello": "done"}' in out, out


def test_drive_refuses_changes_the_data_scientist_may_not_make(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    secret = app.datasite.path / "private" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("owner only\n")
    review_state = app.datasite.review / DS_EMAIL / "forged" / "state.yaml"
    # The real client's own proposal path: any file under the owner's folder.
    ds.run(
        f"""
        from pathlib import Path
        do = {app.do_email!r}
        root = Path(c.syftbox_folder) / do
        forged = {{
            "private/secret.txt": "overwritten\\n",
            "app_data/job/review/{DS_EMAIL}/forged/state.yaml": "status: done\\n",
            "app_data/job/inbox/{DS_EMAIL}/syft.pub.yaml": "rules: []\\n",
            "app_data/job/inbox/someone@else.org/x/run.sh": "echo x\\n",
        }}
        for rel, text in forged.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            c.datasite_watcher_syncer.on_file_change(Path(do) / rel, process_now=False)
        c.datasite_watcher_syncer.process_file_changes_queue()
        """
    )
    app.run_pass()
    assert secret.read_text() == "owner only\n"
    assert not review_state.exists()
    assert not (app.datasite.inbox / "someone@else.org").exists()
    grant = yaml.safe_load((app.datasite.inbox / DS_EMAIL / "syft.pub.yaml").read_text())
    assert grant["rules"], "the data scientist rewrote their own permission file"
    # Looked at once, refused, and moved out of the inbox: never read again.
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not [f for f in drive.children(inbox.id) if f.name.startswith("msgv2_")]
    archive = drive.named(f"syft_{DS_EMAIL}_to_{app.do_email}_archive")
    assert archive and drive.children(archive[0].id)
    refused = json.loads(app.home.state_file.read_text())["drive"]["ds"][DS_EMAIL]["refused"]
    reasons = " | ".join(r["why"] for r in refused)
    assert "private" in reasons and "permission file" in reasons, reasons
    assert reasons.count("do not let them write") == 2, reasons


def test_drive_pass_killed_before_archiving_receives_the_job_once(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo once', job_name='once')")

    # The move to the archive fails: the job is applied but its message stays.
    drive.refuse = lambda user, method, path, query: (
        (503, "backendError") if "addParents" in query else None
    )
    result = app.run_pass()
    assert result.exit_code == 1
    drive.refuse = None
    app.run_pass()
    app.run_pass()
    subjects = [m["Subject"] for m in outbox(app) if m["To"] == app.do_email]
    assert len([s for s in subjects if "once" in s]) == 1, subjects
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not drive.children(inbox.id)
    assert app.job_state("once", protocol="0")["status"] == "pending"


def test_drive_idle_pass_makes_few_requests(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    connected_peer(app, drive, syft_client_python)
    app.run_pass()
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_peer_of_the_other_generation_is_named(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive)
    drive.add_peer_folders("bob@uni.edu", app.do_email, "0.10.0")
    assert app.run_pass().exit_code == 0
    state = json.loads(app.home.state_file.read_text())
    assert state["drive"]["other_generation"] == {"bob@uni.edu": "0.10.0"}
    assert not app.datasite.peer_request_file("bob@uni.edu").exists()
    status = app.cli("status", check=True).stdout
    assert "Drive peer bob@uni.edu runs syft-client 0.10.0" in status
    assert "set drive.generation: '0.10'" in status
    peers = app.cli("peers", "list", check=True).stdout
    assert "bob@uni.edu" in peers and "other-version" in peers


def test_drive_passes_killed_at_random_instants_receive_each_job_once(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    names = [f"killed{i}" for i in range(3)]
    ds.run(
        "\n".join(
            f"c.submit_bash_job({app.do_email!r}, 'echo result of {n}', job_name={n!r})"
            for n in names
        )
    )
    killed_passes(app, 20, random.Random(15), 2.0)
    for name in names:
        run_until(
            app,
            lambda n=name: app.cli("jobs", "show", f"{DS_EMAIL}/{n}").returncode == 0,
            f"{name} to be received",
        )
        app.cli("jobs", "approve", f"{DS_EMAIL}/{name}", check=True)
    run_until(
        app,
        lambda: all(app.job_state(n, protocol="0").get("status") == "done" for n in names),
        "every job to finish",
    )
    app.run_pass()
    ds.run("c.sync()")
    for name in names:
        stdout = ds.result_file(app.do_email, name, "stdout.txt").read_text()
        assert stdout.strip() == f"result of {name}"
        kinds = [
            m["X-Syft-BG-Event"]
            for m in outbox(app)
            if m["To"] == app.do_email and name in m["Subject"]
        ]
        assert sorted(kinds) == sorted(set(kinds)), kinds
        assert "job_submitted" in kinds
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not drive.children(inbox.id)


def test_drive_outbox_of_20_messages_is_merged_and_the_client_still_reads_it_all(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    notes = app.datasite.review / DS_EMAIL / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    for i in range(25):
        (notes / f"n{i}.txt").write_text(f"note {i}\n")
        app.run_pass()
        if i == 10:
            ds.run("c.sync()")  # it has read some of the messages that get merged
    outbox_folder = [f for f in drive.files.values() if f.name.endswith(f"#outbox#{DS_EMAIL}")]
    messages = drive.children(outbox_folder[0].id)
    assert 1 <= len(messages) < 20, [m.name for m in messages]
    ds.run("c.sync()")
    received = ds.syftbox / app.do_email / "app_data/job/review" / DS_EMAIL / "notes"
    assert sorted(p.name for p in received.iterdir()) == sorted(f"n{i}.txt" for i in range(25))
    assert (received / "n7.txt").read_text() == "note 7\n"


def test_drive_generation_0_10_with_the_real_syft_0_10(app: App, drive: FakeDrive) -> None:
    python = client_venv(SYFT_0_10)
    drive_app(app, drive, generation="0.10", approve={"peers": {"approved_emails": [DS_EMAIL]}})
    ds = RealClient(python, drive, app.tmp / "ds10", module="syft")
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()
    app.run_pass()
    version = json.loads(
        [f for f in drive.named("SYFT_version.json") if f.owner == app.do_email][0].content
    )
    assert version["syft_client_version"] == "0.10.0"
    ds.run(
        f"""
        from pathlib import Path
        job = Path(c.syftbox_folder) / {app.do_email!r} / "app_data/job/inbox"
        job = job / {DS_EMAIL!r} / "v1" / "hello10"
        (job / "code").mkdir(parents=True)
        (job / "code" / "script.sh").write_text("echo hello from syft 0.10\\n")
        (job / "run.sh").write_text("#!/bin/bash\\nbash code/script.sh\\n")
        (job / "config.yaml").write_text(
            "name: hello10\\ntype: bash\\nsubmitted_at: '2026-11-20T10:00:00Z'\\n"
            "files: [script.sh]\\ndependencies: []\\njob_type: local\\n"
            "canonical_name: JobSubmissionMetadata\\nversion: '1'\\n"
        )
        c.push_job_files(job)
        """
    )
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/hello10").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/hello10", check=True)
    run_until(app, lambda: app.job_state("hello10").get("status") in ("done", "failed"), "the job")
    assert app.job_state("hello10")["status"] == "done"
    app.run_pass()
    ds.run("c.sync()")
    folder = ds.syftbox / app.do_email / "app_data/job/review" / DS_EMAIL / "v1" / "hello10"
    assert "hello from syft 0.10" in (folder / "stdout.txt").read_text()
    assert yaml.safe_load((folder / "state.yaml").read_text())["status"] == "done"


def test_setup_status_checks_the_drive_sign_in(app: App, drive: FakeDrive) -> None:
    from syft_bg_app.actions.setup_check import run_checks

    def drive_check():
        drive_lines = [c for c in run_checks(app.home) if c.label.startswith("Drive")]
        return next((c for c in drive_lines if not c.ok), drive_lines[-1])

    drive_app(app, drive)
    assert drive_check().ok
    token = app.tmp / "do_drive_token.json"
    token.chmod(0o644)
    check = drive_check()
    assert not check.ok and check.fix == f"chmod 600 {token}"
    drive.write_token(token, "someone@else.org")
    check = drive_check()
    assert not check.ok and "signs in as someone@else.org" in check.detail
    token.unlink()
    check = drive_check()
    assert not check.ok and f"no token at {token}" in check.detail


def test_drive_bad_messages_are_archived_with_a_reason_and_the_next_one_is_applied(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    from syft_bg_app.sync.drive import protocol

    ds = connected_peer(app, drive, syft_client_python)
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    impostor = json.dumps(
        {
            "sender_email": "mallory@uni.edu",
            "proposed_file_changes": [
                {
                    "path_in_datasite": f"app_data/job/inbox/{DS_EMAIL}/x/run.sh",
                    "content": "echo x\n",
                    "content_type": "text",
                    "datasite_email": app.do_email,
                }
            ],
        }
    ).encode()
    for name, data in (
        ("msgv2_1000.5_garbage.tar.gz", b"not a tar at all"),
        ("msgv2_1000.6_impostor.tar.gz", protocol.compress(impostor)),
    ):
        drive._create(DS_EMAIL, {"name": name, "parents": [inbox.id]}, data)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo fine', job_name='fine')")
    app.run_pass()
    assert app.job_state("fine", protocol="0")["status"] == "pending"
    assert not (app.datasite.inbox / DS_EMAIL / "x").exists()
    assert not drive.children(inbox.id)
    refused = json.loads(app.home.state_file.read_text())["drive"]["ds"][DS_EMAIL]["refused"]
    assert [r["message"] for r in refused] == [
        "msgv2_1000.5_garbage.tar.gz",
        "msgv2_1000.6_impostor.tar.gz",
    ]
    assert "not a message archive" in refused[0]["why"]
    assert "sent as 'mallory@uni.edu'" in refused[1]["why"]


def test_drive_a_revoked_sign_in_fails_the_sync_step_plainly_and_the_pass_goes_on(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    drive.tokens.clear()  # revoked: every request is refused
    result = app.run_pass()
    assert result.failed_steps == ["sync"]
    state = json.loads(app.home.state_file.with_name("last_pass.json").read_text())
    error = state["steps"]["sync"]["error"]
    assert "Drive refused the request (401" in error and "sign in to Google Drive again" in error
    assert all(state["steps"][step]["ok"] for step in ("notify", "approve", "execute"))


def test_drive_a_rejection_reaches_the_client_with_its_reason(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo no', job_name='nope')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/nope").returncode == 0, "job")
    app.cli("jobs", "reject", f"{DS_EMAIL}/nope", "-r", "uses too much data", check=True)
    app.run_pass()
    ds.run("c.sync()")
    state = yaml.safe_load(ds.result_file(app.do_email, "nope", "state.yaml").read_text())
    assert state["status"] == "rejected"
    assert state["review_reason"] == "uses too much data"


def test_drive_a_job_changed_by_the_client_after_approval_never_runs(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo as approved', job_name='swap')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/swap").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/swap", check=True)
    # The client proposes a new run.sh; its old_hash is right, so it is applied.
    ds.run(
        f"""
        from pathlib import Path
        rel = Path({app.do_email!r}) / "app_data/job/inbox" / {DS_EMAIL!r} / "swap/run.sh"
        (Path(c.syftbox_folder) / rel).write_text("#!/bin/bash\\necho changed after approval\\n")
        c.datasite_watcher_syncer.on_file_change(rel)
        """
    )
    run_until(
        app,
        lambda: app.job_state("swap", protocol="0").get("status") in ("done", "failed"),
        "the job to finish",
    )
    run_sh = app.datasite.inbox / DS_EMAIL / "swap" / "run.sh"
    assert "changed after approval" in run_sh.read_text()
    app.run_pass()
    ds.run("c.sync()")
    stdout = ds.result_file(app.do_email, "swap", "stdout.txt").read_text()
    assert "as approved" in stdout and "changed after approval" not in stdout


def test_drive_folders_named_for_someone_else_are_no_request(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    for peer in (DS_EMAIL, "../../escape"):
        drive.add_peer_folders("mallory@evil.org", app.do_email, "0.1.117", peer=peer)
    assert app.run_pass().exit_code == 0
    assert not app.datasite.peer_request_file(DS_EMAIL).exists()
    assert not (app.datasite.peers.parent.parent / "escape").exists()
    assert json.loads(app.home.state_file.read_text())["peers"] == {}


def test_drive_idle_pass_at_60_peers_makes_as_few_requests(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    for i in range(60):
        drive.add_peer_folders(f"ds{i}@uni.edu", app.do_email, "0.1.117")
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    mirrors = [f for f in drive.files.values() if f.owner == app.do_email and "#inbox#" in f.name]
    assert len(mirrors) == 60
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_a_job_with_a_refused_file_is_rejected_and_the_client_learns_why(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(
        f"""
        from pathlib import Path
        rel = Path({app.do_email!r}) / "app_data/job/inbox" / {DS_EMAIL!r} / "sneaky"
        job = Path(c.syftbox_folder) / rel
        (job / "code" / ".git").mkdir(parents=True)
        (job / "code" / ".git" / "config").write_text("[core]\\n")
        (job / "code" / "script.sh").write_text("echo sneaky\\n")
        (job / "run.sh").write_text("#!/bin/bash\\nbash code/script.sh\\n")
        (job / "config.yaml").write_text("name: sneaky\\ntype: bash\\nfiles: [script.sh]\\n")
        c.push_job_files(job)
        """
    )
    app.run_pass()
    state = app.job_state("sneaky", protocol="0")
    assert state["status"] == "rejected"
    assert "not accepted over Google Drive" in state["review_reason"]
    assert ".git/config" in state["review_reason"]
    app.run_pass()
    ds.run("c.sync()")
    seen = yaml.safe_load(ds.result_file(app.do_email, "sneaky", "state.yaml").read_text())
    assert seen["status"] == "rejected" and ".git/config" in seen["review_reason"]


def test_drive_peers_file_of_the_owners_notebook_keeps_its_entries(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    root = drive._create(app.do_email, {"name": "SyftBox", "mimeType": FOLDER}, b"")
    earlier = {"carol@lab.org": {"state": "accepted"}}
    meta = {"name": "SYFT_peers.json", "parents": [root.id]}
    drive._create(app.do_email, meta, json.dumps(earlier).encode())
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    app.run_pass()
    app.run_pass()
    files = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    assert len(files) == 1
    assert json.loads(files[0].content) == {**earlier, DS_EMAIL: {"state": "accepted"}}


def _archive(members: list[tuple[str, bytes]]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_drive_a_message_of_countless_or_huge_members_is_refused_without_unpacking_it() -> None:
    from syft_bg_app.sync.drive import protocol

    body = b'{"proposed_file_changes": [], "sender_email": "a@b.c"}'
    padding = [(f"pad{i}", b"") for i in range(200_000)]
    # The clients' form: the JSON first; whatever follows is never read.
    assert protocol.uncompress(_archive([(protocol.MESSAGE_MEMBER, body), *padding]), 4096) == body
    refused = [
        [*padding, (protocol.MESSAGE_MEMBER, body)],  # the JSON after 200,000 empty members
        [("big", b"\0" * 100_000), (protocol.MESSAGE_MEMBER, body)],  # after one over the cap
        [(protocol.MESSAGE_MEMBER, b" " * 5000)],  # the JSON itself over the cap
    ]
    for members in refused:
        with pytest.raises(protocol.MessageError):
            protocol.uncompress(_archive(members), 4096)
