"""The app run by an ordinary (non-root) user, as most data owners run it.

The suite runs as root in CI, so these tests switch to ``nobody`` with
setpriv and drive the app through its command line in a folder nobody owns.
RLIMIT_NPROC counts every process of nobody, so the jobs run holding
``job_user_alone`` (as do test_sandbox.py's, whose bwrap jobs are nobody too).
"""

from __future__ import annotations

import email
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from email import policy
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE, job_user_alone, text_of
from hostile import ProcessSampler, marked_processes, script

from syft_bg_app.store.home import AppHome

DO = "owner@datasite.org"
DS = "alice@uni.edu"
SETPRIV = shutil.which("setpriv")
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None,
    reason="needs root and setpriv to act as an ordinary user",
)
# The fork bomb's wall-clock timeout: held at max_processes it spins until then.
BOMB_TIMEOUT = 5


class UserApp:
    """An app home and SyftBox folder owned by nobody, driven as nobody."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.root = base / "SyftBox"
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "SYFT_BG_HOME": str(self.home)}
        self.python = sys.executable
        # A virtualenv under /root is out of nobody's reach: use the system Python of the
        # same version with this checkout and the virtualenv's packages on its path.
        system = shutil.which(
            f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin:/bin"
        )
        site = next(Path(sys.prefix).glob("lib/python*/site-packages"), None)
        if system and site:
            self.python = system
            self.env["PYTHONPATH"] = f"{REPO}:{site}"

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            cwd=self.base,
        )
        if check:
            assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
        return result

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(self.python, "-m", "syft_bg_app", *args, check=check)

    def write(self, path: Path, text: str) -> None:
        """Write a file as nobody (so nobody owns it, as on a real machine)."""
        self.run("mkdir", "-p", str(path.parent))
        subprocess.run(
            [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", "tee", str(path)],
            input=text,
            text=True,
            capture_output=True,
            check=True,
        )

    def submit(self, name: str, run_sh: str) -> None:
        folder = self.root / DO / "app_data" / "job" / "inbox" / DS / "v1" / name
        self.write(folder / "run.sh", run_sh)
        self.write(folder / "code" / "script.sh", "echo hi\n")
        meta = {"name": name, "type": "bash", "submitted_at": "2026-11-20T10:00:00Z"}
        meta.update(files=["script.sh"], version="1")
        self.write(folder / "config.yaml", yaml.safe_dump(meta))

    def state(self, name: str) -> dict:
        path = self.root / DO / "app_data" / "job" / "review" / DS / "v1" / name / "state.yaml"
        try:
            return yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            return {}

    def result(self, name: str, file: str) -> str:
        return (
            self.root / DO / "app_data" / "job" / "review" / DS / "v1" / name / file
        ).read_text()

    def until_finished(self, names: list[str]) -> None:
        end = time.monotonic() + PATIENCE
        while True:
            self.cli("run")
            if all(self.state(n).get("status") in ("done", "failed") for n in names):
                return
            assert time.monotonic() < end, {n: self.state(n) for n in names}
            time.sleep(0.1)

    def set_execute(self, **values: object) -> None:
        config = yaml.safe_load(self.home.joinpath("config.yaml").read_text())
        config["execute"].update(values)
        self.write(self.home / "config.yaml", yaml.safe_dump(config))


def _probe_as_nobody(app: UserApp) -> tuple[bool, str]:
    code = (
        "from syft_bg_app.execution.sandbox import probe_bwrap; "
        "p = probe_bwrap(False); print(p.ok, p.detail)"
    )
    result = app.run(app.python, "-c", code, check=False)
    return result.stdout.startswith("True"), result.stdout.strip() or result.stderr.strip()


@pytest.fixture
def user_app():
    base = Path(tempfile.mkdtemp(prefix="syft-bg-user-", dir="/tmp"))
    os.chmod(base, 0o755)
    os.chown(base, 65534, 65534)
    app = UserApp(base)
    probe = app.run(app.python, "-c", "import syft_bg_app, yaml, filelock", check=False)
    if probe.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"nobody cannot run this Python: {probe.stderr.strip()}")
    app.cli("init", "-e", DO, "-r", str(app.root), "--create")
    yield app
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(AppHome(app.home).runs_dir_of(65534), ignore_errors=True)


@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_an_ordinary_users_jobs_are_limited_and_cut_off_from_the_network(user_app, mode):
    if mode == "bwrap":
        works, detail = _probe_as_nobody(user_app)
        if not works:
            pytest.skip(f"bwrap unusable for an ordinary user here: {detail}")
    app = user_app
    config = yaml.safe_load(app.home.joinpath("config.yaml").read_text())
    config["notify"]["enabled"] = False
    app.write(app.home / "config.yaml", yaml.safe_dump(config))
    app.set_execute(sandbox=mode, network="off", timeout=int(PATIENCE), max_processes=16)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    marker = f"syftbg-userbomb-{uuid.uuid4().hex[:12]}"
    app.submit("who", f"#!/bin/bash\nid -u\n{script('escape.sh', targets='', port=port)}")
    app.submit("bomb", script("forkbomb.sh", marker=marker))
    app.cli("peers", "accept", DS)
    app.cli("run")
    # One after the other: RLIMIT_NPROC counts every task of the user, so a fork
    # bomb running beside another job of the same user can starve it of processes.
    with job_user_alone():
        app.cli("jobs", "approve", f"{DS}/who")
        app.until_finished(["who"])
        app.set_execute(timeout=BOMB_TIMEOUT)  # taken when the job starts
        app.cli("jobs", "approve", f"{DS}/bomb")
        with ProcessSampler(marker) as sampler:
            app.until_finished(["bomb"])
    most = sampler.most
    listener.close()

    assert app.state("who")["status"] == "done", app.cli("jobs", "show", f"{DS}/who").stdout
    out = app.result("who", "stdout.txt")
    assert out.splitlines()[0] == "65534"
    assert "NO-NETWORK" in out and "CONNECTED" not in out
    assert app.state("bomb")["status"] == "failed"
    # RLIMIT_NPROC holds an ordinary user's bomb; twice the limit allows for a /proc
    # scan counting a child that exits and the one forked in its place.
    assert 1 < most <= 2 * 16, most
    assert marked_processes(marker) == []


def test_an_ordinary_users_unisolated_jobs_are_announced_plainly(user_app):
    """With execute.sandbox: none the job runs as the app's user: status, setup-status
    and the approval email say that it can read everything that user can."""
    app = user_app
    config = yaml.safe_load(app.home.joinpath("config.yaml").read_text())
    config["execute"].update(sandbox="none", timeout=10)
    app.write(app.home / "config.yaml", yaml.safe_dump(config))
    app.write(app.home / "gmail_token.json", '{"refresh_token": "USER-SECRET"}')
    app.submit("plain", f"#!/bin/bash\nid -u\ncat {app.home}/gmail_token.json\n")
    app.cli("peers", "accept", DS)
    app.cli("run")
    app.cli("jobs", "approve", f"{DS}/plain")
    app.until_finished(["plain"])

    said = "jobs run without isolation as nobody and can read everything nobody can"
    assert said in app.cli("status").stdout
    assert said in app.cli("setup-status", check=False).stdout
    mails = [
        text_of(email.message_from_bytes(p.read_bytes(), policy=policy.default))
        for p in (app.home / "outbox").glob("*.eml")
    ]
    assert any(said in mail and "was approved" in mail for mail in mails)
    # What it says is what happens: the job ran as the app's user and read the token.
    assert app.state("plain")["status"] == "done"
    assert "USER-SECRET" in app.result("plain", "stdout.txt")


def test_an_ordinary_users_bwrap_job_learns_no_path_and_makes_no_user_namespace(user_app):
    """Run by an ordinary user, bwrap itself refuses the job new user namespaces
    (--disable-userns), and the job's pid 1, mounts and environment name none of
    the data owner's folders."""
    works, detail = _probe_as_nobody(user_app)
    if not works:
        pytest.skip(f"bwrap unusable for an ordinary user here: {detail}")
    app = user_app
    config = yaml.safe_load(app.home.joinpath("config.yaml").read_text())
    config["notify"]["enabled"] = False
    config["execute"].update(sandbox="bwrap", timeout=20)
    app.write(app.home / "config.yaml", yaml.safe_dump(config))
    app.submit("paths", script("paths.sh"))
    app.submit("userns", script("userns.sh"))
    app.cli("peers", "accept", DS)
    app.cli("run")
    app.cli("jobs", "approve", f"{DS}/paths")
    app.cli("jobs", "approve", f"{DS}/userns")
    app.until_finished(["paths", "userns"])

    out = app.result("paths", "stdout.txt")
    assert "== end" in out
    assert out.split("== pid 1\n")[1].split()[1] == "--args"
    for place in (app.home, app.root, app.base):
        assert str(place) not in out
    userns = app.result("userns", "stdout.txt")
    assert "== end" in userns and "MADE" not in userns
    assert userns.count("refused") == 3


def test_an_ordinary_users_internet_jobs_get_a_way_out_but_not_the_hosts_loopback(user_app):
    """execute.network: internet for an app run by an ordinary user: slirp4netns joins
    the user namespace bwrap made, the job has tap0, and 127.0.0.1 of the host stays shut;
    where the user cannot open /dev/net/tun, jobs run with network off and status says why."""
    works, detail = _probe_as_nobody(user_app)
    if not works:
        pytest.skip(f"bwrap unusable for an ordinary user here: {detail}")
    if shutil.which("slirp4netns", path="/usr/bin:/bin") is None:
        pytest.skip("slirp4netns is not installed")
    app = user_app
    config = yaml.safe_load(app.home.joinpath("config.yaml").read_text())
    config["notify"]["enabled"] = False
    app.write(app.home / "config.yaml", yaml.safe_dump(config))
    app.set_execute(sandbox="bwrap", network="internet", timeout=int(PATIENCE))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    app.submit(
        "net",
        "#!/bin/bash\ngrep -q 'tap0:' /proc/net/dev && echo HAS-TAP0\n"
        f"{script('escape.sh', targets='', port=port)}",
    )
    app.cli("peers", "accept", DS)
    app.cli("run")
    with job_user_alone():
        app.cli("jobs", "approve", f"{DS}/net")
        app.until_finished(["net"])
    listener.close()
    assert app.state("net")["status"] == "done", app.cli("jobs", "show", f"{DS}/net").stdout
    out = app.result("net", "stdout.txt")
    assert "CONNECTED" not in out
    tun = os.stat("/dev/net/tun")
    if tun.st_mode & 0o006 == 0o006:
        assert "HAS-TAP0" in out, app.result("net", "stderr.txt")
    else:
        # This machine keeps the tun device for root: no way out, and never the host's.
        assert "HAS-TAP0" not in out
        assert "/dev/net/tun cannot be opened by this user" in app.result("net", "stderr.txt")
        status = app.cli("status").stdout
        assert "/dev/net/tun cannot be opened by this user" in status
