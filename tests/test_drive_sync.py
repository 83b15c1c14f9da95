"""Sync over Google Drive, with the real syft-client 0.1.117 as the data scientist.

The data scientist is the published client from PyPI, in its own cached virtual
environment, talking to a local Drive v3 server (tests/fake_drive.py) through a
``sitecustomize.py`` that sends its Google calls there; the app talks to the
same server through ``drive.api_endpoint``. Nothing on either side is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from tests.conftest import DS_EMAIL, PATIENCE, App, outbox, wait_until
from tests.fake_drive import FakeDrive

SYFT_CLIENT = "syft-client==0.1.117"
CACHE = Path(os.environ.get("SYFT_BG_TEST_CACHE", Path.home() / ".cache" / "syft-bg-tests"))


def client_venv(requirement: str) -> Path:
    """The Python of a virtual environment holding ``requirement`` from PyPI, built once."""
    folder = CACHE / requirement.replace("==", "-")
    python = folder / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", requirement],
                check=True,
                timeout=3 * PATIENCE,
            )
            (folder / ".complete").touch()
    return python


@pytest.fixture(scope="session")
def syft_client_python() -> Path:
    return client_venv(SYFT_CLIENT)


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    yield fake
    fake.stop()


class DataScientist:
    """The real syft-client, logged in as a data scientist, one process per call."""

    def __init__(self, python: Path, drive: FakeDrive, home: Path, email: str = DS_EMAIL):
        self.python = python
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
            "import json, syft_client as sc\n"
            f"c = sc.login_ds(email={self.email!r}, token_path={str(self.token)!r})\n"
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


def drive_app(app: App, drive: FakeDrive, **config: object) -> App:
    token = drive.write_token(app.tmp / "do_drive_token.json", app.do_email)
    app.set_config(
        sync={"transport": "drive"},
        drive={"generation": "0.1", "api_endpoint": drive.url, "token": str(token)},
        **config,
    )
    return app


def run_until(app: App, condition, what: str) -> None:
    def one_pass():
        app.run_pass()
        return condition()

    wait_until(one_pass, what)


def test_drive_peer_job_and_result_with_the_real_client(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = DataScientist(syft_client_python, drive, app.tmp / "ds")
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


def test_drive_refuses_changes_the_data_scientist_may_not_make(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = DataScientist(syft_client_python, drive, app.tmp / "ds")
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()
    app.run_pass()
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
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = DataScientist(syft_client_python, drive, app.tmp / "ds")
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()
    app.run_pass()
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
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = DataScientist(syft_client_python, drive, app.tmp / "ds")
    ds.run(f"c.add_peer({app.do_email!r})")
    for _ in range(3):
        app.run_pass()
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_peer_of_the_other_generation_is_named(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive)
    ds_token = drive.write_token(app.tmp / "other.json", "bob@uni.edu")
    del ds_token
    root = drive._create(
        "bob@uni.edu", {"name": "SyftBox", "mimeType": "application/vnd.google-apps.folder"}, b""
    )
    for kind in ("inbox", "outbox"):
        folder = drive._create(
            "bob@uni.edu",
            {
                "name": f"syft_datasite#0.10.0#{app.do_email}#{kind}#bob@uni.edu",
                "mimeType": "application/vnd.google-apps.folder",
                "parents": [root.id],
            },
            b"",
        )
        folder.grants[app.do_email] = "writer"
    assert app.run_pass().exit_code == 0
    state = json.loads(app.home.state_file.read_text())
    assert state["drive"]["other_generation"] == {"bob@uni.edu": "0.10.0"}
    assert not app.datasite.peer_request_file("bob@uni.edu").exists()
