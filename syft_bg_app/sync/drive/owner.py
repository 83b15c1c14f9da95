"""The data owner's side of the Drive protocol, one bounded round per pass.

1. Peer requests: folders ``syft_datasite#V#<do>#inbox|outbox#<ds>`` that a data
   scientist owns and shared with the owner become ``peers/<ds>/request.yaml`` in
   the local datasite, so the local reading turns them into peer records,
   emails and decisions exactly as for SyftBox users.
2. Accepted peers get what the protocol needs: the mirror folder pair shared
   with them, the version file shared, ``SYFT_peers.json`` kept.
3. Proposals in: each ``msgv2_*`` message of an accepted peer of this
   generation, oldest first, is checked change by change and applied to the
   local datasite, then moved to the archive folder.
4. Events out: what changed under the peer's review folder that the permission
   files let them read (job state, logs, shared outputs) goes to their outbox,
   with the accepted proposals echoed; the owner's own log, rolling state and
   checkpoints are kept as the real client keeps them, for the owner's notebook.

Everything in the checkpoint that names Drive folders belongs to one generation
(``drive.generation``); a change of generation puts it aside (``GENERATION_KEYS``).

What was done is in the checkpoint (``drive`` in state.json) before the next
thing is done: a pass killed anywhere redoes at most one idempotent step.

Why one module of this size: the four parts share one listing of the owner's
Drive per round and one checkpoint record, and their order is the crash-safety
argument above; reading them in one file is reading that argument.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Any

from syft_bg_app.approval.decisions import reject_job
from syft_bg_app.clock import iso
from syft_bg_app.config.load import EMAIL_RE
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.mail.smtp import resolve_path
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.fsutil import atomic_write_yaml, is_ignored_name, short_repr
from syft_bg_app.sync.drive import datasets as drive_datasets
from syft_bg_app.sync.drive import protocol
from syft_bg_app.sync.drive.permissions import PERMISSION_FILE, Permissions
from syft_bg_app.sync.drive.service import (
    FILE_REFUSAL_REASONS,
    FOLDER_MIME,
    Drive,
    DriveAuthError,
    DriveError,
    DriveTransientError,
)
from syft_bg_app.sync.local import _reject_on_receipt as reject_on_receipt
from syft_bg_app.sync.local import is_blocked

# Paths no data scientist may write, whatever the permission files say.
REFUSED_TOPS = ("private",)
REFUSED_PREFIXES = ("public/syft_datasets",)
REFUSED_PARTS = frozenset(
    {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", "node_modules"}
)
APPLIED_KEPT = 2000
# What in the ``drive`` checkpoint belongs to one generation: the peers' folders and
# what was sent to them, the owner's own log and restore data. A change of
# drive.generation puts these aside and takes up the new generation's own.
GENERATION_KEYS = (
    "ds",
    "log_id",
    "rolling_state_id",
    "rolling_folder_id",
    "rolling_paths",
    "rolling_base",
    "logged_paths",
    "checkpoints_id",
    "other_generation",
)
# Jobs one message refused whole may name, each then rejected with the reason.
JOBS_PER_REFUSED_MESSAGE = 20
# Messages in a data scientist's outbox at which they are merged into one.
COMPACT_AT = 20


def drive_for(ctx: Context) -> Drive:
    token = resolve_path(ctx.config.get("drive.token"), ctx.home.root)
    return Drive(
        token,
        ctx.config.do_email,
        ctx.config.get("drive.api_endpoint"),
        ctx.config.get("drive.retry_budget"),
    )


def run(ctx: Context, drive: Drive | None = None) -> None:
    DriveOwner(ctx, drive or drive_for(ctx)).sync()


class DriveOwner:
    def __init__(self, ctx: Context, drive: Drive) -> None:
        self.ctx = ctx
        self.drive = drive
        self.log = ctx.log("sync.drive")
        self.do_email = ctx.config.do_email
        self.generation = ctx.config.get("drive.generation")
        self.version = protocol.GENERATIONS[self.generation]
        self.state = ctx.state.data.setdefault("drive", {})
        self._take_up_generation()
        self.peers_state: dict[str, dict[str, Any]] = self.state.setdefault("ds", {})
        self.perms = Permissions(ctx.datasite.path)
        self.problems: list[str] = []

    def save(self) -> None:
        self.ctx.state.save()

    def _take_up_generation(self) -> None:
        """Keep one generation's bookkeeping apart from the other's.

        Folder ids, peer records and what was sent are only valid for the
        generation that made them: the other generation's data scientists have
        other folders, and a 0.1 folder must never carry 0.10 traffic. The
        local datasite and the peers' decisions are the same for both.
        """
        was = self.state.get("generation") or self._generation_of_records()
        if was == self.generation:
            self.state.setdefault("generation", was)
            return
        shelf = self.state.setdefault("generations", {})
        shelf[was] = {key: self.state.pop(key) for key in GENERATION_KEYS if key in self.state}
        self.state.update(shelf.pop(self.generation, {}))
        # The version file is one file: rewritten with this generation's version.
        self.state.pop("version_file_id", None)
        self.state["generation"] = self.generation
        self.log.info(
            "drive.generation changed from %s to %s: serving syft-client %s",
            was,
            self.generation,
            self.version,
        )
        self.save()

    def _generation_of_records(self) -> str:
        """The generation of a checkpoint written before generations were recorded."""
        for record in (self.state.get("ds") or {}).values():
            generation = protocol.major_minor(str(record.get("version") or ""))
            if generation in protocol.GENERATIONS:
                return generation
        return self.generation

    # -- the round ------------------------------------------------------------------
    def sync(self) -> None:
        self._own_folder()
        self._version_file()
        self._discover()
        for ds in sorted(self.peers_state):
            self._isolated(ds, self._follow_decision)
        drive_datasets.publish(self)
        self._proposals_in()
        for ds in sorted(self.peers_state):
            self._isolated(ds, self._events_out)
        if self.problems:
            raise DriveSyncError("; ".join(self.problems))

    def _isolated(self, ds: str, step) -> None:
        """One peer's trouble is logged and named in the sync error; the others are served.

        Only a refused sign-in stops the round: no Drive call can work without one.
        """
        try:
            step(ds)
        except Exception as exc:
            if isinstance(exc, DriveAuthError):
                raise
            self.log.exception("Drive sync with %s failed", short_repr(ds))
            self.problems.append(peer_problem(ds, exc))

    # -- the owner's own files ---------------------------------------------------------
    def _own_folder(self) -> None:
        if self.state.get("syftbox_id"):
            return
        found = self.drive.list(
            f"name='{protocol.SYFTBOX_FOLDER}' and mimeType='{FOLDER_MIME}' "
            "and 'me' in owners and trashed=false"
        )
        folder = found[0]["id"] if found else None
        if folder is None:
            folder = self.drive.create_folder(protocol.SYFTBOX_FOLDER, None)
        self.state["syftbox_id"] = folder
        self.save()

    def _own_file(self, name: str, key: str, data: bytes) -> str:
        """The id of ``name`` in the SyftBox folder, written with ``data`` when absent."""
        file_id = self.state.get(key)
        if file_id:
            return file_id
        found = self.drive.list(
            f"name='{name}' and '{self.state['syftbox_id']}' in parents and trashed=false"
        )
        if found:
            file_id = found[0]["id"]
            self.drive.update_content(file_id, data)
        else:
            file_id = self.drive.upload(name, self.state["syftbox_id"], data)
        self.state[key] = file_id
        self.save()
        return file_id

    def _own_log(self) -> str:
        """The folder ``<version>#<do>`` holding every event the owner published."""
        if not self.state.get("log_id"):
            name = f"{self.version}#{self.do_email}"
            self.state["log_id"] = self._find_or_create(name, self.state["syftbox_id"])
            self.save()
        return self.state["log_id"]

    def _rolling_state(self, events: list[dict[str, Any]], stamp: float) -> None:
        """The owner's rolling state: the latest event of each path since the last checkpoint.

        The real client's ``login_do`` restores the datasite from the checkpoints,
        then this, then the log messages newer than it, so the owner's notebook
        sees the same jobs. At ``CHECKPOINT_AT`` paths the rolling state becomes a
        checkpoint and starts empty, as the client's own does.
        """
        rolling = set(self.state.get("rolling_paths") or self.state.get("logged_paths") or [])
        rolling.update(item["path_in_datasite"] for item in events)
        self.state["rolling_paths"] = sorted(rolling)
        self.state.pop("logged_paths", None)
        datasite = self.ctx.datasite.path
        latest = [
            protocol.event(rel, self.do_email, _read(datasite / rel), None, stamp)
            for rel in sorted(rolling)
        ]
        if len(latest) >= protocol.CHECKPOINT_AT:
            self._checkpoint(latest, stamp)
            return
        data = protocol.rolling_state(
            self.do_email, self.state.get("rolling_base", 0.0), stamp, latest
        )
        if self.state.get("rolling_state_id"):
            self.drive.update_content(self.state["rolling_state_id"], data)
            return
        self.state["rolling_state_id"] = self.drive.upload(
            f"{protocol.ROLLING_STATE_PREFIX}{stamp}{protocol.EXTENSION}",
            self._rolling_folder(),
            data,
        )
        self.save()

    def _rolling_folder(self) -> str:
        if not self.state.get("rolling_folder_id"):
            name = f"{self.do_email}-{self.version}-rolling-state"
            self.state["rolling_folder_id"] = self._find_or_create(name, self.state["syftbox_id"])
            self.save()
        return self.state["rolling_folder_id"]

    def _checkpoint(self, events: list[dict[str, Any]], stamp: float) -> None:
        """Write the rolling state's events as the next incremental checkpoint, then empty it.

        A pass killed before the rolling state is emptied writes a checkpoint with
        the same events again next time: restoring applies them twice, to the
        same content.
        """
        if not self.state.get("checkpoints_id"):
            name = f"{self.do_email}-{self.version}-checkpoints"
            self.state["checkpoints_id"] = self._find_or_create(name, self.state["syftbox_id"])
            self.save()
        folder = self.state["checkpoints_id"]
        listed = self.drive.list(f"'{folder}' in parents and trashed=false")
        incrementals = [
            (seq, item)
            for item in listed
            if (seq := protocol.incremental_sequence(item.get("name", ""))) is not None
        ]
        sequence = max((seq for seq, _ in incrementals), default=0) + 1
        name, data = protocol.incremental_checkpoint(self.do_email, sequence, events)
        incrementals.append((sequence, {"id": self.drive.upload(name, folder, data)}))
        self.log.info("wrote the owner's checkpoint %s (%d paths)", name, len(events))
        if len(incrementals) >= protocol.COMPACT_CHECKPOINTS_AT:
            try:
                self._compact_checkpoints(folder, listed, incrementals)
            except protocol.MessageError as exc:
                # One this app cannot read (the owner's notebook may encrypt its own):
                # all stay as they are, and the notebook restores from them all.
                self.log.warning("the owner's checkpoints were left unmerged: %s", exc)
        self.state["rolling_paths"] = []
        self.state["rolling_base"] = stamp
        self.state.pop("rolling_state_id", None)
        self.save()
        rolling_folder = self._rolling_folder()
        for item in self.drive.list(f"'{rolling_folder}' in parents and trashed=false"):
            if item.get("name", "").startswith(protocol.ROLLING_STATE_PREFIX):
                self.drive.delete(item["id"])

    def _compact_checkpoints(
        self, folder: str, listed: list[dict[str, Any]], incrementals: list[tuple[int, dict]]
    ) -> None:
        """Merge the full checkpoint and the incremental ones into one full checkpoint.

        The new one is written before the old ones are deleted: a pass killed in
        between leaves checkpoints that restore to the same files.
        """
        cap = protocol.MAX_MESSAGE_BYTES
        fulls = [
            (stamp, item)
            for item in listed
            if (stamp := protocol.full_checkpoint_timestamp(item.get("name", ""))) is not None
        ]
        files: dict[str, dict[str, str] | None] = {}
        last: float | None = None
        if fulls:
            full = protocol.parse_checkpoint(self.drive.download(max(fulls)[1]["id"]), cap)
            for entry in full.get("files", []):
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    files[entry["path"]] = entry
            last = full.get("last_event_timestamp")
        for _, item in sorted(incrementals, key=lambda pair: pair[0]):
            for event in protocol.parse_checkpoint(self.drive.download(item["id"]), cap).get(
                "events", []
            ):
                path = event.get("path_in_datasite") if isinstance(event, dict) else None
                if not isinstance(path, str):
                    continue
                deleted = event.get("is_deleted") or event.get("content") is None
                files[path] = (
                    None
                    if deleted
                    else {
                        "path": path,
                        "hash": str(event.get("new_hash")),
                        "content": event["content"],
                    }
                )
                stamp = event.get("timestamp")
                if isinstance(stamp, (int, float)) and (last is None or stamp > last):
                    last = stamp
        name, data = protocol.full_checkpoint(
            self.do_email, [entry for entry in files.values() if entry], last
        )
        self.drive.upload(name, folder, data)
        for _, item in [*fulls, *incrementals]:
            self.drive.delete(item["id"])
        self.log.info("merged the owner's checkpoints into %s", name)

    def _version_file(self) -> str:
        data = json.dumps(protocol.version_info(self.generation), indent=2).encode()
        return self._own_file(protocol.VERSION_FILE, "version_file_id", data)

    def _write_peers_file(self) -> None:
        peers = self.state.setdefault("peers_json", {})
        file_id = self.state.get("peers_file_id")
        if not file_id:
            found = self.drive.list(
                f"name='{protocol.PEERS_FILE}' and '{self.state['syftbox_id']}' in parents "
                "and trashed=false"
            )
            if found:
                # Kept by the owner's notebook before: its entries stay, beside ours.
                file_id = found[0]["id"]
                try:
                    earlier = json.loads(self.drive.download(file_id))
                except ValueError:
                    earlier = {}
                if isinstance(earlier, dict):
                    peers.update({k: v for k, v in earlier.items() if k not in peers})
        data = json.dumps(peers, indent=2).encode()
        if file_id:
            self.drive.update_content(file_id, data)
        else:
            file_id = self.drive.upload(protocol.PEERS_FILE, self.state["syftbox_id"], data)
        self.state["peers_file_id"] = file_id

    # -- 1. peer requests ---------------------------------------------------------------
    def _discover(self) -> None:
        """One listing finds every data scientist's folders for this datasite."""
        folders = self.drive.list(
            f"name contains '{protocol.P2P_PREFIX}#' and name contains '#{self.do_email}#' "
            f"and trashed=false and mimeType = '{FOLDER_MIME}' and not 'me' in owners"
        )
        others: dict[str, str] = {}
        found: dict[tuple[str, str], list[tuple[dict[str, Any], protocol.P2PFolder]]] = {}
        for item in folders:
            folder = protocol.P2PFolder.parse(item.get("name", ""))
            if folder is None or folder.datasite.lower() != self.do_email.lower():
                continue
            owners = [o.get("emailAddress", "").lower() for o in item.get("owners") or []]
            if folder.peer.lower() not in owners or not EMAIL_RE.fullmatch(folder.peer):
                continue  # named for someone else: only a folder's owner speaks for it
            if protocol.major_minor(folder.version) != self.generation:
                others[folder.peer] = protocol.shown_version(folder.version)
                continue
            found.setdefault((folder.peer, folder.kind), []).append((item, folder))
        for (peer, kind), candidates in sorted(found.items()):
            record = self.peers_state.setdefault(peer, {})
            ids = {item["id"] for item, _ in candidates}
            if record.get(f"{kind}_id") in ids:
                continue  # the folder in use stays in use while it is there
            # A data scientist with two folders of a kind (made again without trashing
            # the old one): the newest, the same one every pass whatever Drive's order.
            item, folder = max(
                candidates, key=lambda c: (c[0].get("modifiedTime") or "", c[0]["id"])
            )
            if kind == "outbox" and record.get("outbox_id"):
                # A new outbox (the data scientist made their folders again) starts
                # empty: everything they may read is sent to it again.
                for key in ("published", "outbox_messages", "echo"):
                    record.pop(key, None)
                self.log.info("%s has a new outbox on Google Drive", short_repr(peer))
            record[f"{kind}_id"] = item["id"]
            record["version"] = protocol.shown_version(folder.version)
        self._note_other_generation(others)
        for ds, record in sorted(self.peers_state.items()):
            if record.get("inbox_id") and record.get("outbox_id"):
                self._isolated(ds, self._request_locally)

    def _note_other_generation(self, others: dict[str, str]) -> None:
        noted = self.state.get("other_generation", {})
        # Someone the data owner blocked is neither listed nor emailed about.
        others = {
            ds: v
            for ds, v in others.items()
            if ds not in self.peers_state and not is_blocked(self.ctx, ds)
        }
        self.state["other_generation"] = others
        for ds, version in sorted(others.items()):
            # The version is the data scientist's to rename at will: what is worth
            # telling (and emailing, once) is the generation that would serve them.
            wanted = _served_by(version)
            if ds in noted and _served_by(noted[ds]) == wanted:
                continue
            self.log.warning(
                "%s runs syft-client %s, another generation than drive.generation %s: %s",
                short_repr(ds),
                version,
                self.generation,
                f"set drive.generation to '{wanted}' to serve them"
                if wanted
                else "no generation of this app serves them",
            )
            self.ctx.state.add_event(
                "peer_other_generation",
                ds_email=ds,
                version=version,
                generation=self.generation,
                wanted=wanted,
                peers_served=sum(
                    (self.ctx.state.peer(peer) or {}).get("status") == "accepted"
                    for peer in self.peers_state
                ),
            )

    def _request_locally(self, ds: str) -> None:
        """A Drive request becomes the local request file the peer rules read."""
        if self.ctx.state.peer(ds) is not None or is_blocked(self.ctx, ds):
            return
        path = self.ctx.datasite.peer_request_file(ds)
        if os.path.lexists(path):
            return
        self.ctx.datasite.peers.mkdir(parents=True, exist_ok=True)
        request = {
            "email": ds,
            "requested_at": iso(),
            "message": "asked to connect over Google Drive",
        }
        atomic_write_yaml(path, request)
        self.log.info("peer request from %s over Google Drive", short_repr(ds))

    # -- 2. decisions ---------------------------------------------------------------------
    def _follow_decision(self, ds: str) -> None:
        record = self.peers_state[ds]
        peer = self.ctx.state.peer(ds) or {}
        status = peer.get("status")
        peers_json = self.state.setdefault("peers_json", {})
        if status == "accepted" and not record.get("mirror"):
            syftbox = self.state["syftbox_id"]
            for kind in ("inbox", "outbox"):
                key = f"mirror_{kind}_id"
                if not record.get(key):
                    name = protocol.P2PFolder(self.version, ds, kind, self.do_email).name
                    record[key] = self._find_or_create(name, syftbox)
                    self.save()
                self.drive.share(record[key], ds, "writer")
            self.drive.share(self._version_file(), ds, "reader")
            peers_json[ds] = {"state": "accepted"}
            self._write_peers_file()
            record["mirror"] = True
            self.save()
            self.log.info("%s accepted on Google Drive", short_repr(ds))
        elif status in ("rejected", "blocked") and (
            record.get("mirror") or peers_json.get(ds, {}).get("state") != "rejected"
        ):
            if record.get("mirror"):
                self._take_back(ds, record)
            peers_json[ds] = {"state": "rejected"}
            self._write_peers_file()
            self.save()

    def _take_back(self, ds: str, record: dict[str, Any]) -> None:
        """A peer accepted once, then rejected or blocked, loses what accepting shared:
        the mirror folders (where their client reads what it was sent) and the
        version file. The folders stay, for accepting them again."""
        for file_id in (
            record.get("mirror_inbox_id"),
            record.get("mirror_outbox_id"),
            self._version_file(),
        ):
            if not file_id:
                continue
            try:
                self.drive.unshare(file_id, ds)
            except DriveError as exc:
                if exc.status != 404:  # 404: the folder is gone, and its grants with it
                    raise
        record["mirror"] = False
        self.save()
        self.log.info("%s no longer shares anything on Google Drive", short_repr(ds))

    def _find_or_create(self, name: str, parent: str) -> str:
        found = self.drive.list(
            f"name='{name}' and mimeType='{FOLDER_MIME}' and 'me' in owners and trashed=false"
        )
        return found[0]["id"] if found else self.drive.create_folder(name, parent)

    # -- 3. proposals in ----------------------------------------------------------------
    def _serving(self) -> dict[str, dict[str, Any]]:
        return {
            ds: record
            for ds, record in self.peers_state.items()
            if record.get("mirror")
            and record.get("inbox_id")
            and (self.ctx.state.peer(ds) or {}).get("status") == "accepted"
        }

    def _proposals_in(self) -> None:
        serving = self._serving()
        if not serving:
            return
        by_inbox = {record["inbox_id"]: ds for ds, record in serving.items()}
        try:
            files = self._list_folders(sorted(by_inbox))
        except DriveError as exc:
            if not _about_one_file(exc) or len(by_inbox) == 1:
                raise
            # One peer's inbox is gone or unshared and Drive refuses the listing that
            # names it with the others: each inbox alone, so the others are served.
            files = []
            for inbox, ds in sorted(by_inbox.items(), key=lambda pair: pair[1]):
                try:
                    files.extend(self._list_folders([inbox]))
                except DriveError as alone:
                    if not _about_one_file(alone):
                        raise
                    self.problems.append(peer_problem(ds, alone, "their inbox"))
        waiting: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for item in files:
            stamp = protocol.proposal_timestamp(item.get("name", ""))
            inbox = next((p for p in item.get("parents") or [] if p in by_inbox), None)
            if stamp is None or inbox is None:
                continue
            waiting.setdefault(by_inbox[inbox], []).append((stamp, item))
        for ds, items in sorted(waiting.items()):
            for _, item in sorted(items, key=lambda pair: (pair[0], pair[1]["name"])):
                try:
                    self._take(ds, item)
                except Exception as exc:
                    if isinstance(exc, DriveAuthError):
                        raise
                    self.log.exception("proposal %s of %s", item.get("name"), short_repr(ds))
                    self.problems.append(peer_problem(ds, exc, f"message {item.get('name')}"))
                    break  # later messages of this peer wait: they may build on this one

    def _list_folders(self, folder_ids: list[str]) -> list[dict[str, Any]]:
        """Every file in ``folder_ids``, in as few listings as Drive accepts.

        The number of folders one query names starts at ``protocol.QUERY_PARENTS`` and
        is halved, and remembered, each time Drive refuses a query as too complex.
        """
        while True:
            per_query = self.state.get("query_parents") or protocol.QUERY_PARENTS
            try:
                files = []
                for chunk in protocol.parent_chunks(folder_ids, per_query):
                    parents = " or ".join(f"'{folder}' in parents" for folder in chunk)
                    files.extend(self.drive.list(f"({parents}) and trashed=false"))
                return files
            except DriveError as exc:
                if exc.status != 400 or per_query == 1 or len(folder_ids) <= 1:
                    raise
                self.state["query_parents"] = max(1, min(per_query, len(folder_ids)) // 2)
                self.save()
                self.log.info(
                    "Drive refused a listing of %d folders (%s); %d a query from now on",
                    min(per_query, len(folder_ids)),
                    exc,
                    self.state["query_parents"],
                )

    def _take(self, ds: str, item: dict[str, Any]) -> None:
        record = self.peers_state[ds]
        applied = record.setdefault("applied", [])
        name = item["name"]
        if name not in applied:
            size = int(item.get("size") or 0)
            if size > protocol.MAX_MESSAGE_BYTES:
                self._refuse(ds, name, "the message is too large")
            else:
                self._apply(ds, name, self.drive.download(item["id"]))
            applied.append(name)
            del applied[:-APPLIED_KEPT]
            self.save()
        archive = record.get("archive_id")
        if not archive:
            archive = self._find_or_create(
                protocol.archive_folder_name(ds, self.do_email), self.state["syftbox_id"]
            )
            record["archive_id"] = archive
            self.save()
        self.drive.move(item["id"], add=archive, remove=record["inbox_id"])

    def _refuse(self, ds: str, message: str, why: str, *paths: str) -> None:
        """Refuse (part of) a message; ``paths``: the changes refused, whose jobs are
        rejected with ``why`` (received or not), so the data scientist learns why."""
        self.log.warning("refused %s from %s: %s", message, short_repr(ds), why)
        refusals = self.peers_state[ds].setdefault("refused", [])
        refusals.append({"message": message, "why": why, "at": iso()})
        del refusals[:-50]
        refused_jobs = self.peers_state[ds].setdefault("refused_jobs", {})
        for path in paths:
            ref = self._job_of(ds, path) if isinstance(path, str) and path else None
            if ref is not None:
                refused_jobs.setdefault(f"{ref.protocol}/{ref.name}", why)

    def _job_of(self, ds: str, path: str) -> JobRef | None:
        """The job a datasite path belongs to, when it lies in ``ds``'s own job folders."""
        inbox = self.ctx.datasite.inbox / ds
        try:
            parts = (self.ctx.datasite.path / path).relative_to(inbox).parts
        except ValueError:
            return None
        if len(parts) >= 3 and parts[0] == "v1":
            name, protocol = parts[1], "1"
        elif len(parts) >= 2 and parts[0] != "v1":
            name, protocol = parts[0], "0"
        else:
            return None
        if name in (".", "..") or name.startswith(".") or not _fits_a_file_name(name):
            return None
        return JobRef(ds, name, protocol)

    def _apply(self, ds: str, name: str, data: bytes) -> None:
        cap = self.ctx.config.get("sync.max_job_mb") * 1_000_000
        try:
            proposal = protocol.parse_proposal(data, cap * 2)
        except protocol.MessageError as exc:
            self._refuse(ds, name, str(exc))
            return
        if proposal.sender_email.lower() != ds.lower():
            self._refuse(ds, name, f"sent as {short_repr(proposal.sender_email)} from {ds}'s inbox")
            return
        total = sum(len(c.content or b"") for c in proposal.changes)
        if total > cap or len(proposal.changes) > self.ctx.config.get("sync.max_job_files"):
            why = "more files or bytes than sync.max_job_files/max_job_mb allow"
            self.perms.forget()
            # The jobs it names are rejected, but only paths the data scientist may write
            # name one, and only a few: a message of countless job names makes no records.
            jobs = {
                ref: change.path
                for change in proposal.changes
                if self._why_not(ds, change) is None
                and (ref := self._job_of(ds, change.path)) is not None
            }
            self._refuse(ds, name, why, *list(jobs.values())[:JOBS_PER_REFUSED_MESSAGE])
            return
        self.perms.forget()
        echo = self.peers_state[ds].setdefault("echo", [])
        for change in proposal.changes:
            why = self._why_not(ds, change)
            if why:
                self._refuse(ds, name, f"{short_repr(change.path)}: {why}", change.path)
                continue
            target = self.ctx.datasite.path / change.path
            current = _hash_of(target)
            wanted = None if change.is_deleted else protocol.sha256_hex(change.content or b"")
            if current == wanted:
                pass  # applied already (by a pass that died before archiving)
            elif current != change.old_hash:
                why = f"{short_repr(change.path)}: changed here since the DS saw it"
                self._refuse(ds, name, why, change.path)
                continue
            else:
                try:
                    if change.is_deleted:
                        os.unlink(target)
                    else:
                        atomic_write_bytes(target, change.content or b"")
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                        raise  # this disk's trouble: the message waits in the inbox
                    # What the data scientist asked for cannot be (a folder where a file is).
                    why = f"{short_repr(change.path)}: {exc.strerror}"
                    self._refuse(ds, name, why, change.path)
                    continue
            echo.append(
                {
                    "id": change.id,
                    "path": change.path,
                    "old_hash": change.old_hash,
                    "submitted_timestamp": change.submitted_timestamp,
                }
            )
        self.log.info("applied %s from %s", name, short_repr(ds))

    def _why_not(self, ds: str, change: protocol.Change) -> str | None:
        path = change.path
        if change.datasite_email and change.datasite_email.lower() != self.do_email.lower():
            return f"meant for another datasite ({short_repr(change.datasite_email)})"
        if not path or path.startswith("/") or "\\" in path or "\x00" in path:
            return "not a relative path"
        parts = PurePosixPath(path).parts
        if any(p in ("..", ".", "") for p in path.split("/")):
            return "a path with '..' or empty parts"
        if not all(_fits_a_file_name(part) for part in path.split("/")):
            return "a name this file system cannot hold (not UTF-8, or over 255 bytes)"
        if len(path) > self.ctx.config.get("sync.max_path_length"):
            return "a path longer than sync.max_path_length"
        if len(parts) > self.ctx.config.get("sync.max_job_depth") + 8:
            return "nested deeper than sync.max_job_depth"
        if parts[0] in REFUSED_TOPS or any(path.startswith(p + "/") for p in REFUSED_PREFIXES):
            return "a private or dataset area"
        if REFUSED_PARTS & set(parts) or parts[-1] == PERMISSION_FILE:
            return "a tool folder or a permission file"
        if not change.is_deleted and change.content is None:
            return "no content"
        if (
            not change.is_deleted
            and change.new_hash
            and change.new_hash != protocol.sha256_hex(change.content or b"")
        ):
            return "its new_hash does not match its content"
        if not self.perms.allows(ds, path, "write"):
            return "the permission files do not let them write there"
        if _through_link(self.ctx.datasite.path, parts):
            return "a link on the way"
        return None

    # -- 4. events out ------------------------------------------------------------------
    def _events_out(self, ds: str) -> None:
        record = self.peers_state[ds]
        if not record.get("mirror") or not record.get("outbox_id"):
            return
        if (self.ctx.state.peer(ds) or {}).get("status") != "accepted":
            return
        published: dict[str, list] = record.setdefault("published", {})
        events: list[dict[str, Any]] = []
        stamp = time.time()
        datasite = self.ctx.datasite.path
        for change in record.get("echo", []):
            content = _read(datasite / change["path"])
            events.append(
                protocol.event(
                    change["path"],
                    self.do_email,
                    content,
                    change["old_hash"],
                    stamp,
                    event_id=change["id"],
                    submitted_timestamp=change["submitted_timestamp"],
                )
            )
        seen: dict[str, list] = {}
        for rel, st in _walk(datasite, self.ctx.datasite.review / ds):
            known = published.get(rel)
            if known and known[1:] == [st.st_size, st.st_mtime_ns]:
                seen[rel] = known
                continue
            content = _read(datasite / rel)
            if content is None:
                continue
            digest = protocol.sha256_hex(content)
            entry = [digest, st.st_size, st.st_mtime_ns]
            if known and known[0] == digest:
                seen[rel] = entry
                continue
            if not self.perms.allows(ds, rel, "read"):
                continue
            seen[rel] = entry
            events.append(
                protocol.event(rel, self.do_email, content, known[0] if known else None, stamp)
            )
        for rel in sorted(set(published) - set(seen)):
            if not os.path.lexists(datasite / rel):
                events.append(protocol.event(rel, self.do_email, None, published[rel][0], stamp))
            else:
                seen[rel] = published[rel]  # still there, no longer readable: left as sent
        if events:
            name, data = protocol.events_message(events, stamp)
            self.drive.upload(name, record["outbox_id"], data)
            # The owner's own copy, where the real client's login_do reads its datasite.
            self.drive.upload(name, self._own_log(), data)
            self._rolling_state(events, stamp)
            self.log.info("sent %d change(s) to %s", len(events), short_repr(ds))
            record["outbox_messages"] = record.get("outbox_messages", 0) + 1
        if events or seen != published:
            record["published"] = seen
            record["echo"] = []
            self.save()
        if record.get("outbox_messages", 0) >= COMPACT_AT:
            self._compact(ds, record)

    def _compact(self, ds: str, record: dict[str, Any]) -> None:
        """Merge the outbox's messages into one, as the real client does at 20.

        The merged message is written before the originals are deleted: a data
        scientist who reads in between applies some events twice, with the same
        content; a pass killed in between merges again next time.
        """
        listed = self.drive.list(f"'{record['outbox_id']}' in parents and trashed=false")
        ours = []
        for item in listed:
            stamp = protocol.events_timestamp(item.get("name", ""))
            owners = [o.get("emailAddress", "").lower() for o in item.get("owners") or []]
            if stamp is not None and self.do_email.lower() in owners:
                ours.append((stamp, item["name"], item["id"]))
        if len(ours) >= COMPACT_AT:
            merged: list[dict[str, Any]] = []
            cap = protocol.MAX_MESSAGE_BYTES
            for _, _, file_id in sorted(ours):
                merged.extend(protocol.parse_events(self.drive.download(file_id), cap))
            name, data = protocol.events_message(merged)
            self.drive.upload(name, record["outbox_id"], data)
            for _, _, file_id in ours:
                self.drive.delete(file_id)
            self.log.info("merged %d messages in the outbox of %s", len(ours), short_repr(ds))
        record["outbox_messages"] = 1 if len(ours) >= COMPACT_AT else len(ours)
        self.save()


class DriveSyncError(RuntimeError):
    pass


def _about_one_file(exc: DriveError) -> bool:
    """A refusal about the files a request names (gone, or not shared so), not about Drive."""
    if isinstance(exc, (DriveAuthError, DriveTransientError)):
        return False
    return exc.status == 404 or (exc.status == 403 and exc.reason in FILE_REFUSAL_REASONS)


def peer_problem(ds: str, exc: Exception, what: str = "") -> str:
    """What went wrong with one data scientist's Drive traffic, and what the owner can do."""
    where = f" ({what})" if what else ""
    if isinstance(exc, DriveError) and _about_one_file(exc):
        return (
            f"{ds}{where}: a Drive folder shared between you and {ds} is gone or no longer "
            f"lets you in ({exc}); the other peers are served. Ask {ds} to share their "
            f"syft_datasite folders with you as editor again (their client's add_peer makes "
            f"new ones), or stop serving them: syft-bg peers block {ds}"
        )
    if isinstance(exc, DriveError):
        return f"{ds}{where}: {exc}"
    return f"{ds}{where}: {type(exc).__name__}: {exc}"


def _fits_a_file_name(name: str) -> bool:
    """Whether ``name`` can be one file name here: UTF-8, no NUL, at most 255 bytes."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 0 < len(encoded) <= 255 and b"\x00" not in encoded


def _hash_of(path: Path) -> str | None:
    content = _read(path)
    return None if content is None else protocol.sha256_hex(content)


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def _through_link(datasite: Path, parts: tuple[str, ...]) -> bool:
    path = datasite
    for part in parts:
        path = path / part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return True
        except FileNotFoundError:
            return False
    return False


def _walk(datasite: Path, top: Path):
    """(datasite-relative path, stat) of every regular file under ``top``; links are skipped."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not is_ignored_name(d, True))
        for name in sorted(files):
            if is_ignored_name(name, False):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield os.path.relpath(path, datasite), st


def _served_by(version: str) -> str:
    """The ``drive.generation`` that serves a client of ``version`` ("" for none)."""
    wanted = protocol.major_minor(version)
    return wanted if wanted in protocol.GENERATIONS else ""


def other_generation_notes(ctx: Context) -> dict[str, str]:
    """Data scientists on Drive who run the other syft-client generation: email -> what to do."""
    if ctx.config.get("sync.transport") != "drive":
        return {}
    generation = ctx.config.get("drive.generation")
    notes = {}
    for ds, version in sorted(
        (ctx.state.data.get("drive") or {}).get("other_generation", {}).items()
    ):
        version = protocol.shown_version(str(version))
        wanted = _served_by(version)
        notes[ds] = (
            f"runs syft-client {version}, not served with drive.generation '{generation}' "
            + (
                f"(set drive.generation: '{wanted}' to serve them)"
                if wanted
                else "(no generation of this app serves them)"
            )
        )
    return notes


def reject_refused_jobs(ctx: Context) -> None:
    """A job some of whose files were refused is rejected with the reason, once it is read.

    Runs after the local reading: a job it received (or that waits for files that
    will never come) is rejected, so the data scientist learns why; a job none of
    whose files were taken (a message over the job caps) is recorded and rejected
    all the same, its state.yaml in their review folder; a job already approved,
    running or finished keeps its outcome.
    """
    for ds, record in ((ctx.state.data.get("drive") or {}).get("ds") or {}).items():
        refused = record.get("refused_jobs") or {}
        for key in sorted(refused):
            protocol, _, name = key.partition("/")
            ref = JobRef(ds, name, protocol)
            job = ctx.state.job(ds, name, protocol)
            reason = f"not accepted over Google Drive: {refused[key]}"
            try:
                if job is None:
                    reject_on_receipt(ctx, ref, None, reason)
                elif job["status"] in ("received", "pending"):
                    reject_job(ctx, ref, reason, "on receipt")
            except Exception:
                # One job that cannot be written stops neither the pass nor the others.
                ctx.log("sync.drive").exception("could not reject %s", ref.label)
            refused.pop(key)
