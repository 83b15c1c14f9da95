"""Running passes by themselves: a systemd user timer, or a crontab line.

``syft-bg install`` writes a ``Type=oneshot`` service whose ExecStart is the
app's ``run.sh`` and a timer that starts it every ``schedule.interval``
seconds; where no systemd user instance answers, it adds one line to the
user's crontab instead. Both carry the app home they serve, so two app homes
get two schedules: the default home's units are ``syft-bg.service`` and
``syft-bg.timer`` (what syft-bg users know), another home's get a suffix made
from its path. Our crontab line ends with a marker comment naming that unit
name; no other line of the crontab is ever changed.

The commands used are ``systemctl --user`` and ``crontab``; the environment
variables SYFT_BG_SYSTEMCTL and SYFT_BG_CRONTAB replace them (for example
``crontab -u someone`` run as root), which is how the tests reach a throwaway
user's crontab instead of yours.
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import AppHome

CRON_MARKER = "# syft-bg-app:"
SYSTEMCTL_ENV = "SYFT_BG_SYSTEMCTL"
CRONTAB_ENV = "SYFT_BG_CRONTAB"
COMMAND_TIMEOUT = 15.0
UNIT_HEADER = "# Written by 'syft-bg install'"


class ScheduleError(SyftBgError):
    """The schedule could not be read or changed; the message says what to do."""


# -- where things are -------------------------------------------------------------


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


def systemd_user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


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


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
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


def _last_line(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit status {result.returncode}"


# -- systemd ------------------------------------------------------------------------


def systemd_available() -> tuple[bool, str]:
    """Whether a systemd user instance answers (it does not in most containers)."""
    argv = systemctl_command()
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} is not installed"
    result = _run([*argv, "show-environment"])
    if result.returncode == 0:
        return True, "systemd user instance is running"
    return False, f"no systemd user instance answers ({_last_line(result)})"


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


# -- cron -----------------------------------------------------------------------------


def cron_available() -> tuple[bool, str]:
    argv = crontab_command()
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} is not installed (Debian/Ubuntu: apt-get install cron)"
    return True, "crontab is available"


def cron_expression(interval: int) -> tuple[str, int]:
    """(the five time fields, the seconds they really mean) for ``interval`` seconds."""
    minutes = max(1, math.ceil(interval / 60))
    if minutes == 1:
        return "* * * * *", 60
    if minutes < 60:
        return f"*/{minutes} * * * *", minutes * 60
    hours = math.ceil(minutes / 60)
    if hours < 24:
        return f"0 */{hours} * * *", hours * 3600
    return "0 0 * * *", 86400


def _cron_escape(text: str) -> str:
    # cron turns an unescaped % into a newline before the shell sees the command.
    return text.replace("%", "\\%")


def cron_out_file(home: AppHome) -> Path:
    return Path(os.path.abspath(home.root)) / "logs" / "cron.out"


def cron_line(home: AppHome, interval: int, folder: Path | None = None) -> str:
    folder = folder or app_dir()
    root = os.path.abspath(home.root)
    fields, _ = cron_expression(interval)
    command = " ".join(shlex.quote(w) for w in pass_command(folder))
    # Only the last pass's output is kept (">" not ">>"); the pass logs to logs/ itself.
    shell = (
        f"cd {shlex.quote(str(folder))} && SYFT_BG_HOME={shlex.quote(root)} "
        f"{command} >{shlex.quote(str(cron_out_file(home)))} 2>&1"
    )
    return f"{fields} {_cron_escape(shell)} {CRON_MARKER}{unit_name(home)}"


def _is_our_line(line: str, name: str) -> bool:
    return line.rstrip().endswith(f"{CRON_MARKER}{name}")


def _is_disabled(line: str) -> bool:
    return line.lstrip().startswith("#")


def read_crontab() -> str:
    argv = crontab_command()
    result = _run([*argv, "-l"])
    if result.returncode == 0:
        return result.stdout
    if "no crontab" in (result.stderr or "").lower():
        return ""
    raise ScheduleError(f"cannot read the crontab ({' '.join(argv)} -l): {_last_line(result)}")


def write_crontab(text: str) -> None:
    argv = crontab_command()
    if not text.strip():
        # Nothing left: remove the crontab rather than leave an empty one behind.
        result = _run([*argv, "-r"])
        if result.returncode != 0 and "no crontab" not in (result.stderr or "").lower():
            raise ScheduleError(f"cannot remove the crontab: {_last_line(result)}")
        return
    if not text.endswith("\n"):
        text += "\n"
    result = _run([*argv, "-"], stdin=text)
    if result.returncode != 0:
        raise ScheduleError(f"cannot write the crontab ({' '.join(argv)} -): {_last_line(result)}")


def find_cron_line(home: AppHome, text: str | None = None) -> str | None:
    if text is None:
        text = read_crontab()
    name = unit_name(home)
    for line in text.splitlines():
        if _is_our_line(line, name):
            return line
    return None


def replace_cron_line(text: str, name: str, new_line: str | None) -> str:
    """The crontab with our line replaced (or removed when ``new_line`` is None);
    every other line is kept as it was."""
    out: list[str] = []
    placed = False
    for line in text.splitlines():
        if _is_our_line(line, name):
            if new_line is not None and not placed:
                out.append(new_line)
                placed = True
            continue
        out.append(line)
    if new_line is not None and not placed:
        out.append(new_line)
    return "\n".join(out) + ("\n" if out else "")


def cron_line_interval(line: str) -> int | None:
    """Seconds between runs of one of our lines, read back from its time fields."""
    fields = line.lstrip("# ").split()[:5]
    if len(fields) < 5:
        return None
    minute, hour = fields[0], fields[1]
    if minute == "*" and hour == "*":
        return 60
    if minute.startswith("*/") and hour == "*":
        return int(minute[2:]) * 60 if minute[2:].isdigit() else None
    if hour.startswith("*/") and hour[2:].isdigit():
        return int(hour[2:]) * 3600
    if minute.isdigit() and hour.isdigit():
        return 86400
    return None


def _field_matches(spec: str, value: int) -> bool:
    if spec == "*":
        return True
    if spec.startswith("*/") and spec[2:].isdigit():
        return value % int(spec[2:]) == 0
    return spec.isdigit() and int(spec) == value


def next_cron_run(line: str, after: datetime) -> datetime | None:
    """The next minute (local time) at which cron starts ``line``, after ``after``."""
    fields = line.lstrip("# ").split()[:5]
    if len(fields) < 5 or any(f != "*" for f in fields[2:]):
        return None
    moment = after.astimezone().replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(2 * 24 * 60):
        if _field_matches(fields[0], moment.minute) and _field_matches(fields[1], moment.hour):
            return moment
        moment += timedelta(minutes=1)
    return None


def cron_daemon_running() -> bool | None:
    """Whether a cron daemon process runs here (None when /proc cannot tell)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in ("cron", "crond", "cronie", "busybox-crond"):
            return True
    return False


# -- what is installed -----------------------------------------------------------------------


@dataclass
class Schedule:
    """What runs passes for this app home now."""

    method: str | None  # "systemd", "cron" or None
    installed: bool = False
    enabled: bool = False
    interval: int | None = None
    next_run: datetime | None = None
    next_run_source: str = ""
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    cron_text: str | None = None
    # The app lives in <SyftBox>/apps/, so SyftBox itself calls run.sh.
    hosted: bool = False


def _timer_interval(text: str) -> int | None:
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


def _systemd_next_run(home: AppHome) -> datetime | None:
    """When the timer fires next, asked from the user manager (None when it cannot say)."""
    result = _run(
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


def _estimate_next(last_pass: dict | None, interval: int) -> datetime | None:
    if not last_pass or not last_pass.get("finished_at"):
        return None
    from syft_bg_app.clock import parse_iso

    started = parse_iso(last_pass["finished_at"]) - timedelta(seconds=last_pass.get("seconds", 0))
    return started + timedelta(seconds=interval)


def inspect(home: AppHome, last_pass: dict | None = None, ask_manager: bool = True) -> Schedule:
    """What is installed for ``home``: unit files, the timer link, our crontab line."""
    service_path, timer_path = unit_paths(home)
    problems: list[str] = []
    foreign = [p.name for p in (service_path, timer_path) if p.exists() and not is_ours(p)]
    if foreign:
        return Schedule(
            None,
            detail=f"{', '.join(foreign)} in {service_path.parent} is not from this app",
            problems=[
                f"{', '.join(foreign)} was not written by this app (the resident service of "
                f"syft-bg 0.3?); syft-bg install stops and replaces it"
            ],
        )
    if timer_path.exists() or service_path.exists():
        schedule = Schedule("systemd", installed=timer_path.exists() and service_path.exists())
        schedule.enabled = timer_enabled_link(home).exists()
        try:
            schedule.interval = _timer_interval(timer_path.read_text())
        except OSError:
            schedule.interval = None
        if not schedule.installed:
            problems.append(
                f"only one of {service_path.name} and {timer_path.name} exists in "
                f"{service_path.parent}"
            )
        schedule.detail = f"systemd user timer {timer_path.name}"
        try:
            text = service_path.read_text()
        except OSError:
            text = ""
        if "NoNewPrivileges=yes" in text and bwrap_is_setuid():
            problems.append(
                "the service has NoNewPrivileges=yes but bwrap is now setuid-root, which "
                "fails under it"
            )
        if schedule.enabled and schedule.interval:
            nxt = _systemd_next_run(home) if ask_manager else None
            if nxt is not None:
                schedule.next_run, schedule.next_run_source = nxt, "systemd"
            else:
                schedule.next_run = _estimate_next(last_pass, schedule.interval)
                schedule.next_run_source = "estimated from the last pass"
        schedule.problems = problems
        return schedule
    available, why = cron_available()
    if available:
        try:
            text = read_crontab()
        except ScheduleError as exc:
            return Schedule(None, detail=str(exc), problems=[str(exc)])
        line = find_cron_line(home, text)
        if line is not None:
            schedule = Schedule("cron", installed=True, enabled=not _is_disabled(line))
            schedule.cron_text = text
            schedule.interval = cron_line_interval(line)
            schedule.detail = f"crontab line of user {_crontab_user()}"
            if schedule.enabled:
                schedule.next_run = next_cron_run(line, datetime.now(timezone.utc))
                schedule.next_run_source = "cron"
                if cron_daemon_running() is False:
                    problems.append("no cron daemon is running, so the crontab line never fires")
            schedule.problems = problems
            return schedule
    if hosted_by_syftbox():
        return Schedule(
            None, detail=f"run by SyftBox (the app is in {app_dir().parent})", hosted=True
        )
    return Schedule(None, detail="not installed")


def _crontab_user() -> str:
    argv = crontab_command()
    if "-u" in argv and argv.index("-u") + 1 < len(argv):
        return argv[argv.index("-u") + 1]
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# -- changing it -------------------------------------------------------------------------------


@dataclass
class Plan:
    """What install would do: files to write, crontab to set, commands to run."""

    method: str
    interval: int
    effective_interval: int
    files: dict[Path, str] = field(default_factory=dict)
    crontab_before: str | None = None
    crontab_after: str | None = None
    cron_line: str | None = None
    # Run before the files are written: stopping a unit of the same name not written here.
    pre_commands: list[list[str]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    why_method: str = ""
    # What of the other method is removed (switching from cron to systemd or back).
    replaces: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The dry-run text: every file with its exact content, every command."""
        out = [f"method: {self.method} ({self.why_method})"]
        for argv in self.pre_commands:
            out.append(f"would run first: {shlex.join(argv)}")
        for path, text in self.files.items():
            out.append(f"would write {path}:")
            out.append(text.rstrip("\n"))
            out.append(f"(end of {path.name})")
        if self.cron_line is not None:
            where = f"the crontab of {_crontab_user()} ({shlex.join(crontab_command())} -)"
            if self.crontab_after == self.crontab_before:
                out.append(f"{where} already has this line; nothing to change:")
            else:
                out.append(f"would put this line in {where}, other lines unchanged:")
            out.append(self.cron_line)
        for argv in self.commands:
            out.append(f"would run: {shlex.join(argv)}")
        out.extend(self.replaces)
        out.extend(f"note: {note}" for note in self.notes)
        return "\n".join(out)


def every_command(interval: int) -> str:
    """The loop that runs passes where nothing can schedule them."""
    return f"{shlex.quote(str(app_dir() / 'run.sh'))} --every {interval}"


class NoScheduler(ScheduleError):
    """Neither a systemd user instance nor cron is available on this machine."""

    def __init__(self, why: str, cron_why: str, interval: int) -> None:
        self.why = why
        self.cron_why = cron_why
        self.interval = interval
        super().__init__(
            f"cannot schedule passes here: {why}, and {cron_why}. Install cron, or run "
            f"passes another way by keeping this running: {every_command(interval)}"
        )


def choose_method(method: str = "auto", interval: int = 60) -> tuple[str, str]:
    """(systemd|cron, why) for ``method`` auto, systemd or cron; NoScheduler when
    ``auto`` finds neither."""
    if method == "systemd":
        return "systemd", "asked for with --method systemd"
    if method == "cron":
        return "cron", "asked for with --method cron"
    ok, why = systemd_available()
    if ok:
        return "systemd", why
    cron_ok, cron_why = cron_available()
    if cron_ok:
        return "cron", f"{why}; using cron instead"
    raise NoScheduler(why, cron_why, interval)


def plan_install(home: AppHome, interval: int, method: str = "auto", dry_run: bool = False) -> Plan:
    """What install would do. With ``dry_run`` on a machine with neither systemd nor
    cron, the plan is what a machine with a systemd user instance would get, with notes
    saying that install cannot work here and what to run instead."""
    try:
        plan = _plan(home, interval, method)
    except NoScheduler as missing:
        if not dry_run:
            raise
        plan = _plan(home, interval, "systemd")
        plan.why_method = (
            f"neither is available here: {missing.why}, and {missing.cron_why}; shown is "
            f"what a machine with a systemd user instance gets"
        )
        plan.notes.append(
            f"install fails on this machine: install cron and run it again, or keep this "
            f"running instead: {every_command(interval)}"
        )
    if hosted_by_syftbox():
        plan.notes.append(
            f"the app is in {app_dir().parent}, where SyftBox runs it too; both are harmless "
            f"together (one pass at a time), but one of them is enough"
        )
    return plan


def _plan(home: AppHome, interval: int, method: str) -> Plan:
    chosen, why = choose_method(method, interval)
    if chosen == "systemd":
        service_path, timer_path = unit_paths(home)
        plan = Plan("systemd", interval, interval, why_method=why)
        plan.files[service_path] = render_service(home, interval)
        plan.files[timer_path] = render_timer(home, interval)
        systemctl = systemctl_command()
        plan.commands = [
            [*systemctl, "daemon-reload"],
            [*systemctl, "enable", "--now", timer_path.name],
        ]
        foreign = [p for p in (service_path, timer_path) if p.exists() and not is_ours(p)]
        if foreign:
            # syft-bg 0.3's own 'install' wrote a resident syft-bg.service: stop it for good.
            plan.pre_commands = [[*systemctl, "disable", "--now", p.name] for p in foreign]
            plan.notes.append(
                f"{', '.join(p.name for p in foreign)} was not written by this app (the "
                f"resident service of syft-bg 0.3?); it is stopped, disabled and replaced"
            )
        try:
            plan.replaces = _remove_cron_line(home, dry_run=True)
        except ScheduleError:
            plan.replaces = []
        if _linger_off():
            plan.notes.append(
                "passes run only while you are logged in; to run them always: "
                "loginctl enable-linger " + _crontab_user()
            )
        return plan
    line = cron_line(home, interval)
    _, effective = cron_expression(interval)
    plan = Plan("cron", interval, effective, why_method=why, cron_line=line)
    before = read_crontab()
    plan.crontab_before = before
    plan.crontab_after = replace_cron_line(before, unit_name(home), line)
    plan.replaces = _remove_units(home, dry_run=True)
    if effective != interval:
        plan.notes.append(
            f"cron counts in whole minutes: passes run every {effective} s, not {interval} s"
        )
    if cron_daemon_running() is False:
        plan.notes.append(
            "no cron daemon is running on this machine; start it (e.g. "
            "'sudo systemctl enable --now cron' or 'sudo service cron start')"
        )
    return plan


def _linger_off() -> bool:
    if shutil.which("loginctl") is None:
        return False
    result = _run(["loginctl", "show-user", _crontab_user(), "--property=Linger", "--value"])
    return result.returncode == 0 and result.stdout.strip() == "no"


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise ScheduleError(f"{what} failed: {_last_line(result)}")


def apply(home: AppHome, plan: Plan) -> list[str]:
    """Carry out ``plan``; returns what changed, one line each (empty: nothing to do)."""
    changed: list[str] = []
    if plan.method == "systemd":
        for argv in plan.pre_commands:
            _check(_run(argv), shlex.join(argv))
            changed.append(f"stopped and disabled {argv[-1]}")
        for path, text in plan.files.items():
            try:
                current = path.read_text()
            except OSError:
                current = None
            if current != text:
                atomic_write_text(path, text)
                changed.append(f"wrote {path}")
        if changed or not timer_enabled_link(home).exists():
            for argv in plan.commands:
                _check(_run(argv), shlex.join(argv))
            changed.append(f"enabled and started {unit_name(home)}.timer")
        return changed + _remove_cron_line(home, dry_run=False)
    assert plan.crontab_after is not None
    # Units go first: for a moment nothing runs passes rather than two schedules.
    changed += _remove_units(home, dry_run=False)
    if plan.crontab_after != plan.crontab_before:
        write_crontab(plan.crontab_after)
        changed.append(f"put the syft-bg line in the crontab of {_crontab_user()}")
    return changed


def set_enabled(home: AppHome, enabled: bool) -> list[str]:
    """Switch the installed schedule on or off, keeping it installed."""
    schedule = inspect(home, ask_manager=False)
    if not schedule.installed or schedule.enabled == enabled:
        return []
    name = unit_name(home)
    if schedule.method == "systemd":
        verb = ["enable", "--now"] if enabled else ["disable", "--now"]
        argv = [*systemctl_command(), *verb, f"{name}.timer"]
        _check(_run(argv), shlex.join(argv))
        return [f"{'enabled' if enabled else 'disabled'} the systemd timer {name}.timer"]
    text = schedule.cron_text or read_crontab()
    line = find_cron_line(home, text)
    assert line is not None
    bare = line.lstrip("# ")
    new_line = bare if enabled else f"# {bare}"
    write_crontab(replace_cron_line(text, name, new_line))
    return [f"{'enabled' if enabled else 'commented out'} the syft-bg crontab line"]


def _remove_units(home: AppHome, dry_run: bool) -> list[str]:
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
        result = _run(disable)
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
    elif _run(reload).returncode != 0:
        done.append("the systemd user instance did not answer; it reads the change when it starts")
    return done


def _remove_cron_line(home: AppHome, dry_run: bool, text: str | None = None) -> list[str]:
    if not cron_available()[0]:
        return []
    if text is None:
        text = read_crontab()
    line = find_cron_line(home, text)
    if line is None:
        return []
    who = _crontab_user()
    if dry_run:
        return [f"would remove this line from the crontab of {who}:", line]
    write_crontab(replace_cron_line(text, unit_name(home), None))
    return [f"removed the syft-bg line from the crontab of {who}"]


def uninstall(home: AppHome, dry_run: bool = False) -> list[str]:
    """Remove what install wrote for ``home``; returns what was (or would be) done."""
    return _remove_units(home, dry_run) + _remove_cron_line(home, dry_run)
