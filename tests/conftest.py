"""Shared fixtures: a throwaway app home and SyftBox folder, and helpers that
write datasites the way syft-job and sync clients do.

Tests run in parallel (pytest-xdist, see tests/run.sh) on machines of any speed:
nothing here may depend on how fast the machine is, or on running alone.
"""

from __future__ import annotations

import contextlib
import email
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from filelock import FileLock
from hypothesis import HealthCheck, settings

from syft_bg_app.config.load import load_config
from syft_bg_app.datasite.layout import Datasite
from syft_bg_app.passes import run_pass
from syft_bg_app.store.home import AppHome

if TYPE_CHECKING:
    from tests.fake_drive import FakeDrive


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Captured output and logs of tests about names that are not UTF-8 hold lone
    surrogates, which a report cannot carry to the main process under
    pytest-xdist: show them as ``\\udcff`` escapes instead."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for title, text in report.sections
    ]


REPO = Path(__file__).resolve().parent.parent
DO_EMAIL = "owner@datasite.org"
DS_EMAIL = "alice@uni.edu"

# Seconds to wait for something that takes well under a second on an idle machine
# (a job to finish, a process to appear, a line to be printed). Only a hang reaches
# it: a loaded 2-core machine can be many times slower than a developer's laptop.
PATIENCE = 300.0
# A command that must never run in a test: stands for "not installed".
MISSING_COMMAND = "/nonexistent/syft-bg-test-command"


# Property tests judge what the code does, not how fast: no per-example deadline and
# no "generating data is too slow" failure on a loaded machine.
settings.register_profile(
    "any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("any-machine")


def wait_until(condition: Callable[[], object], what: str, limit: float = PATIENCE) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    end = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"waited {limit:.0f} s for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def job_user_alone() -> Iterator[None]:
    """Hold while jobs run whose test counts on RLIMIT_NPROC of the job user (fork
    bombs, ``max_processes``): that limit counts every process of the user, so such
    runs never overlap, whichever test worker (or other checkout's suite on this
    machine) starts them. As root the job user is ``nobody`` for all of them."""
    path = Path(tempfile.gettempdir()) / f"syft-bg-tests-uid{os.getuid()}-job-user.lock"
    with FileLock(path):
        yield


def default_sigint() -> None:
    """For ``preexec_fn``: give a child the default SIGINT (Ctrl-C) disposition.

    A suite started from a non-interactive shell (``nohup ... &``, some CI runners)
    inherits SIGINT ignored, and so would every process it starts: a test that
    sends SIGINT sets up the disposition it relies on. The app itself keeps an
    ignored SIGINT ignored, as Unix programs do."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(name="isolated_schedule", autouse=True)
def isolated_schedule_fixture(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """No test touches the real user's schedule: each gets its own XDG_CONFIG_HOME
    (where systemd user units would go) and, unless it asks for more, a
    ``crontab`` and ``systemctl`` that do not exist ("no scheduler here")."""
    config_home = tmp_path_factory.mktemp("xdg-config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("SYFT_BG_CRONTAB", MISSING_COMMAND)
    monkeypatch.setenv("SYFT_BG_SYSTEMCTL", MISSING_COMMAND)
    return config_home


# Folders tests make outside their tmp_path (run folders live under /var/tmp):
# removed after the session.
SHARED_FOLDERS: set[Path] = set()


@pytest.fixture(autouse=True, scope="session")
def _remove_shared_folders():
    yield
    for folder in SHARED_FOLDERS:
        if folder.parent in (Path("/var/tmp"), Path("/tmp")):
            shutil.rmtree(folder, ignore_errors=True)


def _app_program() -> str:
    script = Path(sys.prefix) / "bin" / "syft-bg"
    found = shutil.which("syft-bg")
    return "syft-bg" if found and os.path.samefile(found, script) else str(script)


APP_PROGRAM = _app_program()


class App:
    """An initialised app home over a SyftBox folder, driven in-process or as a CLI."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = AppHome(tmp_path / "home")
        SHARED_FOLDERS.add(self.home.runs_dir)
        self.root = tmp_path / "SyftBox"
        self.do_email = DO_EMAIL

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SYFT_BG_HOME"] = str(self.home.root)
        return env

    def command(self, arguments: str) -> str:
        """A command as the app suggests it for this home (in fix: lines, errors and
        emails): a ``syft-bg`` that is not this app's on PATH gives way to the full
        path of this environment's script, and the home is not the default one."""
        return f"{APP_PROGRAM} --home {self.home.root} {arguments}"

    def init(self, **config: object) -> App:
        result = self.cli("init", "-e", self.do_email, "-r", str(self.root), "--create")
        assert result.returncode == 0, result.stderr
        if config:
            self.set_config(**config)
        return self

    def set_config(self, **sections: object) -> None:
        """Merge values into config.yaml (``execute={"timeout": 5}``)."""
        data = yaml.safe_load(self.home.config_file.read_text())
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        self.home.config_file.write_text(yaml.safe_dump(data))

    @property
    def config(self):
        return load_config(self.home.config_file)

    @property
    def datasite(self) -> Datasite:
        return Datasite(self.root, self.do_email)

    def run_pass(self):
        return run_pass(self.home)

    def cli(self, *args: str, check: bool = False, timeout: float = PATIENCE):
        result = subprocess.run(
            [sys.executable, "-m", "syft_bg_app", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    # -- writing the datasite like a data scientist would ----------------------
    def submit(
        self,
        name: str,
        ds_email: str = DS_EMAIL,
        files: dict[str, str | bytes] | None = None,
        run_sh: str | bytes = "#!/bin/bash\necho hello\n",
        job_type: str = "bash",
        protocol: str = "1",
        metadata: dict | None = None,
        as_peer: bool = True,
    ) -> Path:
        """Write a job folder in the syft-job layout (config.yaml, run.sh, code/).

        ``as_peer``: the data scientist's inbox carries the data owner's permission
        file (syft-job's ``setup_ds_job_folder_as_do`` writes it when a peer is
        accepted), so the app treats them as an accepted peer; False submits as
        someone the data owner never accepted.
        """
        files = {"script.sh": "echo hello\n"} if files is None else files
        base = self.datasite.inbox / ds_email
        if as_peer and not (base / "syft.pub.yaml").exists():
            self.datasite.write_permissions(base, write=[ds_email])
        folder = (base / f"v{protocol}" / name) if protocol != "0" else base / name
        (folder / "code").mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = folder / "code" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        (folder / "run.sh").write_bytes(run_sh.encode() if isinstance(run_sh, str) else run_sh)
        meta = {
            "name": name,
            "type": job_type,
            "submitted_at": "2026-11-20T10:00:00Z",
            "files": sorted(files),
            "dependencies": [],
            "job_type": "local",
        }
        if protocol != "0":
            meta.update(canonical_name="JobSubmissionMetadata", version="1")
        meta.update(metadata or {})
        (folder / "config.yaml").write_text(yaml.safe_dump(meta))
        return folder

    def request_peer(self, email: str, message: str | None = None) -> Path:
        path = self.datasite.peers / email / "request.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"email": email, "requested_at": "2026-11-20T09:00:00Z"}
        if message:
            data["message"] = message
        path.write_text(yaml.safe_dump(data))
        return path

    def job_state(self, name: str, ds_email: str = DS_EMAIL, protocol: str = "1") -> dict:
        base = self.datasite.review / ds_email
        folder = (base / f"v{protocol}" / name) if protocol != "0" else base / name
        return yaml.safe_load((folder / "state.yaml").read_text())


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    """An initialised app (outbox mailer, no rules) over an empty SyftBox folder."""
    application = App(tmp_path)
    monkeypatch.setenv("SYFT_BG_HOME", str(application.home.root))
    return application.init()


@pytest.fixture
def bare_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    """An app home with no config yet."""
    application = App(tmp_path)
    monkeypatch.setenv("SYFT_BG_HOME", str(application.home.root))
    return application


def _rewrite_snapshot_member(snapshot_dir: Path, rel: str, data: bytes) -> None:
    """Replace one file inside an approval snapshot's pack, leaving its manifest alone."""
    import io
    import tarfile

    pack_path = snapshot_dir / "files.tar"
    members = []
    with tarfile.open(pack_path) as pack:
        for member in pack:
            members.append((member, pack.extractfile(member).read()))
    with tarfile.open(pack_path, "w") as pack:
        for member, content in members:
            content = data if member.name == rel else content
            member.size = len(content)
            pack.addfile(member, io.BytesIO(content))


@pytest.fixture
def tamper_snapshot():
    """Change a file inside a snapshot the way someone with access to the disk could."""
    return _rewrite_snapshot_member


def outbox(app: App) -> list[EmailMessage]:
    """The emails the outbox transport wrote, oldest name first."""
    folder = app.home.outbox_dir
    if not folder.is_dir():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(folder.glob("*.eml"))
    ]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    """A fake Google Drive v3 server on 127.0.0.1 that enforces owners and sharing."""
    from tests.fake_drive import FakeDrive

    fake = FakeDrive().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def syft_client_python() -> Path:
    """The python of the real syft-client 0.1.117 from PyPI, in its cached venv."""
    from tests.client_venvs import SYFT_CLIENT, client_venv

    return client_venv(SYFT_CLIENT)
