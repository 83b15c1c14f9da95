"""Operating the app: switching services (steps) on and off, reading the log,
and what ``status`` and the dashboard say about the schedule and its health.

A service is one step of the pass (sync, notify, approve, execute). It runs
when its ``<step>.enabled`` key is true and something runs passes: the
schedule ``syft-bg install`` set up, or SyftBox itself when the app lives in
``<SyftBox>/apps/``.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from syft_bg_app.config.load import Config
from syft_bg_app.errors import UsageError
from syft_bg_app.steps import STEPS
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.lock import lock_info

SERVICES = STEPS
LOG_FILE = "syft-bg.log"
# A pass is bounded in time; one holding the lock this long is worth a look.
LOCK_HELD_WARNING_SECONDS = 600


def check_services(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise UsageError(
            f"unknown service {', '.join(repr(n) for n in unknown)}; the services are the "
            f"steps of a pass: {', '.join(SERVICES)}"
        )
    return list(dict.fromkeys(names))


# -- services --------------------------------------------------------------------------


def set_services(home: AppHome, services: list[str], enabled: bool) -> list[str]:
    """Switch steps on or off in config.yaml; returns the services that changed."""
    from syft_bg_app.config.editor import set_values
    from syft_bg_app.config.load import load_config
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    # Holding the pass lock means no pass is half-way through with the old setting
    # when this returns.
    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="switch services"):
        config = load_config(home.config_file)
        changed = [s for s in services if config.step_enabled(s) != enabled]
        if changed:
            set_values(home.config_file, {f"{s}.enabled": enabled for s in changed})
    return changed


def service_names(name: str | None) -> list[str]:
    """The services a command names: one, or all of them for None or ``all``."""
    return list(SERVICES) if name in (None, "all") else check_services([name])


@dataclass
class PassesOutcome:
    """How passes come to run after ``start``: ``lines`` say what was done; a
    ``problem`` means nothing runs passes by itself yet."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class ServicesSwitched:
    """Services switched on or off: which were asked for, which changed."""

    services: list[str]
    changed: list[str]
    passes: PassesOutcome = field(default_factory=PassesOutcome)
    notes: list[str] = field(default_factory=list)


def ensure_schedule(home: AppHome) -> PassesOutcome:
    """Make sure passes run: enable the installed schedule, or install one."""
    from syft_bg_app.config.load import load_config
    from syft_bg_app.invocation import command
    from syft_bg_app.schedule import install as schedule

    outcome = PassesOutcome()
    try:
        info = schedule.inspect(home, ask_manager=False)
        if info.hosted:
            outcome.lines.append(f"passes: {info.detail}")
        elif info.installed and info.enabled:
            outcome.lines.append(
                f"passes: already scheduled ({info.detail}, every {info.interval} s)"
            )
        elif info.installed:
            outcome.lines += schedule.set_enabled(home, True)
        else:
            interval = load_config(home.config_file).get("schedule.interval")
            plan = schedule.plan_install(home, interval)
            home.logs_dir.mkdir(parents=True, exist_ok=True)
            outcome.lines += schedule.apply(home, plan)
            outcome.lines.append(
                f"passes: installed a {plan.method} schedule ({plan.why_method}), every "
                f"{plan.effective_interval} s; remove it with: {command('uninstall', home)}"
            )
            outcome.notes += plan.notes
    except schedule.ScheduleError as exc:
        outcome.problem = str(exc)
    return outcome


def start(home: AppHome, services: list[str]) -> ServicesSwitched:
    """Switch services on in config.yaml and make sure something runs passes."""
    changed = set_services(home, services, True)
    return ServicesSwitched(services, changed, ensure_schedule(home))


def stop(home: AppHome, services: list[str]) -> ServicesSwitched:
    """Switch services off; with none left on, switch the schedule off too (it stays
    installed)."""
    from syft_bg_app.config.load import load_config
    from syft_bg_app.schedule import install as schedule

    result = ServicesSwitched(services, set_services(home, services, False))
    config = load_config(home.config_file)
    if any(config.step_enabled(s) for s in SERVICES):
        return result
    try:
        result.passes.lines += schedule.set_enabled(home, False)
    except schedule.ScheduleError as exc:
        result.passes.problem = str(exc)
        return result
    if schedule.inspect(home, ask_manager=False).hosted:
        result.notes.append("SyftBox still calls run.sh, but every step of the pass is off")
    return result


# -- the log -----------------------------------------------------------------------------

RECORD_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ [A-Z]+ (?P<name>syft_bg(?:\.[\w.\-]+)?): "
)


def log_files(home: AppHome) -> list[Path]:
    """The log and its rotated copies, oldest first."""
    base = home.logs_dir / LOG_FILE
    rotated = []
    for path in home.logs_dir.glob(f"{LOG_FILE}.*"):
        suffix = path.name[len(LOG_FILE) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    return [p for _, p in sorted(rotated, reverse=True)] + ([base] if base.exists() else [])


def record_matches(name: str, service: str) -> bool:
    """Whether a record of logger ``name`` belongs to ``service`` (or ``all``)."""
    if service == "all":
        return True
    wanted = f"syft_bg.{service}"
    return name == wanted or name.startswith(wanted + ".")


class RecordFilter:
    """Feeds log lines, says which to show: a record's continuation lines (a
    traceback) go with the record they belong to."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.showing = False

    def wants(self, line: str) -> bool:
        match = RECORD_RE.match(line)
        if match:
            self.showing = record_matches(match.group("name"), self.service)
        return self.showing


def _lines(path: Path, window: int | None) -> Iterator[str]:
    """The lines of ``path``; with ``window``, only those of its last ``window`` bytes."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        if window is not None:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - window))
            if size > window:
                handle.readline()  # the first line is probably cut
        for raw in handle:
            yield raw.decode("utf-8", errors="replace")


def last_records(home: AppHome, service: str, count: int, window: int | None = None) -> list[str]:
    """The last ``count`` records of ``service``, each with its continuation lines.

    With ``window`` only the last ``window`` bytes of the current log are read
    (the dashboard redraws often and needs only the latest lines)."""
    records: deque[list[str]] = deque(maxlen=max(count, 0) or None)
    if count <= 0:
        return []
    current: list[str] | None = None
    paths = log_files(home)
    if window is not None:
        paths = paths[-1:]
    for path in paths:
        for raw in _lines(path, window):
            line = raw.rstrip("\r\n")
            match = RECORD_RE.match(line)
            if match:
                current = None
                if record_matches(match.group("name"), service):
                    current = [line]
                    records.append(current)
            elif current is not None:
                current.append(line)
    return [line for record in records for line in record]


def follow(home: AppHome, service: str, poll: float = 0.5) -> Iterator[str]:
    """New lines of ``service`` as they are written, across rotations, forever."""
    path = home.logs_dir / LOG_FILE
    keep = RecordFilter(service)
    handle = None
    inode = None
    pending = ""
    try:
        position = path.stat().st_size
    except FileNotFoundError:
        position = 0
    while True:
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and (handle is None or st.st_ino != inode or st.st_size < position):
            if handle is not None:
                # Rotated: finish what the old file still holds, then start the new one.
                yield from _complete_lines(handle.read(), pending, keep, final=True)
                handle.close()
                pending, position = "", 0
            handle = path.open(encoding="utf-8", errors="replace")
            inode = st.st_ino
            handle.seek(position)
        if handle is not None:
            chunk = handle.read()
            if chunk:
                position = handle.tell()
                data = pending + chunk
                pending = "" if data.endswith("\n") else data.rsplit("\n", 1)[-1]
                yield from _complete_lines(data, "", keep, final=False)
                continue
        time.sleep(poll)


def _complete_lines(data: str, pending: str, keep: RecordFilter, final: bool) -> Iterator[str]:
    data = pending + data
    lines = data.split("\n")
    if not final:
        lines = lines[:-1]
    for line in lines:
        if line and keep.wants(line):
            yield line


# -- what status shows about the schedule and the app's health ---------------------------


def _ago(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _until(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    seconds = int((moment - now).total_seconds())
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if seconds <= 0:
        return f"{local} (due now)"
    if seconds < 90:
        return f"{local} (in {seconds} s)"
    return f"{local} (in {seconds // 60} min)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_warnings(home: AppHome, now: datetime | None = None) -> list[str]:
    info = lock_info(home)
    if not info.held:
        return []
    now = now or datetime.now(timezone.utc)
    out = []
    who = f"pid {info.pid}" if info.pid else "an unknown process"
    if info.pid and not _pid_alive(info.pid):
        # The lock is an OS lock and dies with its process, so a holder other than
        # the recorded one inherited it: a process started by a pass kept the file open.
        out.append(
            f"the app lock is held although {who}, which took it, has exited; a process "
            f"it started still has the lock file open (see: fuser {home.lock_file})"
        )
    elif info.since and (now - info.since).total_seconds() > LOCK_HELD_WARNING_SECONDS:
        out.append(
            f"a {info.purpose or 'pass'} ({who}) has held the app lock since "
            f"{info.since.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({_ago(info.since, now)}); "
            f"passes are meant to take seconds (syft-bg logs all)"
        )
    return out


def schedule_lines(
    home: AppHome, config: Config, state: dict, now: datetime | None = None
) -> list[str]:
    """The schedule and the next pass, for ``status``."""
    from syft_bg_app.schedule import install as sched

    now = now or datetime.now(timezone.utc)
    try:
        info = sched.inspect(home, state.get("last_pass"))
    except sched.ScheduleError as exc:
        return [f"schedule: cannot tell ({exc})"]
    wanted = config.get("schedule.interval")
    if info.hosted:
        return [f"schedule: {info.detail}"]
    if not info.installed and info.method is None:
        lines = ["schedule: none; passes run only when run.sh is called (syft-bg install)"]
        return lines + [f"WARNING schedule: {problem}" for problem in info.problems]
    state_word = "on" if info.enabled else "OFF (syft-bg start)"
    every = f"every {info.interval} s" if info.interval else "interval unknown"
    lines = [f"schedule: {info.detail}, {every}, {state_word}"]
    if info.enabled and info.next_run:
        source = f" ({info.next_run_source})" if info.next_run_source != info.method else ""
        lines.append(f"next scheduled pass: {_until(info.next_run, now)}{source}")
    elif info.enabled:
        lines.append("next scheduled pass: after the first scheduled pass has run")
    for problem in info.problems:
        lines.append(f"WARNING schedule: {problem}")
    effective = sched.cron_expression(wanted)[1] if info.method == "cron" else wanted
    if info.interval and info.interval != effective:
        lines.append(
            f"WARNING schedule: installed for every {info.interval} s but schedule.interval "
            f"is {wanted}; run syft-bg install to apply it"
        )
    if info.enabled:
        lines.extend(f"WARNING {w}" for w in pass_age_warning(info.interval or wanted, state, now))
    return lines


def tail_lines(home: AppHome, state: dict) -> list[str]:
    """The counts and the lock warnings, for the end of ``status``."""
    return [count_line(state)] + [f"WARNING {w}" for w in lock_warnings(home)]


def count_line(state: dict) -> str:
    jobs = [r for per_ds in state["jobs"].values() for r in per_ds.values()]
    pending = sum(1 for r in jobs if r["status"] == "pending")
    approved = sum(1 for r in jobs if r["status"] == "approved")
    running = sum(1 for r in jobs if r["status"] == "running")
    queued = len(state.get("mail", {}).get("queue", []))
    return (
        f"waiting: {pending} pending review, {approved} approved to start, "
        f"{running} running, {queued} emails queued"
    )


def pass_age_warning(interval: int, state: dict, now: datetime | None = None) -> list[str]:
    """A warning when scheduled passes seem to have stopped happening."""
    from syft_bg_app.clock import parse_iso

    last = state.get("last_pass")
    if not last:
        return []
    now = now or datetime.now(timezone.utc)
    finished = parse_iso(last["finished_at"])
    # Cron rounds up to minutes; three missed passes and a minute's slack before saying so.
    if (now - finished).total_seconds() <= 3 * max(interval, 60) + 60:
        return []
    return [
        f"the last pass finished {_ago(finished, now)}, but passes are scheduled every "
        f"{interval} s; check: syft-bg setup-status"
    ]
