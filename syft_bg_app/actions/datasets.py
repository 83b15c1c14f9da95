"""Datasets: create, list, show, share, unshare, delete.

Mock files are published in the datasite for the users a dataset is shared
with; private files are copied under the app home, which no sync sends
anywhere (see ``syft_bg_app.datasite.datasets``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.datasite import datasets as store
from syft_bg_app.errors import NotFoundError, UsageError
from syft_bg_app.session import changing, open_view
from syft_bg_app.store.home import AppHome


@dataclass
class DatasetView:
    """One dataset: who it is shared with, who can read the mock now, where its files are."""

    name: str
    summary: str | None
    shared_with: list[str]
    readers: list[str]
    created_at: str
    mock_folder: str
    private_folder: str
    mock_files: list[str] = field(default_factory=list)
    private_files: list[str] = field(default_factory=list)
    # What is wrong with its record, and how to fix it; None for a sound dataset.
    damaged: str | None = None
    fix: str | None = None
    # Made by the syft client's create_dataset, unknown to this app: ``fix`` turns it
    # into one of the app's.
    client_made: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"damaged": self.damaged, "fix": self.fix} if self.damaged else {}),
            **({"client_made": True, "fix": self.fix} if self.client_made else {}),
            "name": self.name,
            "summary": self.summary,
            "shared_with": list(self.shared_with),
            "readers": list(self.readers),
            "created_at": self.created_at,
            "mock_folder": self.mock_folder,
            "private_folder": self.private_folder,
            "mock_files": list(self.mock_files),
            "private_files": list(self.private_files),
        }


@dataclass
class DatasetChange:
    """What a command did to a dataset, and what the data owner should know about it."""

    name: str
    readers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Pending jobs that name the dataset and whose authors can no longer read it: the
    # next pass rejects them, saying the dataset was deleted or unshared.
    pending_jobs: list[str] = field(default_factory=list)


def accepted_peers(ctx: Context) -> list[str]:
    return store.accepted_peers(ctx.state.data["peers"])


def publish_shares(ctx: Context, names: Iterable[str] | None = None) -> list[str]:
    """Rewrite the mock folders' read permissions; the damaged datasets left as they were."""
    return store.publish_shares(ctx.home, ctx.datasite, accepted_peers(ctx), names)


def _shares(people: Iterable[str]) -> list[str]:
    found: list[str] = []
    for who in people:
        share = store.check_share(who)
        if share not in found:
            found.append(share)
    return found


def create(
    home: AppHome,
    name: str,
    mock: str | Path,
    private: str | Path,
    share: Iterable[str] = (),
    summary: str | None = None,
) -> DatasetChange:
    """Publish ``mock`` for the users in ``share`` and keep ``private`` under the app home."""
    store.check_name(name)
    shares = _shares(share)
    mock_source = store.source_files(Path(mock), "mock")
    private_source = store.source_files(Path(private), "private")
    warnings = [
        f"mock file {rel} has the same bytes as a private file: the mock is the real data"
        for rel in store.same_bytes(mock_source, private_source)
    ]
    with changing(home, "datasets create") as ctx:
        private_path = Path(private).expanduser().absolute()
        if ctx.config.get("sync.transport") != "drive":
            # Over Drive the app is the syncer, and it never sends private files.
            synced = store.synced_source_warning(private_path, ctx.config.syftbox_root)
            warnings += [synced] if synced else []
        target = store.store_dir(home, name)
        public = store.public_dir(ctx.datasite, name)
        if target.exists() or public.exists():
            raise UsageError(
                f"a dataset named {name!r} exists already (see: syft-bg datasets show {name})"
            )
        record = store.DatasetRecord(
            name=name,
            shared_with=shares,
            summary=summary,
            created_at=iso(),
            uid=str(uuid.uuid4()),
            private_source=str(private_path),
        )
        # Both halves are built under names the sync ignores, then renamed into place:
        # a crash leaves no half-made dataset behind.
        root = store.store_root(home)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staged_store = store.fresh_staging(root, name)
        staged_store.mkdir(mode=0o700)
        store.copy_tree(*private_source, staged_store / store.PRIVATE_FOLDER, 0o700, 0o600)
        staged_public = store.fresh_staging(store.public_root(ctx.datasite), name)
        store.copy_tree(*mock_source, staged_public, 0o755, 0o644)
        readers = store.readers(record, accepted_peers(ctx))
        try:
            # The record goes in with the private half, which is what makes it a dataset:
            # a kill after this rename leaves one that `datasets delete` removes.
            store.save_record(home, record, staged_store)
            staged_store.rename(target)
            # Its permissions come first: under its final name it is never readable by
            # whoever public/ is readable by.
            store.write_read_permissions(ctx.datasite, name, readers, staged_public)
            staged_public.rename(public)
            store.write_metadata(ctx.datasite, record, mock_source[1])
        except BaseException:
            store.remove_tree(public)
            store.remove_tree(staged_public)
            store.remove_tree(staged_store)
            store.remove_tree(target)
            raise
        readers = store.readers(record, accepted_peers(ctx))
    return DatasetChange(name, readers, warnings)


def _view(ctx: Context, name: str) -> DatasetView:
    record = store.load_record(ctx.home, name)
    public = store.public_dir(ctx.datasite, name)
    private = store.private_dir(ctx.home, name)
    mock_files = [] if not public.is_dir() else store.files_under(public)
    hidden = {store.METADATA_FILE, store.PERMISSION_FILE}
    return DatasetView(
        name=name,
        summary=record.summary,
        shared_with=record.shared_with,
        readers=store.readers(record, accepted_peers(ctx)),
        created_at=record.created_at,
        mock_folder=str(public),
        private_folder=str(private),
        mock_files=[str(rel) for rel in mock_files if str(rel) not in hidden],
        private_files=[str(rel) for rel in store.files_under(private)] if private.is_dir() else [],
    )


def _damaged_view(ctx: Context, damage: store.DamagedDataset) -> DatasetView:
    """What can be said of a dataset whose record cannot be read."""
    name = damage.name
    record = store.store_dir(ctx.home, name) / store.RECORD_FILE
    return DatasetView(
        name=name,
        summary=None,
        shared_with=[],
        readers=[],
        created_at="",
        mock_folder=str(store.public_dir(ctx.datasite, name)),
        private_folder=str(store.private_dir(ctx.home, name)),
        damaged=damage.reason,
        fix=store.damaged_fix(name, record),
    )


def list_datasets(home: AppHome) -> list[DatasetView]:
    """Every dataset; one whose record is damaged is listed as damaged, with the reason."""
    ctx = open_view(home)
    views = []
    for name in store.dataset_names(home):
        try:
            views.append(_view(ctx, name))
        except store.DamagedDataset as damage:
            views.append(_damaged_view(ctx, damage))
    for name in store.client_made_names(home, ctx.datasite):
        views.append(
            DatasetView(
                name=name,
                summary=None,
                shared_with=[],
                readers=[],
                created_at="",
                mock_folder=str(store.public_dir(ctx.datasite, name)),
                private_folder=str(store.synced_private_root(ctx.datasite) / name),
                fix=store.recreate_command(ctx.datasite, name),
                client_made=True,
            )
        )
    return views


def show(home: AppHome, name: str) -> DatasetView:
    ctx = open_view(home)
    return _view(ctx, store.check_name(name))


def share(home: AppHome, name: str, people: Iterable[str]) -> DatasetChange:
    """Add readers of the mock data (``any``: every accepted peer, also those accepted later)."""

    def add(record: store.DatasetRecord, added: list[str]) -> None:
        record.shared_with += [who for who in added if who not in record.shared_with]

    _, readers = _change_shares(home, name, people, "share", add)
    return DatasetChange(name, readers)


def unshare(home: AppHome, name: str, people: Iterable[str]) -> DatasetChange:
    """Take readers away; a listed user stays a reader while ``any`` covers them."""
    people = list(people)

    def remove(record: store.DatasetRecord, removed: list[str]) -> None:
        missing = [who for who in removed if who not in record.shared_with]
        if missing:
            raise NotFoundError(
                f"dataset {name!r} is not shared with {', '.join(missing)} "
                f"(shared with: {', '.join(record.shared_with) or 'nobody'})"
            )
        record.shared_with = [who for who in record.shared_with if who not in removed]

    pending: list[str] = []

    def withdraw(ctx: Context, before: list[str], after: list[str]) -> None:
        pending.extend(withdraw_from_pending(ctx, name, "unshared", before, after))

    record, readers = _change_shares(home, name, people, "unshare", remove, withdraw)
    removed = _shares(people)
    warnings = []
    if store.ANY_PEER in record.shared_with and any(who in readers for who in removed):
        warnings.append("still shared with 'any': accepted peers keep reading it")
    return DatasetChange(name, readers, warnings, pending)


def _change_shares(
    home: AppHome,
    name: str,
    people: Iterable[str],
    command: str,
    change: Callable[[store.DatasetRecord, list[str]], None],
    then: Callable[[Context, list[str], list[str]], None] | None = None,
) -> tuple[store.DatasetRecord, list[str]]:
    """Apply ``change`` to the dataset's share list, save it and publish the permissions;
    the record and who reads the mock data now. ``then`` is told who read it before and
    who reads it now, within the same change of the checkpoint."""
    store.check_name(name)
    who = _shares(people)
    if not who:
        raise UsageError("name at least one email address, or 'any'")
    with changing(home, f"datasets {command}") as ctx:
        record = store.load_record(home, name)
        before = store.readers(record, accepted_peers(ctx))
        change(record, who)
        store.save_record(home, record)
        publish_shares(ctx, [name])
        after = store.readers(record, accepted_peers(ctx))
        if then is not None:
            then(ctx, before, after)
        return record, after


def jobs_naming(ctx: Context, name: str) -> list[str]:
    """Jobs approved or running that read dataset ``name``: they keep it from being
    deleted (a pending job does not: see ``withdraw_from_pending``)."""
    found = []
    for ds_email, job_name, record in ctx.state.iter_jobs():
        if record.get("status") in ("approved", "running") and name in (
            record.get("datasets") or []
        ):
            found.append(f"{ds_email}/{job_name}")
    return sorted(found)


def withdraw_from_pending(
    ctx: Context, name: str, how: str, before: Iterable[str], after: Iterable[str] | None
) -> list[str]:
    """Pending jobs that name dataset ``name`` and can no longer read it: those of the
    readers ``before`` the change who are not readers ``after`` it (``after`` None: the
    dataset is gone, every such job). The next pass rejects them; those of former
    readers are noted, so that the rejection says the dataset was ``how`` ("deleted",
    "unshared"). A job waiting for the owner's decision names what it likes, so it never
    keeps the owner from deleting or unsharing a dataset."""
    before = set(before)
    lost = None if after is None else before - set(after)
    found = []
    for ds_email, job_name, record in ctx.state.iter_jobs():
        if (
            record.get("status") != "pending"
            or (lost is not None and ds_email not in lost)
            or name not in (record.get("received_datasets") or [])
        ):
            continue
        if ds_email in before:
            noted = record.get(store.WITHDRAWN_KEY)
            record[store.WITHDRAWN_KEY] = {**(noted if isinstance(noted, dict) else {}), name: how}
        found.append(f"{ds_email}/{job_name}")
    return sorted(found)


def delete(home: AppHome, name: str) -> DatasetChange:
    """Remove the published mock data and the private copy. Approved or running jobs that
    read it keep it; pending jobs that name it are rejected by the next pass."""
    store.check_name(name)
    with changing(home, "datasets delete") as ctx:
        readers: list[str] = []
        try:
            readers = store.readers(store.load_record(home, name), accepted_peers(ctx))
        except store.DamagedDataset:
            pass  # deleting it is one way to repair it
        waiting = jobs_naming(ctx, name)
        if waiting:
            raise UsageError(
                f"dataset {name!r} is named by jobs not finished yet: {', '.join(waiting)}; "
                "reject them or let them finish, then delete it"
            )
        store.remove_tree(store.public_dir(ctx.datasite, name))
        store.remove_tree(store.store_dir(home, name))
        pending = withdraw_from_pending(ctx, name, "deleted", readers, None)
    return DatasetChange(name, pending_jobs=pending)
