"""The data scientist's commands: ``submit``, ``peers request``, ``jobs mine``."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _identity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as",
        dest="as_email",
        metavar="DS_EMAIL",
        help="your email as a data scientist (default: do_email of this app's config)",
    )
    parser.add_argument(
        "-r",
        "--syftbox-root",
        help="SyftBox folder (default: syftbox_root of the config, else ~/SyftBox)",
    )


def _identity(args: argparse.Namespace):
    from syft_bg_app.api.ds import identify
    from syft_bg_app.store.home import AppHome

    return identify(AppHome.resolve(args.home), args.as_email, args.syftbox_root)


def cmd_submit(args: argparse.Namespace) -> int:
    from syft_bg_app.api.ds import submit

    sub = submit(_identity(args), args.do_email, args.path, args.name, args.entrypoint)
    print(f"submitted {sub.type} job {sub.name!r} to {sub.do_email}")
    print(f"  folder: {sub.path}")
    print(f"  runs:   {sub.entrypoint or 'run.sh'}  ({len(sub.files)} files)")
    print(f"  results will be in: {sub.review_dir}")
    if sub.skipped:
        print(
            "  left out (sync clients never deliver empty or ignored files): "
            + ", ".join(sub.skipped)
        )
    if not sub.peer:
        print(
            f"note: {sub.do_email} has not accepted you as a peer yet, so SyftBox may not "
            f"deliver this job, and it waits until you are accepted; ask with: "
            f"syft-bg peers request {sub.do_email}"
        )
    print("follow it with: syft-bg jobs mine")
    return 0


def cmd_peers_request(args: argparse.Namespace) -> int:
    from syft_bg_app.api.ds import request_peer

    req = request_peer(_identity(args), args.do_email, args.message)
    if req.status == "accepted":
        print(f"{req.do_email} has already accepted you as a peer; nothing to request")
    else:
        print(f"asked {req.do_email} to accept {req.ds_email} as a peer ({req.path})")
    return 0


def cmd_jobs_mine(args: argparse.Namespace) -> int:
    from syft_bg_app.api.ds import my_jobs
    from syft_bg_app.views.render import my_jobs_text

    ident = _identity(args)
    jobs = my_jobs(ident, args.status)
    if not jobs:
        suffix = f" with status {args.status}" if args.status else ""
        print(f"no jobs submitted by {ident.email}{suffix} in {ident.root}")
        return 0
    print(my_jobs_text(jobs))
    return 0


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    p = add(
        subparsers,
        "submit",
        cmd_submit,
        "Submit a job (a folder, or one .py or .sh script) to a data owner, as a data "
        "scientist. Written in the syft-job v1 layout.",
        "syft-bg submit owner@datasite.org ./analysis --name mean-age",
    )
    p.add_argument("do_email", metavar="DO_EMAIL", help="the data owner to run it")
    p.add_argument("path", metavar="PATH", help="a folder, or a single .py or .sh script")
    p.add_argument("-n", "--name", help="job name (default: the folder or script name)")
    p.add_argument(
        "--entrypoint",
        help="for a folder: the .py or .sh file that runs (default: main.py, the only "
        ".py file, main.sh, or the only .sh file)",
    )
    _identity_options(p)

    p = add(
        commands["peers"],
        "request",
        cmd_peers_request,
        "Ask a data owner to accept you as a peer (so you may submit jobs).",
        'syft-bg peers request owner@datasite.org -m "Alice, Uni stats group"',
    )
    p.add_argument("do_email", metavar="DO_EMAIL")
    p.add_argument("-m", "--message", help="a note the data owner sees")
    _identity_options(p)

    p = add(
        commands["jobs"],
        "mine",
        cmd_jobs_mine,
        "List the jobs you submitted to any data owner, their status and results.",
        "syft-bg jobs mine --as alice@uni.edu",
    )
    p.add_argument(
        "--status",
        choices=("received", "pending", "approved", "rejected", "running", "done", "failed"),
        help="only jobs with this status",
    )
    _identity_options(p)
