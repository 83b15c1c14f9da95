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

This module decides and inspects; ``systemd.py`` and ``cron.py`` hold what is
particular to each scheduler, ``common.py`` what both use. The names other
modules use are importable from here.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from syft_bg_app.schedule.common import (
    ScheduleError,
    app_dir,
    crontab_command,
    crontab_user,
    hosted_by_syftbox,
    last_line,
    pass_command,
    run_command,
    systemctl_command,
    unit_name,
)
from syft_bg_app.schedule.cron import (
    cron_available,
    cron_daemon_running,
    cron_expression,
    cron_line,
    cron_line_interval,
    cron_out_file,
    find_cron_line,
    is_disabled_line,
    next_cron_run,
    read_crontab,
    remove_cron_line,
    replace_cron_line,
    write_crontab,
)
from syft_bg_app.schedule.systemd import (
    bwrap_is_setuid,
    is_ours,
    linger_off,
    parse_timespan,
    remove_units,
    render_service,
    render_timer,
    systemd_available,
    systemd_next_run,
    systemd_user_dir,
    timer_enabled_link,
    timer_interval,
    unit_paths,
)
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import AppHome

__all__ = [
    "NoScheduler",
    "Plan",
    "Schedule",
    "ScheduleError",
    "app_dir",
    "apply",
    "choose_method",
    "cron_expression",
    "cron_line",
    "cron_line_interval",
    "cron_out_file",
    "every_command",
    "hosted_by_syftbox",
    "inspect",
    "is_ours",
    "next_cron_run",
    "parse_timespan",
    "pass_command",
    "plan_install",
    "render_service",
    "render_timer",
    "set_enabled",
    "systemd_available",
    "systemd_user_dir",
    "timer_enabled_link",
    "uninstall",
    "unit_name",
    "unit_paths",
]


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
            schedule.interval = timer_interval(timer_path.read_text())
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
            nxt = systemd_next_run(home) if ask_manager else None
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
            schedule = Schedule("cron", installed=True, enabled=not is_disabled_line(line))
            schedule.cron_text = text
            schedule.interval = cron_line_interval(line)
            schedule.detail = f"crontab line of user {crontab_user()}"
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
            where = f"the crontab of {crontab_user()} ({shlex.join(crontab_command())} -)"
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
            plan.replaces = remove_cron_line(home, dry_run=True)
        except ScheduleError:
            plan.replaces = []
        if linger_off():
            plan.notes.append(
                "passes run only while you are logged in; to run them always: "
                "loginctl enable-linger " + crontab_user()
            )
        return plan
    line = cron_line(home, interval)
    _, effective = cron_expression(interval)
    plan = Plan("cron", interval, effective, why_method=why, cron_line=line)
    before = read_crontab()
    plan.crontab_before = before
    plan.crontab_after = replace_cron_line(before, unit_name(home), line)
    plan.replaces = remove_units(home, dry_run=True)
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


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise ScheduleError(f"{what} failed: {last_line(result)}")


def apply(home: AppHome, plan: Plan) -> list[str]:
    """Carry out ``plan``; returns what changed, one line each (empty: nothing to do)."""
    changed: list[str] = []
    if plan.method == "systemd":
        for argv in plan.pre_commands:
            _check(run_command(argv), shlex.join(argv))
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
                _check(run_command(argv), shlex.join(argv))
            changed.append(f"enabled and started {unit_name(home)}.timer")
        return changed + remove_cron_line(home, dry_run=False)
    assert plan.crontab_after is not None
    # Units go first: for a moment nothing runs passes rather than two schedules.
    changed += remove_units(home, dry_run=False)
    if plan.crontab_after != plan.crontab_before:
        write_crontab(plan.crontab_after)
        changed.append(f"put the syft-bg line in the crontab of {crontab_user()}")
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
        _check(run_command(argv), shlex.join(argv))
        return [f"{'enabled' if enabled else 'disabled'} the systemd timer {name}.timer"]
    text = schedule.cron_text or read_crontab()
    line = find_cron_line(home, text)
    assert line is not None
    bare = line.lstrip("# ")
    new_line = bare if enabled else f"# {bare}"
    write_crontab(replace_cron_line(text, name, new_line))
    return [f"{'enabled' if enabled else 'commented out'} the syft-bg crontab line"]


def uninstall(home: AppHome, dry_run: bool = False) -> list[str]:
    """Remove what install wrote for ``home``; returns what was (or would be) done."""
    return remove_units(home, dry_run) + remove_cron_line(home, dry_run)
