"""What both schedulers share: the app folder, the unit name of an app home, the
command a scheduled pass runs, and running ``systemctl``/``crontab`` (or what
SYFT_BG_SYSTEMCTL and SYFT_BG_CRONTAB replace them with) with a time limit."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.home import AppHome

SYSTEMCTL_ENV = "SYFT_BG_SYSTEMCTL"


CRONTAB_ENV = "SYFT_BG_CRONTAB"


COMMAND_TIMEOUT = 15.0


class ScheduleError(SyftBgError):
    """The schedule could not be read or changed; the message says what to do."""


def app_dir() -> Path:
    """The app's folder: the repository (or SyftBox app bundle) holding run.sh."""
    return Path(__file__).resolve().parents[2]


def hosted_by_syftbox(folder: Path | None = None) -> bool:
    """True when the app sits in ``<SyftBox>/apps/``, where SyftBox itself calls run.sh."""
    folder = folder or app_dir()
    return folder.parent.name == "apps"


def unit_name(home: AppHome) -> str:
    """``syft-bg`` for the default app home, ``syft-bg-<8 hex>`` for any other."""
    root = Path(os.path.abspath(home.root))
    if root == Path(os.path.abspath(Path.home() / ".syft-bg")):
        return "syft-bg"
    return "syft-bg-" + hashlib.sha256(str(root).encode()).hexdigest()[:8]


def _command(env_name: str, default: list[str]) -> list[str]:
    override = os.environ.get(env_name, "").strip()
    return shlex.split(override) if override else default


def systemctl_command() -> list[str]:
    return _command(SYSTEMCTL_ENV, ["systemctl", "--user"])


def crontab_command() -> list[str]:
    return _command(CRONTAB_ENV, ["crontab"])


def pass_command(folder: Path | None = None) -> list[str]:
    """What a scheduled pass runs: run.sh in the app folder, or this Python's CLI
    when the package was installed without its folder."""
    folder = folder or app_dir()
    run_sh = folder / "run.sh"
    if run_sh.is_file():
        if os.access(run_sh, os.X_OK):
            return [str(run_sh)]
        # A copy that lost its executable bit (synced, unpacked) still runs through bash.
        return [shutil.which("bash") or "/bin/bash", str(run_sh)]
    import sys

    return [sys.executable, "-m", "syft_bg_app", "run", "--once"]


def run_command(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(
            argv, 124, "", f"{' '.join(argv)}: no answer within {COMMAND_TIMEOUT:.0f} s"
        )


def last_line(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit status {result.returncode}"


def crontab_user() -> str:
    argv = crontab_command()
    if "-u" in argv and argv.index("-u") + 1 < len(argv):
        return argv[argv.index("-u") + 1]
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
