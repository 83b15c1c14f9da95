"""The data owner's commands: arguments in, an action, its result printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from syft_bg_app.actions import jobs, peers, rules, setup
from syft_bg_app.actions.drive import DriveSignIn
from syft_bg_app.cli import output
from syft_bg_app.cli.parser import app_home
from syft_bg_app.errors import UsageError
from syft_bg_app.invocation import (
    APP_NAME,
    command,
    default_bin_dir,
    link_bin_problem,
    on_path,
    program,
)
from syft_bg_app.session import open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views import job_render
from syft_bg_app.views import jobs as job_views
from syft_bg_app.views import rules as rule_views
from syft_bg_app.views.peers import peers_text
from syft_bg_app.views.render import terminal_text

# -- setting up --------------------------------------------------------------------------


def init(args: argparse.Namespace) -> int:
    home = app_home(args)
    if args.token_path:
        return _init_with_token(args)
    if args.drive:
        return _init_with_consent(args)
    if args.gmail:
        from syft_bg_app.actions import mail

        # A file that is no OAuth client is refused before anything is written.
        mail.check_gmail_client(Path(args.gmail))
        if not home.config_file.exists() or args.force:
            _init(args)
        signed_in = mail.gmail_sign_in(home, Path(args.gmail), port=args.gmail_port)
        _say_gmail(signed_in.token_path, signed_in.transport_set, signed_in.config_file)
        output.say(f"check it with: {command('mail test', home)}")
        output.say(*signed_in.notes)
        return 0
    return _init(args)


def _say_gmail(token_path: Path, transport_set: bool, config_file: Path) -> None:
    output.say(f"saved the Gmail token to {token_path} (readable only by you)")
    if transport_set:
        output.say(f"set notify.transport: gmail in {config_file}")


def _init_with_token(args: argparse.Namespace) -> int:
    """init -t: the token is read and checked before anything is written."""
    from syft_bg_app.actions import drive, mail

    home = app_home(args)
    if args.gmail:
        mail.check_gmail_client(Path(args.gmail))
    fresh = not home.config_file.exists() or args.force
    settings = drive.owner_settings(home, args.email, fresh)
    created = _check_drive_init(args, home) if fresh else None
    staged = drive.stage_token(Path(args.token_path), settings)
    try:
        if fresh:
            _init(args)
            output.say(*filter(None, [created]))
        signed_in = drive.install_token(home, staged, drive.owner_settings(home, None, False))
    finally:
        staged.discard()
    _say_drive(signed_in, home)
    if args.gmail:
        gmail = mail.gmail_sign_in(home, Path(args.gmail), port=args.gmail_port)
        _say_gmail(gmail.token_path, gmail.transport_set, gmail.config_file)
        output.say(*gmail.notes)
    return 0


def _init_with_consent(args: argparse.Namespace) -> int:
    """init --drive: one consent for Drive (and Gmail, with --gmail)."""
    from syft_bg_app.actions import drive, mail

    home = app_home(args)
    mail.check_gmail_client(Path(args.drive), option="--drive")
    if args.gmail:
        mail.check_gmail_client(Path(args.gmail))
    if not home.config_file.exists() or args.force:
        if args.email is None:
            raise UsageError("init: -e/--email is required to sign in before config.yaml exists")
        created = _check_drive_init(args, home)
        _init(args)
        output.say(*filter(None, [created]))
    if args.gmail:
        mail.keep_gmail_client(home, Path(args.gmail))
    signed_in = drive.sign_in_with_consent(
        home, Path(args.drive), with_gmail=bool(args.gmail), port=args.gmail_port
    )
    _say_drive(signed_in, home)
    if args.gmail and mail.use_gmail(home):
        output.say(f"set notify.transport: gmail in {signed_in.config_file}")
    return 0


def _check_drive_init(args: argparse.Namespace, home: AppHome) -> str | None:
    """What a fresh ``init`` with a Drive sign-in checks before Google is asked anything.
    Nobody runs a SyftBox client beside Drive, so the app makes the SyftBox folder;
    returns the line saying so, when it will."""
    bin_dir = Path(args.bin_dir) if args.bin_dir else None
    if args.link_bin:
        problem = link_bin_problem(bin_dir)
        if problem:
            raise UsageError(problem)
    root = setup.check_init(home, args.email, args.syftbox_root, args.force, create=True)
    args.create = True
    if Path(root).expanduser().is_dir():
        return None
    return (
        f"created the SyftBox folder {root}: over Google Drive this app keeps it in sync "
        "(no SyftBox client needed)"
    )


def _say_generation(home: AppHome) -> None:
    from syft_bg_app.config.load import load_config

    generation = load_config(home.config_file).get("drive.generation")
    clients = {"0.10": "syft 0.10.x", "0.1": "syft-client 0.1.x"}
    other = "0.1" if generation == "0.10" else "0.10"
    output.say(
        f"speaking drive.generation '{generation}' (data scientists on "
        f"{clients.get(generation, generation)}); for {clients[other]} set "
        f"drive.generation: '{other}' in {home.config_file}"
    )


def _say_drive(signed_in: DriveSignIn, home: AppHome) -> None:
    output.say(f"saved the Google Drive token to {signed_in.token_path} (readable only by you)")
    if signed_in.also_saved is not None:
        output.say(f"and, for Gmail, to {signed_in.also_saved}")
    if signed_in.signed_in_as:
        output.say(f"✓ it signs in to Google Drive as {signed_in.signed_in_as}")
    else:
        output.say(
            f"⚠ could not check it with Google now: {signed_in.unchecked}",
            f"check it once Google can be reached: {command('setup-status', home)}",
        )
    if signed_in.transport_set:
        output.say(f"set sync.transport: drive in {signed_in.config_file}")
    _say_generation(home)


def _init(args: argparse.Namespace) -> int:
    home = app_home(args)
    bin_dir = Path(args.bin_dir) if args.bin_dir else None
    if args.email is None:
        if not args.link_bin:
            raise UsageError("init: -e/--email is required (or --link-bin alone)")
        output.say(*setup.link_launcher(bin_dir).describe())
        return 0
    result = setup.init(
        home,
        args.email,
        args.syftbox_root,
        force=args.force,
        create=args.create,
        launcher=args.link_bin,
        bin_dir=bin_dir,
    )
    output.say(
        f"wrote {result.config_file}",
        f"datasite {result.datasite.path} (layout ROOT/{result.datasite.layout}) is ready",
    )
    launcher = result.launcher
    if launcher is None and _offer_launcher() and not link_bin_problem(bin_dir):
        if _ask(f"put a syft-bg command in {bin_dir or default_bin_dir()}?"):
            launcher = setup.link_launcher(bin_dir)
    if launcher is not None:
        output.say(*launcher.describe())
    elif program() != APP_NAME:
        other = on_path()
        where = (
            f"the syft-bg on PATH ({other}) is another program"
            if other
            else "syft-bg is not on PATH"
        )
        output.say(
            f"{where}: run commands as {program()} ..., or put it there "
            f"with: {program()} init --link-bin"
        )
    output.say(f"next: ./run.sh   (or: {command('run --once', home)})")
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


def status(args: argparse.Namespace) -> int:
    from syft_bg_app.views.status import render_status

    output.say(render_status(app_home(args)))
    return 0


def demo(args: argparse.Namespace) -> int:
    from syft_bg_app.cli.demo import run_demo

    return run_demo(keep=args.keep)


# -- jobs ----------------------------------------------------------------------------------


def jobs_list(args: argparse.Namespace) -> int:
    views = job_views.all_views(open_view(app_home(args)), args.status, args.tag)
    if args.json:
        output.json_data(job_render.jobs_json(views))
    else:
        title = job_render.jobs_title(args.status, args.tag)
        output.say(job_render.jobs_text(views, title))
    return 0


def jobs_show(args: argparse.Namespace) -> int:
    from syft_bg_app.cli.pager import show_page

    ctx = open_view(app_home(args))
    job = job_views.page(ctx, job_views.resolve(ctx, args.job), contents=not args.files)
    if args.json:
        output.json_data(job_render.job_json(job))
    else:
        show_page(job_render.job_text(job))
    return 0


def jobs_approve(args: argparse.Namespace) -> int:
    result = jobs.approve(app_home(args), args.job, args.reason)
    output.say(f"approved {terminal_text(result.ref.label)}; it runs in the next pass")
    output.warnings(terminal_text(w) for w in result.warnings)
    return 0


def jobs_reject(args: argparse.Namespace) -> int:
    result = jobs.reject(app_home(args), args.job, args.reason)
    reason = f": {terminal_text(args.reason)}" if args.reason else ""
    output.say(f"rejected {terminal_text(result.ref.label)}{reason}")
    return 0


def jobs_rerun(args: argparse.Namespace) -> int:
    result = jobs.rerun(app_home(args), args.job, fresh_snapshot=args.fresh_snapshot)
    output.say(f"{result.ref.label} is approved again; the next pass runs it")
    return 0


# -- peers ---------------------------------------------------------------------------------


def peers_list(args: argparse.Namespace) -> int:
    output.say(peers_text(peers.known_peers(app_home(args))))
    return 0


def peers_accept(args: argparse.Namespace) -> int:
    result = peers.accept(app_home(args), args.email)
    output.say(f"accepted {result.email}: they may now submit jobs")
    return 0


def peers_reject(args: argparse.Namespace) -> int:
    result = peers.reject(app_home(args), args.email, args.reason)
    output.say(f"rejected the peer request of {result.email}")
    return 0


def peers_block(args: argparse.Namespace) -> int:
    result = peers.block(app_home(args), args.email, args.reason)
    if result.changed:
        output.say(
            f"blocked {result.email}: their requests and jobs are ignored until 'peers unblock'"
        )
    else:
        output.say(f"{result.email} was blocked already")
    return 0


def peers_unblock(args: argparse.Namespace) -> int:
    result = peers.unblock(app_home(args), args.email)
    output.say(f"unblocked {result.email} ({result.status} again)")
    return 0


# -- auto-approval rules -----------------------------------------------------------------


def hash_files(args: argparse.Namespace) -> int:
    hashed = rules.hash_files(args.files)
    if len(hashed) == 1:
        output.say(hashed[0].digest)
    else:
        output.say(*(f"{h.digest}  {h.path}" for h in hashed))
    return 0


def auto_approve(args: argparse.Namespace) -> int:
    edit = rules.add_rule(
        app_home(args),
        args.contents,
        peers=args.peer,
        name=args.name,
        name_only=args.name_only,
        base_dir=args.base_dir,
        from_job=args.from_job,
    )
    output.say(rule_views.rule_edit_text(edit))
    return 0


def list_auto_approvals(args: argparse.Namespace) -> int:
    home = app_home(args)
    output.say(rule_views.rule_listing_text(rules.list_rules(home, args.name), home))
    return 0


def remove_auto_approval(args: argparse.Namespace) -> int:
    result = rules.remove_files(app_home(args), args.name, args.files)
    output.say(rule_views.files_removed_text(result))
    return 0


def remove_peer(args: argparse.Namespace) -> int:
    home = app_home(args)
    output.say(rule_views.peer_removed_text(rules.remove_peer(home, args.peer, args.name), home))
    return 0


def audit(args: argparse.Namespace) -> int:
    found = rules.audit_entries(app_home(args), args.job, args.limit)
    if not found.entries:
        output.say(f"no audit entries{' for ' + found.subject if found.subject else ''}")
    elif args.json:
        output.say(*(json.dumps(e, sort_keys=True) for e in found.entries))
    else:
        output.say("\n".join(rule_views.audit_entry_text(e) for e in found.entries))
    return 0
