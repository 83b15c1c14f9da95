"""Datasets over Drive: each dataset's mock data as the owner's collection folder.

The syft clients learn of a data owner's datasets only from folders
``syft_datasetcollection_<name>_<hash12>`` that the owner shares with them
(reader); they download every file in it into ``<owner>/public/syft_datasets/
<name>/``. The folder holds what the local datasite publishes for the dataset
(its mock files and ``dataset.yaml``), never the permission file, and nothing
of the private half, which lives in the app home. ``hash12`` names the content,
so a changed mock is a new folder; the old one is deleted once the new one is
complete and shared.

Bounded: each dataset's fingerprint (its published files' sizes and times, who
may read it) is checkpointed with what was done; a round where no fingerprint
changed makes no Drive request here. Safe to kill anywhere: a folder's id is
saved as soon as it exists, an unfinished folder is listed before anything is
uploaded into it (nothing lands twice), it is shared only once complete (a
client caches a collection by its hash and would never fetch a missing file),
and grants are read from Drive before they are changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from syft_bg_app.datasite import datasets as store
from syft_bg_app.datasite.layout import PERMISSION_FILE
from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.fsutil import short_repr
from syft_bg_app.sync.drive.service import DriveAuthError, DriveError

if TYPE_CHECKING:
    from syft_bg_app.sync.drive.owner import DriveOwner

COLLECTION_PREFIX = "syft_datasetcollection"
# The mark the real client reads to share a dataset with each peer it accepts later.
ANY_PROPERTY = "syft_shared_with_any"
# How collection_hash names a folder; part of each fingerprint, so a folder named
# the earlier way (by path rather than base name) is renamed at the next pass.
HASHED_BY = "base names"


def collection_hash(files: dict[str, bytes], mock_order: list[str] | None = None) -> str:
    """What the clients' ``compute_file_hashes`` names this collection by.

    The clients hash each mock file under its base name (``mock_file.name``, in the
    order of ``dataset.yaml``'s ``mock_files_urls``: a later one of the same name
    replaces an earlier), then ``dataset.yaml``: sha256 over each name then its
    bytes, by name. ``files`` are keyed by their path in the mock folder, where they
    travel (the clients put nested ones back in place); ``mock_order``: those paths
    in ``dataset.yaml``'s order, when it can be read.
    """
    order = [rel for rel in mock_order or [] if rel in files]
    order += sorted(rel for rel in files if rel not in order)
    by_name: dict[str, bytes] = {}
    for rel in order:
        if rel != store.METADATA_FILE:
            by_name[PurePosixPath(rel).name] = files[rel]
    if store.METADATA_FILE in files:
        by_name[store.METADATA_FILE] = files[store.METADATA_FILE]
    hasher = hashlib.sha256()
    for name in sorted(by_name):
        hasher.update(name.encode())
        hasher.update(by_name[name])
    return hasher.hexdigest()[:12]


def mock_order(metadata: bytes | None, name: str) -> list[str]:
    """The mock files' paths in the order ``dataset.yaml`` lists them ([] if unreadable)."""
    try:
        urls = (yaml.safe_load(metadata or b"") or {}).get("mock_files_urls") or []
    except (yaml.YAMLError, AttributeError):
        return []
    marker = f"/{store.DATASETS_FOLDER}/{name}/"
    return [url.split(marker, 1)[1] for url in urls if isinstance(url, str) and marker in url]


def collection_name(name: str, content_hash: str) -> str:
    return f"{COLLECTION_PREFIX}_{name}_{content_hash}"


def published_files(public: Path) -> list[Path]:
    """The files of a published mock folder that travel: all but its permission file."""
    return [rel for rel in store.files_under(public) if rel.as_posix() != PERMISSION_FILE]


def publish(owner: DriveOwner) -> None:
    """Bring every dataset's collection folder on Drive in line with the local datasets."""
    DatasetCollections(owner).sync()


class DatasetCollections:
    def __init__(self, owner: DriveOwner) -> None:
        self.owner = owner
        self.ctx = owner.ctx
        self.drive = owner.drive
        self.log = owner.log
        for key, empty in (("datasets", {}), ("retired_collections", [])):
            if not isinstance(owner.state.get(key), type(empty)):
                owner.state[key] = empty
        # name -> {hash, folder_id, complete, any, readers, fingerprint}
        self.entries: dict[str, dict[str, Any]] = owner.state["datasets"]
        # Folders of deleted datasets and of replaced mock data, still to delete.
        self.retired: list[str] = owner.state["retired_collections"]

    def sync(self) -> None:
        peers = self.ctx.state.data["peers"]
        accepted = store.accepted_peers(peers)
        # Whom the owner rejected or blocked reads no collection, listed by name or not.
        refused = {
            email.lower()
            for email, record in peers.items()
            if record.get("status") in ("rejected", "blocked")
        }
        names = store.dataset_names(self.ctx.home)
        for name in names:
            self._isolated(name, lambda n=name: self._dataset(n, accepted, refused))
        for name in sorted(set(self.entries) - set(names)):
            entry = self.entries.pop(name)
            if isinstance(entry, dict):
                self.retired.extend(
                    entry[key] for key in ("folder_id", "replaces") if entry.get(key)
                )
            self.owner.save()
            self.log.info("dataset %s deleted: its Drive folder goes", short_repr(name))
        self._isolated("folders to delete", self._delete_retired)

    def _isolated(self, what: str, step) -> None:
        """One dataset's trouble is logged and reported; the others still go to Drive."""
        try:
            step()
        except Exception as exc:
            if isinstance(exc, DriveAuthError):
                raise
            self.log.exception("dataset %s on Google Drive", short_repr(what))
            self.owner.problems.append(f"dataset {what}: {exc}")

    def _dataset(self, name: str, accepted: list[str], refused: set[str]) -> None:
        record = store.load_record(self.ctx.home, name)
        public = store.public_dir(self.ctx.datasite, name)
        if not public.is_dir():
            raise SyftBgError(
                f"its published mock folder {public} is missing; delete the dataset and "
                "create it again"
            )
        readers = [
            who
            for who in store.readers(record, accepted)
            if who.lower() != self.owner.do_email.lower() and who.lower() not in refused
        ]
        shared_any = store.ANY_PEER in record.shared_with
        rels = published_files(public)
        stats = [[rel.as_posix(), *_size_and_time(public / rel)] for rel in rels]
        fingerprint = hashlib.sha256(
            json.dumps([stats, readers, shared_any, HASHED_BY]).encode("utf-8")
        ).hexdigest()
        entry = self.entries.get(name)
        if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint:
            return
        files = {rel.as_posix(): (public / rel).read_bytes() for rel in rels}
        content_hash = collection_hash(files, mock_order(files.get(store.METADATA_FILE), name))
        if not isinstance(entry, dict) or entry.get("hash") != content_hash:
            earlier = entry if isinstance(entry, dict) else {}
            # The folder the readers have now stays theirs until the new one is shared;
            # one that was never shared (an unfinished replacement) goes at once.
            replaces = earlier.get("replaces") or earlier.get("folder_id")
            if earlier.get("replaces") and earlier.get("folder_id"):
                self.retired.append(earlier["folder_id"])
            entry = self.entries[name] = {"hash": content_hash}
            if replaces:
                entry["replaces"] = replaces
            self.owner.save()
        if entry.get("replaces"):
            # Whom the owner took the dataset from loses the old folder now, not later.
            self._grant(entry["replaces"], readers, gone_ok=True)
        if not entry.get("folder_id"):
            entry["folder_id"] = self.owner._find_or_create(
                collection_name(name, content_hash), self.owner.state["syftbox_id"]
            )
            self.owner.save()
        folder = entry["folder_id"]
        if not entry.get("complete"):
            self._fill(folder, files)
            entry["complete"] = True
            self.owner.save()
        if bool(entry.get("any")) != shared_any:
            self.drive.set_app_properties(folder, {ANY_PROPERTY: "true" if shared_any else "false"})
            entry["any"] = shared_any
            self.owner.save()
        self._grant(folder, readers)
        if entry.get("replaces"):
            self.retired.append(entry.pop("replaces"))
        entry["readers"] = readers
        entry["fingerprint"] = fingerprint
        self.owner.save()
        self.log.info(
            "dataset %s on Google Drive, readable by: %s",
            short_repr(name),
            ", ".join(readers) or "nobody",
        )

    def _fill(self, folder: str, files: dict[str, bytes]) -> None:
        """Make ``folder`` hold exactly ``files``: what an earlier, interrupted round
        uploaded stays; duplicates and strangers go."""
        present: set[str] = set()
        for item in self.drive.list(f"'{folder}' in parents and trashed=false"):
            name = item.get("name", "")
            size = int(item.get("size") or -1)
            if name in files and name not in present and size == len(files[name]):
                present.add(name)
            else:
                self.drive.delete(item["id"])
        for name in sorted(set(files) - present):
            self.drive.upload(name, folder, files[name])

    def _grant(self, folder: str, readers: list[str], gone_ok: bool = False) -> None:
        """Readers of ``folder``: exactly ``readers``, whatever was granted before.

        Grants are taken back first, so an address Drive will not share with (no
        Google account) never keeps someone else reading; each refused grant is
        reported and the others still made.
        """
        try:
            permissions = self.drive.permissions(folder)
        except DriveError as exc:
            if gone_ok and exc.status == 404:
                return  # deleted by another hand: nobody reads it
            raise
        granted = {
            (perm.get("emailAddress") or "").lower(): perm
            for perm in permissions
            if perm.get("role") != "owner" and perm.get("emailAddress")
        }
        wanted = {who.lower(): who for who in readers}
        for who in sorted(set(granted) - set(wanted)):
            try:
                self.drive.revoke(folder, granted[who]["id"])
            except DriveError as exc:
                if exc.status != 404:  # 404: revoked already, by another hand
                    raise
            self.log.info("%s no longer reads a dataset folder on Google Drive", short_repr(who))
        refused = []
        for who in sorted(set(wanted) - set(granted)):
            try:
                self.drive.grant(folder, wanted[who], "reader")
            except DriveAuthError:
                raise
            except DriveError as exc:
                refused.append(f"{wanted[who]} ({exc})")
        if refused:
            raise SyftBgError(f"Drive did not share it with {', '.join(refused)}")

    def _delete_retired(self) -> None:
        current = {e.get("folder_id") for e in self.entries.values() if isinstance(e, dict)}
        while self.retired:
            folder = self.retired[0]
            if folder not in current:
                try:
                    self.drive.delete(folder)
                except DriveError as exc:
                    if exc.status != 404:
                        raise
            self.retired.pop(0)
            self.owner.save()


def _size_and_time(path: Path) -> list[int]:
    st = path.lstat()
    return [st.st_size, st.st_mtime_ns]
