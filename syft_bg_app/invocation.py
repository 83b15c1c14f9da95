"""How the user reaches this app from a shell, and the ``syft-bg`` launcher.

Every command the app suggests (``fix:`` lines, the no-config message, emails,
next steps) is built by :func:`command`, so that it works when pasted from any
folder: plain ``syft-bg`` only when the ``syft-bg`` on PATH is this app (a
different ``syft-bg``, such as the PyPI 0.3 daemons, may be there), otherwise
the absolute path of this checkout's ``.venv/bin/syft-bg`` (or ``run.sh``);
plus ``--home H`` when the app home is not the default one, since an email is
read far from the shell that had ``SYFT_BG_HOME`` set.

``syft-bg init --link-bin`` writes a small launcher into ``~/.local/bin`` (the
folder pipx uses) that execs this checkout's ``.venv/bin/syft-bg``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from syft_bg_app.errors import UsageError
from syft_bg_app.store.home import AppHome, colab_home

APP_NAME = "syft-bg"
# The first lines of a launcher this app wrote; a file without them is not ours.
LAUNCHER_MARK = "# syft-bg launcher written by 'syft-bg init --link-bin'"
APP_DIR = Path(__file__).resolve().parent.parent


def app_script() -> Path | None:
    """This environment's ``syft-bg`` console script, if it has one."""
    script = Path(sys.prefix) / "bin" / APP_NAME
    return script if script.is_file() and os.access(script, os.X_OK) else None


def _launcher_target(path: Path) -> Path | None:
    """The script a launcher written by this app execs; None for any other file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if LAUNCHER_MARK not in head:
        return None
    for line in head.splitlines():
        if line.startswith("exec "):
            words = shlex.split(line)
            if len(words) >= 2:
                return Path(words[1])
    return None


def is_this_app(path: Path) -> bool:
    """Does running ``path`` run this app (the same script, or our launcher of it)?"""
    script = app_script()
    if script is None:
        return False
    try:
        if os.path.samefile(path, script):
            return True
    except OSError:
        return False
    target = _launcher_target(path)
    try:
        return target is not None and os.path.samefile(target, script)
    except OSError:
        return False


def on_path() -> Path | None:
    """The ``syft-bg`` a shell finds on PATH, if any."""
    found = shutil.which(APP_NAME)
    return Path(found) if found else None


def program() -> str:
    """What to type to start this app from any folder (shell-quoted)."""
    found = on_path()
    if found is not None and is_this_app(found):
        return APP_NAME
    script = app_script()
    if script is not None:
        return shlex.quote(str(script))
    run_sh = APP_DIR / "run.sh"
    if run_sh.is_file():
        return shlex.quote(str(run_sh))
    return f"{shlex.quote(sys.executable)} -m syft_bg_app"


def is_default_home(home: AppHome) -> bool:
    """Is ``home`` the one a shell without SYFT_BG_HOME would pick?"""
    default = colab_home() or Path.home() / ".syft-bg"
    return os.path.abspath(home.root) == os.path.abspath(default)


def prefix(home: AppHome | None = None) -> str:
    """The start of every suggested command: the program and, if needed, ``--home``."""
    words = program()
    if home is not None and not is_default_home(home):
        words += f" --home {shlex.quote(os.path.abspath(home.root))}"
    return words


def command(arguments: str, home: AppHome | None = None) -> str:
    """A command line to suggest to the user: ``command("jobs list", home)``."""
    return f"{prefix(home)} {arguments}"


# The app's commands: "syft-bg " followed by one of these in a message is a
# command to paste ("syft-bg 0.3" or "syft-bg configuration" are not).
COMMANDS = (
    "init run status setup-status jobs peers mail logs install uninstall start stop "
    "restart ensure-running auto-approve list-auto-approvals remove-auto-approval "
    "remove-peer audit hash demo submit datasets"
).split()
_SUGGESTED = re.compile(
    r"(?<![\w./-])syft-bg (?=(?:" + "|".join(map(re.escape, COMMANDS)) + r")(?![\w-]))"
)


def localize(text: str, home: AppHome | None = None) -> str:
    """``text`` with every suggested ``syft-bg COMMAND`` made to work as pasted:
    messages are written with ``syft-bg``; this turns each into :func:`command`."""
    if "syft-bg " not in text:
        return text
    start = prefix(home) + " "
    if start == f"{APP_NAME} ":
        return text
    return _SUGGESTED.sub(lambda _: start, text)


# -- the launcher ---------------------------------------------------------------------


def default_bin_dir() -> Path:
    return Path.home() / ".local" / "bin"


@dataclass(frozen=True)
class LinkResult:
    path: Path
    target: Path
    written: bool  # False when an identical launcher was there already
    bin_dir_on_path: bool
    shadowed_by: Path | None  # another syft-bg that PATH finds first

    def describe(self) -> list[str]:
        verb = "wrote" if self.written else "kept"
        lines = [f"{verb} the launcher {self.path} (runs {self.target})"]
        if not self.bin_dir_on_path:
            lines.append(
                f"{self.path.parent} is not on PATH: add it, e.g. in ~/.profile: "
                f'export PATH="{self.path.parent}:$PATH"; until then run {self.path}'
            )
        elif self.shadowed_by is not None:
            lines.append(
                f"another syft-bg comes first on PATH ({self.shadowed_by}); remove it or "
                f"put {self.path.parent} before it, until then run {self.path}"
            )
        else:
            lines.append("syft-bg now runs this app from any folder")
        return lines


def _on_path(folder: Path) -> bool:
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and os.path.abspath(os.path.expanduser(entry)) == os.path.abspath(folder):
            return True
    return False


def link_bin_problem(bin_dir: Path | None = None) -> str | None:
    """Why ``link_bin`` would refuse (checked before ``init`` writes anything), or None."""
    path = (bin_dir or default_bin_dir()).expanduser() / APP_NAME
    if not os.path.lexists(path):
        return None
    if path.is_symlink() and is_this_app(path):
        return None  # a link to this app's script, made by hand: kept as it is
    if path.is_symlink() or not path.is_file() or _launcher_target(path) is None:
        return (
            f"{path} exists and was not written by syft-bg; it is left alone "
            f"(remove it yourself, or pass --bin-dir DIR)"
        )
    if not is_this_app(path):
        return (
            f"{path} launches another copy of the app ({_launcher_target(path)}); "
            f"remove it first if this copy should be syft-bg"
        )
    return None


def link_bin(bin_dir: Path | None = None) -> LinkResult:
    """Write ``BIN_DIR/syft-bg``, a launcher of this checkout's ``.venv/bin/syft-bg``.

    Refuses to replace a file it did not write, or a launcher of another checkout.
    """
    from syft_bg_app.store.fsutil import atomic_write_text

    script = app_script()
    if script is None:
        raise UsageError(
            f"this Python ({sys.executable}) has no {APP_NAME} script to link; "
            f"run it from the app's environment (./run.sh init --link-bin)"
        )
    folder = (bin_dir or default_bin_dir()).expanduser()
    path = folder / APP_NAME
    text = (
        "#!/bin/sh\n"
        f"{LAUNCHER_MARK}; it runs the app in {script.parent.parent.parent}.\n"
        f'exec {shlex.quote(str(script))} "$@"\n'
    )
    problem = link_bin_problem(bin_dir)
    if problem:
        raise UsageError(problem)
    if path.is_symlink():
        written = False  # a link to this app's script (link_bin_problem refused any other)
    else:
        written = not (path.is_file() and path.read_text(errors="replace") == text)
    if written:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, mode=0o755)
    found = on_path()
    shadow = found if found is not None and not is_this_app(found) else None
    return LinkResult(path, script, written, _on_path(folder), shadow)
