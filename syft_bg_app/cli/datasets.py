"""``syft-bg datasets ...``: the command-line face of ``actions.datasets``."""

from __future__ import annotations

import argparse

from syft_bg_app.actions import datasets
from syft_bg_app.cli import output
from syft_bg_app.cli.parser import app_home
from syft_bg_app.invocation import localize


def _readers(names: list[str]) -> str:
    return ", ".join(names) if names else "nobody yet"


def _pending(result: datasets.DatasetChange, how: str) -> None:
    if result.pending_jobs:
        output.notes(
            [
                f"pending jobs that name {result.name} and can no longer read it (the next "
                f"pass rejects them: dataset {result.name!r} was {how}): "
                + ", ".join(result.pending_jobs)
            ]
        )


def _over_drive(args: argparse.Namespace) -> None:
    """Over Google Drive a change travels with the next pass, not now."""
    from syft_bg_app.config.load import load_config
    from syft_bg_app.invocation import command

    home = app_home(args)
    if load_config(home.config_file).get("sync.transport") == "drive":
        output.say(f"it reaches Google Drive at the next pass (now: {command('run --once', home)})")


def create(args: argparse.Namespace) -> int:
    result = datasets.create(
        app_home(args), args.name, args.mock, args.private, args.share, args.summary
    )
    output.warnings(result.warnings)
    output.say(f"created dataset {result.name}; mock data readable by: {_readers(result.readers)}")
    _over_drive(args)
    return 0


def list_(args: argparse.Namespace) -> int:
    views = datasets.list_datasets(app_home(args))
    if args.json:
        output.json_data([view.to_dict() for view in views])
        return 0
    if not views:
        output.say(
            "no datasets (create one: syft-bg datasets create NAME --mock PATH --private PATH)"
        )
        return 0
    output.table(
        ["name", "shared with", "readers now", "summary"],
        [
            [v.name, "?", "?", f"DAMAGED: {v.damaged}"]
            if v.damaged
            else [v.name, "?", "?", "made by the syft client: not served (see below)"]
            if v.client_made
            else [v.name, ", ".join(v.shared_with) or "-", str(len(v.readers)), v.summary or ""]
            for v in views
        ],
    )
    home = app_home(args)
    output.warnings(
        localize(f"dataset {v.name} is damaged: {v.damaged}; {v.fix}", home)
        for v in views
        if v.damaged
    )
    output.notes(
        localize(
            f"dataset {v.name} was made by the syft client: this app has no record of who "
            f"may read it, so a job naming it is rejected; to serve it, create it again: "
            f"{v.fix}",
            home,
        )
        for v in views
        if v.client_made
    )
    return 0


def show(args: argparse.Namespace) -> int:
    view = datasets.show(app_home(args), args.name)
    if args.json:
        output.json_data(view.to_dict())
        return 0
    output.say(
        f"dataset:      {view.name}",
        f"summary:      {view.summary or '-'}",
        f"created:      {view.created_at}",
        f"shared with:  {', '.join(view.shared_with) or 'nobody'}",
        f"readers now:  {_readers(view.readers)}",
        f"mock folder:  {view.mock_folder}",
        *(f"  {name}" for name in view.mock_files),
        f"private copy: {view.private_folder} (not synced)",
        *(f"  {name}" for name in view.private_files),
    )
    return 0


def share(args: argparse.Namespace) -> int:
    result = datasets.share(app_home(args), args.name, args.people)
    output.say(f"{result.name}: mock data readable by: {_readers(result.readers)}")
    _over_drive(args)
    return 0


def unshare(args: argparse.Namespace) -> int:
    result = datasets.unshare(app_home(args), args.name, args.people)
    output.warnings(result.warnings)
    output.say(f"{result.name}: mock data readable by: {_readers(result.readers)}")
    _pending(result, "unshared")
    _over_drive(args)
    return 0


def delete(args: argparse.Namespace) -> int:
    result = datasets.delete(app_home(args), args.name)
    output.say(f"deleted dataset {result.name} (mock data and private copy)")
    _pending(result, "deleted")
    _over_drive(args)
    return 0
