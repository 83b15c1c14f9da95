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
   with the accepted proposals echoed.

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
from syft_bg_app.sync.drive import protocol
from syft_bg_app.sync.drive.permissions import PERMISSION_FILE, Permissions
from syft_bg_app.sync.drive.service import FOLDER_MIME, Drive, DriveAuthError
from syft_bg_app.sync.local import is_blocked

# Paths no data scientist may write, whatever the permission files say.
REFUSED_TOPS = ("private",)
REFUSED_PREFIXES = ("public/syft_datasets",)
REFUSED_PARTS = frozenset(
    {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", "node_modules"}
)
APPLIED_KEPT = 2000
# Messages in a data scientist's outbox at which they are merged into one.
COMPACT_AT = 20


def drive_for(ctx: Context) -> Drive:
    token = resolve_path(ctx.config.get("drive.token"), ctx.home.root)
    return Drive(token, ctx.config.do_email, ctx.config.get("drive.api_endpoint"))


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
        self.peers_state: dict[str, dict[str, Any]] = self.state.setdefault("ds", {})
        self.perms = Permissions(ctx.datasite.path)
        self.problems: list[str] = []

    def save(self) -> None:
        self.ctx.state.save()

    # -- the round ------------------------------------------------------------------
    def sync(self) -> None:
        self._own_folder()
        self._discover()
        for ds in sorted(self.peers_state):
            self._isolated(ds, self._follow_decision)
        self._proposals_in()
        for ds in sorted(self.peers_state):
            self._isolated(ds, self._events_out)
        if self.problems:
            raise DriveSyncError("; ".join(self.problems))

    def _isolated(self, ds: str, step) -> None:
        try:
            step(ds)
        except Exception as exc:
            if isinstance(exc, DriveAuthError):
                raise
            self.log.exception("Drive sync with %s failed", short_repr(ds))
            self.problems.append(f"{ds}: {type(exc).__name__}: {exc}")

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
        """The owner's rolling state: the latest content of every path ever published.

        The real client's ``login_do`` restores the datasite from it (and from the
        log messages newer than it), so the owner's notebook sees the same jobs.
        """
        logged = set(self.state.get("logged_paths", []))
        for item in events:
            (logged.discard if item["is_deleted"] else logged.add)(item["path_in_datasite"])
        self.state["logged_paths"] = sorted(logged)
        datasite = self.ctx.datasite.path
        latest = []
        for rel in sorted(logged):
            content = _read(datasite / rel)
            if content is not None:
                latest.append(protocol.event(rel, self.do_email, content, None, stamp))
        body = {
            "version": 1,
            "timestamp": stamp,
            "email": self.do_email,
            "base_checkpoint_timestamp": 0.0,
            "last_event_timestamp": stamp,
            "events": latest,
        }
        data = protocol.compress(json.dumps(body).encode("utf-8"))
        if self.state.get("rolling_state_id"):
            self.drive.update_content(self.state["rolling_state_id"], data)
            return
        folder = self._find_or_create(
            f"{self.do_email}-{self.version}-rolling-state", self.state["syftbox_id"]
        )
        self.state["rolling_state_id"] = self.drive.upload(
            f"rolling_state_{stamp}.tar.gz", folder, data
        )
        self.save()

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
            record = self.peers_state.setdefault(folder.peer, {})
            if record.get(f"{folder.kind}_id") != item["id"]:
                record[f"{folder.kind}_id"] = item["id"]
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
                peers_served=len(self.peers_state),
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
        elif status in ("rejected", "blocked") and peers_json.get(ds, {}).get("state") != (
            "rejected"
        ):
            peers_json[ds] = {"state": "rejected"}
            self._write_peers_file()
            self.save()

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
        parents = " or ".join(f"'{folder}' in parents" for folder in sorted(by_inbox))
        files = self.drive.list(f"({parents}) and trashed=false")
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
                    self.problems.append(f"{ds}: {item.get('name')}: {exc}")
                    break  # later messages of this peer wait: they may build on this one

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

    def _refuse(self, ds: str, message: str, why: str, path: str | None = None) -> None:
        self.log.warning("refused %s from %s: %s", message, short_repr(ds), why)
        refusals = self.peers_state[ds].setdefault("refused", [])
        refusals.append({"message": message, "why": why, "at": iso()})
        del refusals[:-50]
        ref = self._job_of(ds, path) if path else None
        if ref is not None:
            # Told to the data scientist as the job's outcome once the job is read.
            key = f"{ref.protocol}/{ref.name}"
            self.peers_state[ds].setdefault("refused_jobs", {}).setdefault(key, why)

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
        if name in (".", "..") or name.startswith(".") or "\x00" in name:
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
            self._refuse(ds, name, "more files or bytes than sync.max_job_files/max_job_mb allow")
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
    will never come) is rejected, so the data scientist learns why; a job already
    approved, running or finished keeps its outcome.
    """
    for ds, record in ((ctx.state.data.get("drive") or {}).get("ds") or {}).items():
        refused = record.get("refused_jobs") or {}
        for key in sorted(refused):
            protocol, _, name = key.partition("/")
            ref = JobRef(ds, name, protocol)
            job = ctx.state.job(ds, name, protocol)
            if job is not None and job["status"] in ("received", "pending"):
                reject_job(
                    ctx, ref, f"not accepted over Google Drive: {refused[key]}", "on receipt"
                )
            refused.pop(key)
