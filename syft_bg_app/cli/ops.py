"""Operating commands: start, stop, restart, ensure-running, logs, setup-status.

The services are the steps of a pass (sync, notify, approve, execute). There
is no resident process to start: starting a service switches its step on in
config.yaml and makes sure something runs passes (the installed schedule,
installed now if there is none, or SyftBox); stopping switches the step off,
and stopping all of them switches the schedule off too.

Only argparse is imported at load time (every CLI start imports this module);
each command imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from syft_bg_app.steps import STEPS

SERVICE_NAMES = STEPS


def _home(args: argparse.Namespace) -> Any:
    from syft_bg_app.store.home import AppHome

    return AppHome.resolve(args.home)


def _services(name: str | None) -> list[str]:
    from syft_bg_app.actions.services import SERVICES, check_services

    return list(SERVICES) if name in (None, "all") else check_services([name])


def _ensure_schedule(home: Any) -> int:
    """Make sure passes run: enable the schedule, or install one. 0 ok, 1 impossible here."""
    from syft_bg_app.invocation import command
    from syft_bg_app.schedule import install as schedule

    try:
        info = schedule.inspect(home, ask_manager=False)
        if info.hosted:
            print(f"passes: {info.detail}")
            return 0
        if info.installed and info.enabled:
            print(f"passes: already scheduled ({info.detail}, every {info.interval} s)")
            return 0
        if info.installed:
            for line in schedule.set_enabled(home, True):
                print(line)
            return 0
        from syft_bg_app.config.load import load_config

        interval = load_config(home.config_file).get("schedule.interval")
        plan = schedule.plan_install(home, interval)
        home.logs_dir.mkdir(parents=True, exist_ok=True)
        for line in schedule.apply(home, plan):
            print(line)
        print(
            f"passes: installed a {plan.method} schedule ({plan.why_method}), every "
            f"{plan.effective_interval} s; remove it with: {command('uninstall', home)}"
        )
        for note in plan.notes:
            print(f"note: {note}")
        return 0
    except schedule.ScheduleError as exc:
        print(f"syft-bg: {exc}", file=sys.stderr)
        print(
            "the services are switched on, but nothing runs passes by itself yet",
            file=sys.stderr,
        )
        return 1


def _start(home: Any, services: list[str], quiet_unchanged: bool = False) -> int:
    from syft_bg_app.actions.services import set_services

    changed = set_services(home, services, True)
    for service in services:
        if service in changed:
            print(f"{service}: started (on in config.yaml)")
        elif not quiet_unchanged:
            print(f"{service}: already running")
    return _ensure_schedule(home)


def _run_now(home: Any) -> int:
    from syft_bg_app.passes import main_once

    print("running a pass now...")
    return main_once(home)


def cmd_start(args: argparse.Namespace) -> int:
    return _start(_home(args), _services(args.service))


def cmd_stop(args: argparse.Namespace) -> int:
    from syft_bg_app.actions.services import SERVICES, set_services
    from syft_bg_app.config.load import load_config
    from syft_bg_app.schedule import install as schedule

    home = _home(args)
    services = _services(args.service)
    changed = set_services(home, services, False)
    for service in services:
        word = "stopped (off in config.yaml)" if service in changed else "already stopped"
        print(f"{service}: {word}")
    config = load_config(home.config_file)
    if any(config.step_enabled(s) for s in SERVICES):
        return 0
    # Nothing is left for a pass to do: switch the schedule off as well.
    try:
        lines = schedule.set_enabled(home, False)
    except schedule.ScheduleError as exc:
        print(f"syft-bg: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    info = schedule.inspect(home, ask_manager=False)
    if info.hosted:
        print("note: SyftBox still calls run.sh, but every step of the pass is off")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    home = _home(args)
    code = _start(home, _services(args.service))
    # Every pass reads config.yaml afresh, so a restart is: on, and a pass right now.
    return max(code, _run_now(home))


def cmd_ensure_running(args: argparse.Namespace) -> int:
    from syft_bg_app.actions.services import check_services

    home = _home(args)
    code = _start(home, check_services(args.services))
    if args.restart:
        code = max(code, _run_now(home))
    return code


def cmd_logs(args: argparse.Namespace) -> int:
    from syft_bg_app.actions.services import follow, last_records, log_files

    home = _home(args)
    if args.lines < 0:
        from syft_bg_app.errors import UsageError

        raise UsageError(f"-n: a number of records, at least 0, got {args.lines}")
    if not log_files(home) and not args.follow:
        print(f"no log yet at {home.logs_dir / 'syft-bg.log'}; the first pass writes it")
        return 0
    for line in last_records(home, args.service, args.lines):
        print(line)
    if not args.follow:
        return 0
    sys.stdout.flush()
    try:
        for line in follow(home, args.service):
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_setup_status(args: argparse.Namespace) -> int:
    from syft_bg_app.actions.setup_check import render, run_checks

    home = _home(args)
    checks = run_checks(home, repair=args.repair)
    print(render(checks, home))
    return 0 if all(c.ok for c in checks) else 1


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add start, stop, restart, ensure-running, logs and setup-status."""
    one_service = {
        "nargs": "?",
        "choices": ("all", *SERVICE_NAMES),
        "metavar": "SERVICE",
        "help": f"one of {', '.join(SERVICE_NAMES)} (default: all)",
    }
    p = add(
        subparsers,
        "start",
        cmd_start,
        "Switch a service (a step of the pass) or all of them on, and make sure passes "
        "run: the schedule is switched on, or installed if there is none.",
        "syft-bg start notify",
    )
    p.add_argument("service", **one_service)
    p = add(
        subparsers,
        "stop",
        cmd_stop,
        "Switch a service or all of them off; with all off the schedule is switched "
        "off too (it stays installed).",
        "syft-bg stop approve",
    )
    p.add_argument("service", **one_service)
    p = add(
        subparsers,
        "restart",
        cmd_restart,
        "Start a service or all of them, and run a pass now (every pass reads config.yaml "
        "afresh, so this applies an edited config at once).",
        "syft-bg restart",
    )
    p.add_argument("service", **one_service)
    p = add(
        subparsers,
        "ensure-running",
        cmd_ensure_running,
        "Start the named services unless they already run; says which it started.",
        "syft-bg ensure-running notify approve",
    )
    p.add_argument(
        "services", nargs="+", metavar="SERVICE", help=f"from {', '.join(SERVICE_NAMES)}"
    )
    p.add_argument("--restart", action="store_true", help="also run a pass now")
    p = add(
        subparsers,
        "logs",
        cmd_logs,
        "Show the log of one service (or all) from logs/syft-bg.log.",
        "syft-bg logs notify -f",
    )
    p.add_argument(
        "service",
        choices=("all", *SERVICE_NAMES, "pass"),
        metavar="SERVICE",
        help=f"one of {', '.join(SERVICE_NAMES)}, pass (the pass itself) or all",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=50,
        metavar="N",
        help="how many of the last records to show (default 50; a traceback stays with its record)",
    )
    p = add(
        subparsers,
        "setup-status",
        cmd_setup_status,
        "Check the environment: config, SyftBox folder, permission files, mail and its "
        "credentials, bwrap, the schedule, the last pass. Exit 0 when all is well.",
        "syft-bg setup-status",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="rewrite missing or wrong permission files and job folders first",
    )
