"""Commands of this area, added to the syft-bg parser by cli.build_parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def cmd_jobs_rerun(args: argparse.Namespace) -> int:
    from syft_bg_app.execution import runs as execute
    from syft_bg_app.session import changing
    from syft_bg_app.store.home import AppHome
    from syft_bg_app.views import jobs as job_views

    with changing(AppHome.resolve(args.home), "jobs rerun") as ctx:
        ref = job_views.resolve(ctx, args.job)
        execute.rerun(ctx, ref, fresh_snapshot=args.fresh_snapshot)
    print(f"{ref.label} is approved again; the next pass runs it")
    return 0


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add this area's commands. ``commands`` holds the init parser and the
    jobs/peers sub-command groups, for options and actions that belong there."""
    parser = add(
        commands["jobs"],
        "rerun",
        cmd_jobs_rerun,
        "Run a done or failed job again (from its approval snapshot) in the next pass.",
        "syft-bg jobs rerun alice@uni.edu/my-analysis",
    )
    parser.add_argument(
        "job", help="the job: DS_EMAIL/JOB_NAME, or JOB_NAME when only one DS used that name"
    )
    parser.add_argument(
        "--fresh-snapshot",
        action="store_true",
        help="run the job's current files instead of the approval snapshot "
        "(review them first; for jobs approved outside syft-bg)",
    )
