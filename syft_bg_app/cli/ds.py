"""The data scientist's commands: ``submit``, ``peers request``, ``jobs mine``."""

from __future__ import annotations

import argparse

from syft_bg_app.actions import ds
from syft_bg_app.cli import output
from syft_bg_app.cli.parser import app_home
from syft_bg_app.views.render import my_jobs_text


def _identity(args: argparse.Namespace) -> ds.Identity:
    return ds.identify(app_home(args), args.as_email, args.syftbox_root)


def submit(args: argparse.Namespace) -> int:
    sub = ds.submit(
        _identity(args),
        args.do_email,
        args.path,
        args.name,
        args.entrypoint,
        description=args.description,
        tags=args.tags,
    )
    output.say(
        f"submitted {sub.type} job {sub.name!r} to {sub.do_email}",
        f"  folder: {sub.path}",
        f"  runs:   {sub.entrypoint or 'run.sh'}  ({len(sub.files)} files)",
        f"  results will be in: {sub.review_dir}",
    )
    if sub.skipped:
        output.say(
            "  left out (sync clients never deliver empty or ignored files): "
            + ", ".join(sub.skipped)
        )
    if not sub.peer:
        output.notes(
            [
                f"{sub.do_email} has not accepted you as a peer yet, so SyftBox may not "
                f"deliver this job, and it waits until you are accepted; ask with: "
                f"syft-bg peers request {sub.do_email}"
            ]
        )
    output.say("follow it with: syft-bg jobs mine")
    return 0


def peers_request(args: argparse.Namespace) -> int:
    req = ds.request_peer(_identity(args), args.do_email, args.message)
    if req.status == "accepted":
        output.say(f"{req.do_email} has already accepted you as a peer; nothing to request")
    else:
        output.say(f"asked {req.do_email} to accept {req.ds_email} as a peer ({req.path})")
    return 0


def jobs_mine(args: argparse.Namespace) -> int:
    ident = _identity(args)
    mine = ds.my_jobs(ident, args.status)
    if not mine:
        suffix = f" with status {args.status}" if args.status else ""
        output.say(f"no jobs submitted by {ident.email}{suffix} in {ident.root}")
        return 0
    output.say(my_jobs_text(mine))
    return 0
