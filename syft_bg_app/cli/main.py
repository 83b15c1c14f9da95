"""The syft-bg command line."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from syft_bg_app import __version__
from syft_bg_app.approval import decisions
from syft_bg_app.approval.job_needs import job_warnings
from syft_bg_app.config.load import EMAIL_RE, load_config, render_sample
from syft_bg_app.datasite.layout import JOB_STATUSES, Datasite
from syft_bg_app.errors import SyftBgError, UsageError
from syft_bg_app.invocation import (
    APP_NAME,
    command,
    default_bin_dir,
    link_bin,
    link_bin_problem,
    localize,
    on_path,
    program,
)
from syft_bg_app.session import changing, open_view
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import AppHome
from syft_bg_app.sync.syftbox_client import client_folder
from syft_bg_app.views import jobs as job_views
from syft_bg_app.views.render import terminal_text

DEFAULT_SYFTBOX_ROOT = "~/SyftBox"

# Modules that add their own commands: register(subparsers, add, commands).
COMMAND_MODULES = ("rules", "notify", "execute", "schedule", "ops", "ds")


def _home(args: argparse.Namespace) -> AppHome:
    return AppHome.resolve(args.home)


# -- commands --------------------------------------------------------------------


def init_app(
    home: AppHome,
    email: str,
    syftbox_root: str | None,
    force: bool,
    create: bool = False,
) -> tuple[Path, Datasite]:
    """Write config.yaml and the datasite's base layout (``init``, CLI and API).

    A SyftBox folder that does not exist is created only with ``create``: a
    mistyped ``-r`` must not quietly become a new, empty SyftBox folder.
    """
    email = email.strip()
    if not EMAIL_RE.fullmatch(email):
        raise UsageError(f"-e/--email: {email!r} is not an email address")
    if home.config_file.exists() and not force:
        raise UsageError(
            f"{home.config_file} already exists; edit it, or pass --force to replace it"
        )
    root = _syftbox_root(syftbox_root)
    folder = Path(root).expanduser()
    if not folder.is_dir() and not create:
        raise UsageError(_missing_root_message(home, email, folder, syftbox_root is None))
    text = render_sample(email.lower(), root)
    home.ensure()
    config_path = home.config_file
    atomic_write_text(config_path, text, mode=0o600)
    config = load_config(config_path)
    datasite = Datasite(config.syftbox_root, config.do_email)
    datasite.ensure_base_layout()
    return config_path, datasite


def _syftbox_root(given: str | None) -> str:
    """-r as given; without it the folder the SyftBox client's config names, else ~/SyftBox."""
    if given:
        return str(Path(given).expanduser())
    found = client_folder()
    return str(found.data_dir) if found is not None else DEFAULT_SYFTBOX_ROOT


def _missing_root_message(home: AppHome, email: str, folder: Path, defaulted: bool) -> str:
    what = "the default SyftBox folder" if defaulted else "-r/--syftbox-root"
    lines = [f"{what}: {folder} does not exist (nothing was written)"]
    init = f"init -e {shlex.quote(email)} -r"
    found = client_folder()
    if found is not None and found.data_dir is not None:
        lines.append(
            f"the SyftBox client's config {found.path} names {found.data_dir}; use it with:\n"
            f"  {command(f'{init} {shlex.quote(str(found.data_dir))}', home)}"
        )
    lines.append(
        "if the folder is right and SyftBox has not made it yet, create it with:\n"
        f"  {command(f'{init} {shlex.quote(str(folder))} --create', home)}"
    )
    return "\n".join(lines)


def cmd_init(args: argparse.Namespace) -> int:
    home = _home(args)
    if args.email is None:
        if not args.link_bin:
            raise UsageError("init: -e/--email is required (or --link-bin alone)")
        return _link_bin(args)
    bin_dir = Path(args.bin_dir) if args.bin_dir else None
    if args.link_bin:
        # Refused before anything is written: exit 2 means nothing changed.
        problem = link_bin_problem(bin_dir)
        if problem:
            raise UsageError(problem)
    config_path, datasite = init_app(
        home, args.email, args.syftbox_root, args.force, create=args.create
    )
    print(f"wrote {config_path}")
    print(f"datasite {datasite.path} (layout ROOT/{datasite.layout}) is ready")
    offer = not args.link_bin and _offer_launcher() and not link_bin_problem(bin_dir)
    where_bin = bin_dir or default_bin_dir()
    if args.link_bin or (offer and _ask(f"put a syft-bg command in {where_bin}?")):
        _link_bin(args)
    elif program() != APP_NAME:
        other = on_path()
        where = (
            f"the syft-bg on PATH ({other}) is another program"
            if other
            else "syft-bg is not on PATH"
        )
        print(
            f"{where}: run commands as {program()} ..., or put it there "
            f"with: {program()} init --link-bin"
        )
    print(f"next: ./run.sh   (or: {command('run --once', home)})")
    return 0


def _offer_launcher() -> bool:
    """Ask only a person at a terminal, and only when syft-bg does not already run this app."""
    return sys.stdin.isatty() and sys.stdout.isatty() and program() != APP_NAME


def _ask(question: str) -> bool:
    try:
        answer = input(f"{question} [Y/n] ").strip().lower()
    except EOFError:
        return False
    return answer in ("", "y", "yes")


def _link_bin(args: argparse.Namespace) -> int:
    result = link_bin(Path(args.bin_dir) if args.bin_dir else None)
    for line in result.describe():
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from syft_bg_app.passes import main_once

    return main_once(_home(args))


def cmd_status(args: argparse.Namespace) -> int:
    from syft_bg_app.views.status import render_status

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
        rule = v.state.get("rule")
        by_rule = f"  (auto-approved by rule {terminal_text(rule)})" if rule else ""
        print(f"{label:<{width}}  {terminal_text(v.status):<8}  {received}{by_rule}")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from syft_bg_app.cli.pager import show_page

    ctx = open_view(_home(args))
    ref = job_views.resolve(ctx, args.job)
    show_page(job_views.describe(ctx, ref, contents=not args.files))
    return 0


def cmd_jobs_approve(args: argparse.Namespace) -> int:
    with changing(_home(args), "jobs approve") as ctx:
        ref = job_views.resolve(ctx, args.job)
        decisions.approve_job(ctx, ref, "manual", reason=args.reason)
        warnings = job_warnings(ctx, ref)
    print(f"approved {terminal_text(ref.label)}; it runs in the next pass")
    for warning in warnings:
        print(f"warning: {terminal_text(warning)}")
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
    held = ctx.state.data["held_jobs"]
    unknown = [email for email in held if ctx.state.peer(email) is None]
    peers += sorted((email, {"status": "unknown"}) for email in unknown)
    from syft_bg_app.sync.drive.owner import other_generation_notes

    other = other_generation_notes(ctx)
    peers += sorted((e, {"status": "other-version", "problem": n}) for e, n in other.items())
    if not peers:
        print("no peers or peer requests yet")
        return 0
    # Peer folder names, request times and messages are the requesters' writes.
    width = max(len(terminal_text(email)) for email, _ in peers)
    print(f"{'PEER':<{width}}  STATUS     SINCE")
    for email, record in peers:
        since = terminal_text(record.get("decided_at") or record.get("requested_at") or "-")
        notes = [record.get("problem") or record.get("message") or ""]
        if email in held:
            notes.append(f"[{held[email]['jobs']} job(s) {held[email]['reason']}]")
        if record.get("asked_again"):
            notes.append("[asked again; considered after approve.peers.rerequest_after_days]")
        note = terminal_text(" ".join(n for n in notes if n))
        status = terminal_text(record["status"])
        print(f"{terminal_text(email):<{width}}  {status:<9}  {since}  {note}".rstrip())
    return 0


def cmd_peers_accept(args: argparse.Namespace) -> int:
    with changing(_home(args), "peers accept") as ctx:
        email = decisions.peer_key(ctx, args.email)
        decisions.accept_peer(ctx, email, "manual", "accepted by the data owner")
    print(f"accepted {email}: they may now submit jobs")
    return 0


def cmd_peers_reject(args: argparse.Namespace) -> int:
    with changing(_home(args), "peers reject") as ctx:
        email = decisions.peer_key(ctx, args.email)
        decisions.reject_peer(ctx, email, args.reason)
    print(f"rejected the peer request of {email}")
    return 0


def cmd_peers_block(args: argparse.Namespace) -> int:
    with changing(_home(args), "peers block") as ctx:
        email = decisions.peer_key(ctx, args.email)
        changed = decisions.block_peer(ctx, email, args.reason)
    if changed:
        print(f"blocked {email}: their requests and jobs are ignored until 'peers unblock'")
    else:
        print(f"{email} was blocked already")
    return 0


def cmd_peers_unblock(args: argparse.Namespace) -> int:
    with changing(_home(args), "peers unblock") as ctx:
        email = decisions.peer_key(ctx, args.email)
        status = decisions.unblock_peer(ctx, email)
    print(f"unblocked {email} ({status} again)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from syft_bg_app.cli.demo import run_demo

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
    p.add_argument("-e", "--email", help="your (the data owner's) email (required)")
    p.add_argument(
        "-r",
        "--syftbox-root",
        help="SyftBox folder (default: the one the SyftBox client's config names, "
        "else ~/SyftBox); it must exist unless --create",
    )
    p.add_argument("--force", action="store_true", help="replace an existing config.yaml")
    p.add_argument(
        "--create",
        action="store_true",
        help="create the SyftBox folder when it does not exist yet",
    )
    p.add_argument(
        "--link-bin",
        action="store_true",
        help="put a syft-bg launcher of this app in ~/.local/bin (alone: only that)",
    )
    p.add_argument("--bin-dir", help="where --link-bin writes syft-bg (default ~/.local/bin)")

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

    p = _add(sub, "peers", None, "List, accept, reject and block peers.", "syft-bg peers list")
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
    q = _add(
        peers_sub,
        "block",
        cmd_peers_block,
        "Ignore a data scientist for good: no request is read, no job received.",
        "syft-bg peers block mallory@evil.example",
    )
    q.add_argument("email")
    q.add_argument("-r", "--reason", help="why (kept in the audit log, not sent)")
    q = _add(
        peers_sub,
        "unblock",
        cmd_peers_unblock,
        "Undo 'peers block': the data scientist is what they were before.",
        "syft-bg peers unblock mallory@evil.example",
    )
    q.add_argument("email")

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
        importlib.import_module(f"syft_bg_app.cli.{name}").register(sub, _add, commands)
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
        from syft_bg_app.cli.dashboard import dashboard_command as handler
    return _call(handler, args)


def _call(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from syft_bg_app.views.render import SafeTerminalStream

    # Whatever a command prints passes through terminal_text: names and fields
    # that data scientists wrote can never send escape sequences to the terminal.
    # (Values that could hold a line break are escaped where they are printed.)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeTerminalStream(sys.stdout), SafeTerminalStream(sys.stderr)
    try:
        return handler(args)
    except SyftBgError as exc:
        # Commands the message suggests are spelled as they run from here.
        home = AppHome.resolve(getattr(args, "home", None))
        print(f"syft-bg: {localize(str(exc), home)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


if __name__ == "__main__":
    sys.exit(main())
