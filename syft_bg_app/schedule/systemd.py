"""The systemd side of the schedule: the ``Type=oneshot`` service and its timer
(what they contain and where they live), whether a user manager answers, when
the timer fires next, and removing what ``syft-bg install`` wrote."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from syft_bg_app.schedule.common import (
    app_dir,
    crontab_user,
    last_line,
    pass_command,
    run_command,
    systemctl_command,
    unit_name,
)
from syft_bg_app.store.home import AppHome

UNIT_HEADER = "# Written by 'syft-bg install'"


def systemd_user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_available() -> tuple[bool, str]:
    """Whether a systemd user instance answers (it does not in most containers)."""
    argv = systemctl_command()
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} is not installed"
    result = run_command([*argv, "show-environment"])
    if result.returncode == 0:
        return True, "systemd user instance is running"
    return False, f"no systemd user instance answers ({last_line(result)})"


def bwrap_is_setuid() -> bool:
    found = shutil.which("bwrap")
    if not found:
        return False
    try:
        mode = os.stat(os.path.realpath(found)).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISUID)


def _systemd_quote(word: str, command: bool = False) -> str:
    """One ExecStart= (``command``) or Environment= word, quoted for systemd.

    Specifiers (%) are expanded in both; $ only in command lines (Environment=
    values are taken literally, so there it must stay a single $)."""
    word = word.replace("%", "%%")
    if command:
        word = word.replace("$", "$$")
    if any(c in word for c in " \t\"'\\;$"):
        word = word.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{word}"'
    return word


def accuracy_seconds(interval: int) -> int:
    # systemd's default AccuracySec=1min would let a 60 s interval drift by a minute.
    return max(1, interval // 10)


def render_service(
    home: AppHome,
    interval: int,
    folder: Path | None = None,
    no_new_privileges: bool | None = None,
) -> str:
    folder = folder or app_dir()
    root = os.path.abspath(home.root)
    if no_new_privileges is None:
        no_new_privileges = not bwrap_is_setuid()
    exec_start = " ".join(_systemd_quote(w, command=True) for w in pass_command(folder))
    nnp = (
        [
            "# bwrap here is not setuid (it uses user namespaces), so no process of a pass",
            "# needs to gain privileges. Were bwrap setuid-root (distributions that disable",
            "# unprivileged user namespaces), this line would make it fail; 'syft-bg install'",
            "# leaves it out there, and setup-status flags a unit that no longer fits.",
            "NoNewPrivileges=yes",
        ]
        if no_new_privileges
        else [
            "# No NoNewPrivileges=: bwrap on this machine is setuid-root and would fail to",
            "# start the job sandbox under it.",
        ]
    )
    lines = [
        f"{UNIT_HEADER} for the app home {root};",
        "# 'syft-bg uninstall' removes it. Started by the timer of the same name.",
        "[Unit]",
        f"Description=syft-bg pass (app home {root.replace('%', '%%')})",
        "",
        "[Service]",
        "# One pass, then exit: the timer starts the next one.",
        "Type=oneshot",
        f"WorkingDirectory={str(folder).replace('%', '%%')}",
        f"Environment={_systemd_quote('SYFT_BG_HOME=' + root)}",
        f"ExecStart={exec_start}",
        "# Approved jobs run as detached, supervised processes that later passes reap;",
        "# the default KillMode=control-group would kill them the moment the pass exits.",
        "KillMode=process",
        "# A pass is short, but the first one builds the app's .venv with pip.",
        "TimeoutStartSec=30min",
        "# Background work yields to interactive work (allowed without privileges).",
        "Nice=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
        *nnp,
        "# Deliberately absent: ProtectSystem=, ProtectHome=, PrivateTmp=, PrivateDevices=,",
        "# RestrictNamespaces= and seccomp filters. In a user unit each needs a user",
        "# namespace of its own (or implies NoNewPrivileges=); they would hide or",
        "# make read-only the SyftBox folder under your home that a pass writes, stop bwrap",
        "# from creating the job sandbox, and a private /tmp would be torn down under jobs",
        "# still running after the pass. Jobs get their own /tmp and a read-only system",
        "# from bwrap instead.",
        "PrivateTmp=no",
        "SyslogIdentifier=syft-bg",
        "",
    ]
    return "\n".join(lines)


def render_timer(home: AppHome, interval: int) -> str:
    name = unit_name(home)
    root = os.path.abspath(home.root)
    lines = [
        f"{UNIT_HEADER} for the app home {root};",
        "# 'syft-bg uninstall' removes it.",
        "[Unit]",
        f"Description=syft-bg: a pass every {interval} s (app home {root.replace('%', '%%')})",
        "",
        "[Timer]",
        "# First pass this long after boot; when the user manager starts later (at login),",
        "# a time already past fires at once.",
        f"OnBootSec={interval}",
        "# Then the next pass this long after the previous one started.",
        f"OnUnitActiveSec={interval}",
        f"AccuracySec={accuracy_seconds(interval)}",
        "# Remember the last trigger across reboots (systemd applies it to calendar",
        "# triggers; the catch-up after boot or resume comes from OnBootSec= above).",
        "Persistent=true",
        f"Unit={name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return "\n".join(lines)


def unit_paths(home: AppHome) -> tuple[Path, Path]:
    base = systemd_user_dir()
    name = unit_name(home)
    return base / f"{name}.service", base / f"{name}.timer"


def is_ours(path: Path) -> bool:
    """Whether a unit file was written by 'syft-bg install' (its first line says so)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith(UNIT_HEADER)
    except OSError:
        return False


def timer_enabled_link(home: AppHome) -> Path:
    return systemd_user_dir() / "timers.target.wants" / f"{unit_name(home)}.timer"


def timer_interval(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("OnUnitActiveSec="):
            value = line.split("=", 1)[1].strip()
            return int(value) if value.isdigit() else None
    return None


SPAN_UNITS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "M": 2629800.0,
    "y": 31557600.0,
}


def parse_timespan(text: str) -> float | None:
    """Seconds in a systemd time span as ``systemctl show`` prints it ("1d 2h 3min 4.5s")."""
    text = text.strip()
    if not text or text in ("0", "infinity"):
        return None if text != "0" else 0.0
    total = 0.0
    for part in text.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyzM")
        unit = part[len(number) :]
        if unit not in SPAN_UNITS:
            return None
        try:
            total += float(number) * SPAN_UNITS[unit]
        except ValueError:
            return None
    return total


def systemd_next_run(home: AppHome) -> datetime | None:
    """When the timer fires next, asked from the user manager (None when it cannot say)."""
    result = run_command(
        [
            *systemctl_command(),
            "show",
            f"{unit_name(home)}.timer",
            "--property=NextElapseUSecMonotonic",
            "--value",
        ]
    )
    if result.returncode != 0:
        return None
    seconds = parse_timespan(result.stdout)
    if not seconds:
        return None
    # The monotonic clock systemd reports is CLOCK_MONOTONIC, the same as time.monotonic().
    return datetime.now(timezone.utc) + timedelta(seconds=seconds - time.monotonic())


def linger_off() -> bool:
    if shutil.which("loginctl") is None:
        return False
    result = run_command(["loginctl", "show-user", crontab_user(), "--property=Linger", "--value"])
    return result.returncode == 0 and result.stdout.strip() == "no"


def remove_units(home: AppHome, dry_run: bool) -> list[str]:
    service_path, timer_path = unit_paths(home)
    # Only what install wrote: a unit of the same name from elsewhere is left alone.
    if not (is_ours(service_path) or is_ours(timer_path)):
        return []
    done: list[str] = []
    systemctl = systemctl_command()
    disable = [*systemctl, "disable", "--now", timer_path.name]
    if dry_run:
        done.append(f"would run: {shlex.join(disable)}")
    else:
        result = run_command(disable)
        if result.returncode == 0:
            done.append(f"disabled and stopped {timer_path.name}")
        else:
            # The manager may be unreachable (no user session): remove the files anyway.
            link = timer_enabled_link(home)
            if link.is_symlink() or link.exists():
                link.unlink()
                done.append(f"removed {link}")
    for path in (timer_path, service_path):
        if is_ours(path):
            if dry_run:
                done.append(f"would remove {path}")
            else:
                path.unlink()
                done.append(f"removed {path}")
    reload = [*systemctl, "daemon-reload"]
    if dry_run:
        done.append(f"would run: {shlex.join(reload)}")
    elif run_command(reload).returncode != 0:
        done.append("the systemd user instance did not answer; it reads the change when it starts")
    return done
