"""Operating commands: services, the schedule, the log, mail delivery, setup checks."""

from __future__ import annotations

import argparse
import sys

from syft_bg_app.actions import mail, schedule, services
from syft_bg_app.cli import output
from syft_bg_app.cli.parser import app_home
from syft_bg_app.errors import UsageError
from syft_bg_app.invocation import command
from syft_bg_app.store.home import AppHome

# -- services ------------------------------------------------------------------------------


def _print_passes(outcome: services.PassesOutcome, after: str | None = None) -> int:
    output.say(*outcome.lines)
    output.notes(outcome.notes)
    if outcome.problem is None:
        return 0
    output.problem(outcome.problem, *([after] if after else []))
    return 1


def _start(home: AppHome, names: list[str]) -> int:
    result = services.start(home, names)
    for service in result.services:
        word = "started (on in config.yaml)" if service in result.changed else "already running"
        output.say(f"{service}: {word}")
    return _print_passes(
        result.passes, "the services are switched on, but nothing runs passes by itself yet"
    )


def _run_now(home: AppHome) -> int:
    from syft_bg_app.passes import main_once

    output.say("running a pass now...")
    return main_once(home)


def start(args: argparse.Namespace) -> int:
    return _start(app_home(args), services.service_names(args.service))


def stop(args: argparse.Namespace) -> int:
    result = services.stop(app_home(args), services.service_names(args.service))
    for service in result.services:
        word = "stopped (off in config.yaml)" if service in result.changed else "already stopped"
        output.say(f"{service}: {word}")
    code = _print_passes(result.passes)
    output.notes(result.notes)
    return code


def restart(args: argparse.Namespace) -> int:
    home = app_home(args)
    code = _start(home, services.service_names(args.service))
    # Every pass reads config.yaml afresh, so a restart is: on, and a pass right now.
    return max(code, _run_now(home))


def ensure_running(args: argparse.Namespace) -> int:
    home = app_home(args)
    code = _start(home, services.check_services(args.services))
    if args.restart:
        code = max(code, _run_now(home))
    return code


def logs(args: argparse.Namespace) -> int:
    home = app_home(args)
    if args.lines < 0:
        raise UsageError(f"-n: a number of records, at least 0, got {args.lines}")
    if not services.log_files(home) and not args.follow:
        output.say(f"no log yet at {home.logs_dir / 'syft-bg.log'}; the first pass writes it")
        return 0
    output.say(*services.last_records(home, args.service, args.lines))
    if not args.follow:
        return 0
    sys.stdout.flush()
    try:
        for line in services.follow(home, args.service):
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def setup_status(args: argparse.Namespace) -> int:
    from syft_bg_app.actions.setup_check import render, run_checks

    home = app_home(args)
    checks = run_checks(home, repair=args.repair)
    output.say(render(checks, home))
    return 0 if all(c.ok for c in checks) else 1


# -- the schedule --------------------------------------------------------------------------


def install(args: argparse.Namespace) -> int:
    from syft_bg_app.schedule.install import cron_out_file, unit_name

    home = app_home(args)
    result = schedule.install(home, args.interval, args.method, dry_run=args.dry_run)
    plan = result.plan
    if result.dry_run:
        output.say(plan.describe())
        if result.config is None:
            first = command("init -e YOUR_EMAIL", home)
            output.say(f"note: no config.yaml at {home.config_file} yet ({first} first)")
        elif result.interval_changed:
            output.say(f"would set schedule.interval: {result.interval} in {home.config_file}")
        output.say("(dry run: nothing was changed)")
        return 0
    if result.interval_changed:
        output.say(f"set schedule.interval: {result.interval} in {home.config_file}")
    output.say(f"method: {plan.method} ({plan.why_method})")
    output.say(*(result.changed or ["already installed as shown by --dry-run; nothing changed"]))
    every = plan.effective_interval
    if plan.method == "systemd":
        name = unit_name(home)
        output.say(
            f"a pass runs every {every} s; see it with: systemctl --user list-timers {name}.timer"
        )
    else:
        output.say(f"a pass runs every {every} s; each run's output: {cron_out_file(home)}")
    output.notes(result.notes)
    if result.stopped_services:
        start_cmd = command("start SERVICE", home)
        output.notes(
            [f"stopped in config.yaml: {', '.join(result.stopped_services)} ({start_cmd})"]
        )
    return 0


def uninstall(args: argparse.Namespace) -> int:
    home = app_home(args)
    result = schedule.uninstall(home, dry_run=args.dry_run)
    if not result.done:
        output.say(f"nothing is installed for the app home {home.root}")
        return 0
    output.say(*result.done)
    if result.dry_run:
        output.say("(dry run: nothing was changed)")
    return 0


# -- mail ----------------------------------------------------------------------------------


def _print_queue(queue: mail.MailQueue) -> None:
    output.say(*queue.status)
    if not queue.entries:
        return
    rows = []
    for entry in queue.entries:
        state = entry.get("error") or entry.get("status", "queued")
        if entry.get("status") == "set aside":
            state = f"set aside: {state}"
        rows.append(
            (
                entry["created_at"][:19],
                entry["kind"],
                entry["to"],
                str(entry.get("attempts", 0)),
                state,
            )
        )
    output.say("")
    output.table(("created", "kind", "to", "tries", "state"), rows)


def mail_list(args: argparse.Namespace) -> int:
    _print_queue(mail.queue(app_home(args)))
    return 0


def mail_retry(args: argparse.Namespace) -> int:
    result = mail.retry(app_home(args))
    output.say(f"sent {result.sent} of {result.waiting} queued emails")
    if result.events_back:
        output.say(f"{result.events_back} set-aside events are composed again by the next pass")
    _print_queue(result.queue)
    return 0 if result.sent == result.waiting else 1


def mail_test(args: argparse.Namespace) -> int:
    result = mail.send_test(app_home(args), args.to)
    if result.delivered:
        where = f" into {result.outbox_dir}" if result.transport == "outbox" else ""
        output.say(f"sent a test email to {result.to} via {result.transport}{where}")
        return 0
    output.say(f"the test email to {result.to} could not be sent (it is not kept):")
    _print_queue(result.queue)
    return 1
