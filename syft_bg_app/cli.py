"""The syft-bg command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__, decisions, job_views
from .config import EMAIL_RE, load_config, render_sample
from .datasite import JOB_STATUSES, Datasite
from .errors import SyftBgError, UsageError
from .fsutil import atomic_write_text
from .home import AppHome
from .render import terminal_text
from .session import changing, open_view

# Modules that add their own commands: register(subparsers, add, commands).
COMMAND_MODULES = ("rules_cli", "notify_cli", "execute_cli", "schedule_cli", "ops_cli", "ds_cli")


def _home(args: argparse.Namespace) -> AppHome:
    return AppHome.resolve(args.home)


# -- commands --------------------------------------------------------------------


def init_app(
    home: AppHome, email: str, syftbox_root: str | None, force: bool
) -> tuple[Path, Datasite]:
    """Write config.yaml and the datasite's base layout (``init``, CLI and API)."""
    email = email.strip()
    if not EMAIL_RE.fullmatch(email):
        raise UsageError(f"-e/--email: {email!r} is not an email address")
    if home.config_file.exists() and not force:
        raise UsageError(
            f"{home.config_file} already exists; edit it, or pass --force to replace it"
        )
    root = str(Path(syftbox_root).expanduser()) if syftbox_root else "~/SyftBox"
    text = render_sample(email.lower(), root)
    home.ensure()
    config_path = home.config_file
    atomic_write_text(config_path, text, mode=0o600)
    config = load_config(config_path)
    datasite = Datasite(config.syftbox_root, config.do_email)
    datasite.ensure_base_layout()
    return config_path, datasite


def cmd_init(args: argparse.Namespace) -> int:
    config_path, datasite = init_app(_home(args), args.email, args.syftbox_root, args.force)
    print(f"wrote {config_path}")
    print(f"datasite {datasite.path} (layout ROOT/{datasite.layout}) is ready")
    print("next: ./run.sh   (or: syft-bg run --once)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .passes import main_once

    return main_once(_home(args))


def cmd_status(args: argparse.Namespace) -> int:
    from .status_report import render_status

    print(render_status(_home(args)))
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    ctx = open_view(_home(args))
    views = job_views.all_views(ctx, args.status)
    if not views:
        print("no jobs" + (f" with status {args.status}" if args.status else ""))
        return 0
    labels = [terminal_text(v.label) for v in views]
    width = max(len(label) for label in labels)
    print(f"{'JOB':<{width}}  STATUS    RECEIVED")
    for label, v in zip(labels, views, strict=True):
        received = terminal_text(v.state.get("received_at") or "-")
        print(f"{label:<{width}}  {terminal_text(v.status):<8}  {received}")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from .pager import show_page

    ctx = open_view(_home(args))
    ref = job_views.resolve(ctx, args.job)
    show_page(job_views.describe(ctx, ref, contents=not args.files))
    return 0


def cmd_jobs_approve(args: argparse.Namespace) -> int:
    with changing(_home(args), "jobs approve") as ctx:
        ref = job_views.resolve(ctx, args.job)
        decisions.approve_job(ctx, ref, "manual", reason=args.reason)
    print(f"approved {terminal_text(ref.label)}; it runs in the next pass")
    return 0


def cmd_jobs_reject(args: argparse.Namespace) -> int:
    with changing(_home(args), "jobs reject") as ctx:
        ref = job_views.resolve(ctx, args.job)
        decisions.reject_job(ctx, ref, args.reason)
    reason = f": {terminal_text(args.reason)}" if args.reason else ""
    print(f"rejected {terminal_text(ref.label)}{reason}")
    return 0


def cmd_peers_list(args: argparse.Namespace) -> int:
    ctx = open_view(_home(args))
    peers = sorted(ctx.state.data["peers"].items())
    if not peers:
        print("no peers or peer requests yet")
        return 0
    # Peer folder names, request times and messages are the requesters' writes.
    width = max(len(terminal_text(email)) for email, _ in peers)
    print(f"{'PEER':<{width}}  STATUS     SINCE")
    for email, record in peers:
        since = terminal_text(record.get("decided_at") or record.get("requested_at") or "-")
        note = terminal_text(record.get("problem") or record.get("message") or "")
        status = terminal_text(record["status"])
        print(f"{terminal_text(email):<{width}}  {status:<9}  {since}  {note}".rstrip())
    return 0


def cmd_peers_accept(args: argparse.Namespace) -> int:
    email = args.email.strip().lower()
    with changing(_home(args), "peers accept") as ctx:
        decisions.accept_peer(ctx, email, "manual", "accepted by the data owner")
    print(f"accepted {email}: they may now submit jobs")
    return 0


def cmd_peers_reject(args: argparse.Namespace) -> int:
    email = args.email.strip().lower()
    with changing(_home(args), "peers reject") as ctx:
        decisions.reject_peer(ctx, email, args.reason)
    print(f"rejected the peer request of {email}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep)


# -- parser ----------------------------------------------------------------------


def _add(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help_text: str,
    example: str,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syft-bg",
        description=(
            "Background app for a SyftBox data owner: each pass receives peer requests "
            "and jobs, emails about them, auto-approves what your rules trust, and runs "
            "approved jobs in a sandbox."
        ),
        epilog=(
            "examples:\n"
            "  syft-bg init -e you@example.org -r ~/SyftBox\n"
            "  syft-bg run --once\n"
            "  syft-bg jobs list --status pending\n"
            "  syft-bg jobs approve alice@uni.edu/my-analysis\n"
            "app home: ~/.syft-bg (override with SYFT_BG_HOME or --home)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"syft-bg {__version__}")
    parser.add_argument("--home", help="app home folder (default: $SYFT_BG_HOME or ~/.syft-bg)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = init_parser = _add(
        sub,
        "init",
        cmd_init,
        "Write config.yaml and prepare the datasite's job folders and permission files.",
        "syft-bg init -e you@example.org -r ~/SyftBox",
    )
    p.add_argument("-e", "--email", required=True, help="your (the data owner's) email")
    p.add_argument("-r", "--syftbox-root", help="SyftBox folder (default ~/SyftBox)")
    p.add_argument("--force", action="store_true", help="replace an existing config.yaml")

    p = _add(
        sub,
        "run",
        cmd_run,
        "Run one pass: sync, notify, approve, execute; then exit.",
        "syft-bg run --once",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one pass (the default; every pass is one-shot)",
    )

    _add(
        sub,
        "status",
        cmd_status,
        "Show the last pass, each step and what is waiting.",
        "syft-bg status",
    )

    p = _add(
        sub,
        "jobs",
        None,
        "List, inspect, approve and reject jobs.",
        "syft-bg jobs list",
    )
    jobs_sub = p.add_subparsers(title="jobs commands", metavar="ACTION", required=True)
    q = _add(
        jobs_sub,
        "list",
        cmd_jobs_list,
        "List jobs and their status.",
        "syft-bg jobs list --status pending",
    )
    q.add_argument(
        "--status",
        choices=JOB_STATUSES,
        help="only jobs with this status",
    )
    job_help = "the job: DS_EMAIL/JOB_NAME, or JOB_NAME when only one DS used that name"
    q = _add(
        jobs_sub,
        "show",
        cmd_jobs_show,
        "Show a job's state, why it is pending, its files with the text of run.sh and "
        "code/, and its results (paged on a terminal).",
        "syft-bg jobs show alice@uni.edu/my-analysis --files",
    )
    q.add_argument("job", help=job_help)
    shown = q.add_mutually_exclusive_group()
    shown.add_argument(
        "--files",
        action="store_true",
        help="list the files and their sizes only, without their text",
    )
    shown.add_argument(
        "--code",
        action="store_true",
        help="print the text of run.sh and code/ (the default; bidi controls marked)",
    )
    q = _add(
        jobs_sub,
        "approve",
        cmd_jobs_approve,
        "Approve a pending job; the next pass runs it.",
        "syft-bg jobs approve alice@uni.edu/my-analysis",
    )
    q.add_argument("job", help=job_help)
    q.add_argument("-r", "--reason", help="note recorded with the approval")
    q = _add(
        jobs_sub,
        "reject",
        cmd_jobs_reject,
        "Reject a job; the reason is sent to the data scientist.",
        'syft-bg jobs reject alice@uni.edu/my-analysis -r "reads raw rows"',
    )
    q.add_argument("job", help=job_help)
    q.add_argument("-r", "--reason", help="why (sent to the data scientist)")

    p = _add(sub, "peers", None, "List, accept and reject peers.", "syft-bg peers list")
    peers_sub = p.add_subparsers(title="peers commands", metavar="ACTION", required=True)
    _add(
        peers_sub,
        "list",
        cmd_peers_list,
        "List peers and peer requests.",
        "syft-bg peers list",
    )
    q = _add(
        peers_sub,
        "accept",
        cmd_peers_accept,
        "Accept a peer: creates their inbox (write) and review (read) folders.",
        "syft-bg peers accept alice@uni.edu",
    )
    q.add_argument("email")
    q = _add(
        peers_sub,
        "reject",
        cmd_peers_reject,
        "Reject a peer request.",
        'syft-bg peers reject mallory@evil.example -r "unknown to us"',
    )
    q.add_argument("email")
    q.add_argument("-r", "--reason", help="why (written to the requester's folder)")

    p = _add(
        sub,
        "demo",
        cmd_demo,
        "Build a throwaway datasite with a peer request and a job, and run passes on it.",
        "syft-bg demo",
    )
    p.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")

    # Commands of each area live beside that area; their modules import only
    # argparse at load time so that building the parser stays cheap.
    commands = {"init": init_parser, "jobs": jobs_sub, "peers": peers_sub}
    for name in COMMAND_MODULES:
        importlib.import_module(f"syft_bg_app.{name}").register(sub, _add, commands)
    return parser


# What run.sh and the schedule call every few seconds: served without building
# the parser of every command.
PASS_ARGV = (["run"], ["run", "--once"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in PASS_ARGV:
        return _call(cmd_run, argparse.Namespace(home=None, once=True))
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        from .dashboard import dashboard_command as handler
    return _call(handler, args)


def _call(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from .render import SafeTerminalStream

    # Whatever a command prints passes through terminal_text: names and fields
    # that data scientists wrote can never send escape sequences to the terminal.
    # (Values that could hold a line break are escaped where they are printed.)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeTerminalStream(sys.stdout), SafeTerminalStream(sys.stderr)
    try:
        return handler(args)
    except SyftBgError as exc:
        print(f"syft-bg: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


if __name__ == "__main__":
    sys.exit(main())
