"""``syft-bg install`` and ``uninstall``: the schedule that runs passes by themselves.

Only argparse is imported at load time (every CLI start imports this module);
each command imports what it needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def _home(args: argparse.Namespace) -> Any:
    from syft_bg_app.store.home import AppHome

    return AppHome.resolve(args.home)


def _interval(args: argparse.Namespace, home: Any) -> tuple[int, bool, Any]:
    """(interval, whether config.yaml must change, the config or None)."""
    from syft_bg_app.config.load import SCHEMA, load_config
    from syft_bg_app.errors import ConfigError, UsageError

    minimum = SCHEMA["schedule"].fields["interval"].minimum or 1
    if args.interval is not None and args.interval < minimum:
        raise UsageError(f"--interval: at least {minimum} seconds, got {args.interval}")
    try:
        config = load_config(home.config_file)
    except ConfigError:
        if not args.dry_run:
            raise
        default = SCHEMA["schedule"].fields["interval"].default
        return (args.interval or default), False, None
    configured = config.get("schedule.interval")
    if args.interval is None:
        return configured, False, config
    return args.interval, args.interval != configured, config


def cmd_install(args: argparse.Namespace) -> int:
    from syft_bg_app.config.editor import set_values
    from syft_bg_app.invocation import command
    from syft_bg_app.schedule import install as schedule
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    home = _home(args)
    interval, config_changes, config = _interval(args, home)
    plan = schedule.plan_install(home, interval, args.method, dry_run=args.dry_run)
    if args.dry_run:
        print(plan.describe())
        if config is None:
            first = command("init -e YOUR_EMAIL", home)
            print(f"note: no config.yaml at {home.config_file} yet ({first} first)")
        elif config_changes:
            print(f"would set schedule.interval: {interval} in {home.config_file}")
        print("(dry run: nothing was changed)")
        return 0
    if config_changes:
        with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="install"):
            set_values(home.config_file, {"schedule.interval": interval})
        print(f"set schedule.interval: {interval} in {home.config_file}")
    (home.logs_dir).mkdir(parents=True, exist_ok=True)
    changed = schedule.apply(home, plan)
    print(f"method: {plan.method} ({plan.why_method})")
    if changed:
        for line in changed:
            print(line)
    else:
        print("already installed as shown by --dry-run; nothing changed")
    every = plan.effective_interval
    if plan.method == "systemd":
        name = schedule.unit_name(home)
        print(
            f"a pass runs every {every} s; see it with: systemctl --user list-timers {name}.timer"
        )
    else:
        print(f"a pass runs every {every} s; each run's output: {schedule.cron_out_file(home)}")
    for note in plan.notes:
        print(f"note: {note}")
    if config is not None:
        from syft_bg_app.actions.services import SERVICES

        stopped = [s for s in SERVICES if not config.step_enabled(s)]
        if stopped:
            start = command("start SERVICE", home)
            print(f"note: stopped in config.yaml: {', '.join(stopped)} ({start})")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from syft_bg_app.schedule import install as schedule

    home = _home(args)
    done = schedule.uninstall(home, dry_run=args.dry_run)
    if not done:
        print(f"nothing is installed for the app home {home.root}")
        return 0
    for line in done:
        print(line)
    if args.dry_run:
        print("(dry run: nothing was changed)")
    return 0


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add ``install`` and ``uninstall``."""
    p = add(
        subparsers,
        "install",
        cmd_install,
        "Run a pass every schedule.interval seconds by itself: a systemd user timer, or a "
        "crontab line where no systemd user instance runs. Running it again is harmless.",
        "syft-bg install --dry-run",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print exactly what would be written and where, and change nothing",
    )
    p.add_argument(
        "--interval",
        type=int,
        metavar="SECONDS",
        help="seconds between passes (stored as schedule.interval; default: its value, 60)",
    )
    p.add_argument(
        "--method",
        choices=("auto", "systemd", "cron"),
        default="auto",
        help="auto (default): systemd when its user instance answers, else cron",
    )
    p = add(
        subparsers,
        "uninstall",
        cmd_uninstall,
        "Remove what install wrote for this app home (other crontab lines are untouched).",
        "syft-bg uninstall",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be removed")
