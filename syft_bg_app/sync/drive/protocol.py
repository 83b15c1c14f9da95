"""Names and message formats of the syft-client Drive protocol (0.1.x and 0.10.x).

A message is a gzip tar with one member, ``proposed_file_changes.json``, holding
the JSON the clients' pydantic models write; file contents travel as text, or as
base64 when ``content_type`` is ``binary``. Nothing here is ever unpickled.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import math
import re
import tarfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

P2P_PREFIX = "syft_datasite"
PEERS_FILE = "SYFT_peers.json"
VERSION_FILE = "SYFT_version.json"
SYFTBOX_FOLDER = "SyftBox"
MESSAGE_MEMBER = "proposed_file_changes.json"
PROPOSAL_PREFIX = "msgv2_"
EVENTS_PREFIX = "syfteventsmessagev3_"
EXTENSION = ".tar.gz"
# The client versions each generation writes; peers compare major.minor only.
GENERATIONS = {"0.10": "0.10.0", "0.1": "0.1.117"}
MIN_SUPPORTED = {"0.10": "0.10.0", "0.1": "0.1.93"}
PROTOCOL_VERSION = "1.0.0"
VERSION_START_RE = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})(?:\.|\Z)")
VERSION_TEXT_RE = re.compile(r"[0-9A-Za-z.+_-]{1,32}")
# A proposal message larger than this is refused before it is opened.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024


# Drive documents no bound on a query's size but refuses one naming too many folders
# ("The query is too complex."): a listing of many folders names at most this many
# per query to begin with, fewer once Drive has refused.
QUERY_PARENTS = 100


def parent_chunks(folder_ids: list[str], per_query: int = QUERY_PARENTS) -> list[list[str]]:
    """``folder_ids`` in runs of at most ``per_query``, one ``'a' in parents or ...`` query each."""
    per_query = max(1, per_query)
    return [folder_ids[i : i + per_query] for i in range(0, len(folder_ids), per_query)]


class MessageError(ValueError):
    """A message that does not read as the protocol's format."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def major_minor(version: str) -> str | None:
    """``"0.1"`` of ``"0.1.117"``; None for anything that does not start with two
    numbers (the version comes from a folder name someone else chose: ``str.isdigit``
    takes "²" and ``int`` refuses 5,000 digits)."""
    found = VERSION_START_RE.match(version)
    return f"{int(found[1])}.{int(found[2])}" if found else None


def shown_version(version: str) -> str:
    """A version read from a folder name someone else chose, as short plain text: its
    first characters that a version is made of, and "…" where more was cut."""
    found = VERSION_TEXT_RE.match(version)
    text = found[0] if found else ""
    return (text or "?") + ("…" if len(text) < len(version) else "")


@dataclass(frozen=True)
class P2PFolder:
    """``syft_datasite#<version>#<datasite>#<inbox|outbox>#<peer>``."""

    version: str
    datasite: str
    kind: str
    peer: str

    @property
    def name(self) -> str:
        return f"{P2P_PREFIX}#{self.version}#{self.datasite}#{self.kind}#{self.peer}"

    @classmethod
    def parse(cls, name: str) -> P2PFolder | None:
        parts = name.split("#")
        if len(parts) != 5 or parts[0] != P2P_PREFIX or parts[3] not in ("inbox", "outbox"):
            return None
        return cls(parts[1], parts[2], parts[3], parts[4])


def archive_folder_name(ds_email: str, do_email: str) -> str:
    return f"syft_{ds_email}_to_{do_email}_archive"


def version_info(generation: str) -> dict[str, str]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "syft_client_version": GENERATIONS[generation],
        "min_supported_syft_client_version": MIN_SUPPORTED[generation],
        "protocol_version": PROTOCOL_VERSION,
        "min_supported_protocol_version": PROTOCOL_VERSION,
        "updated_at": now,
    }


_EVENTS_NAME = re.compile(r"^syfteventsmessagev3_(\d+(?:\.\d+)?)_[0-9a-fA-F-]{36}\.tar\.gz$")


def events_timestamp(name: str) -> float | None:
    """The time in a ``syfteventsmessagev3_<time>_<uuid>.tar.gz`` name, or None."""
    match = _EVENTS_NAME.match(name)
    return float(match.group(1)) if match else None


def parse_events(data: bytes, cap: int) -> list[dict[str, Any]]:
    """The events of a ``syfteventsmessagev3`` message, as they were serialized."""
    body = _json_body(data, cap)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise MessageError("the message has no list of events")
    return [e for e in body["events"] if isinstance(e, dict)]


_PROPOSAL_NAME = re.compile(r"^msgv2_(\d+(?:\.\d+)?)_([^_/]+)\.tar\.gz$")


def proposal_timestamp(name: str) -> float | None:
    """The submission time in a ``msgv2_<time>_<uid>.tar.gz`` name; None if it does not parse."""
    match = _PROPOSAL_NAME.match(name)
    return float(match.group(1)) if match else None


def compress(payload: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(MESSAGE_MEMBER)
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


# Members of a message archive looked at for its JSON (the clients write one).
MESSAGE_MEMBERS_READ = 8


def uncompress(data: bytes, cap: int) -> bytes:
    """The JSON member of a message, a regular file under ``cap``.

    The archive is read as a stream, member by member, and given up after
    ``MESSAGE_MEMBERS_READ`` members or a member over ``cap``: a message of a
    million empty members, or of one huge one, costs no more than a small one.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
            for index, member in enumerate(tar):
                if index >= MESSAGE_MEMBERS_READ or member.size > cap:
                    break
                if member.name != MESSAGE_MEMBER:
                    continue
                if not member.isfile():
                    break
                handle = tar.extractfile(member)
                assert handle is not None
                return handle.read(cap + 1)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise MessageError(f"not a message archive ({exc})") from None
    raise MessageError(
        f"no {MESSAGE_MEMBER} of at most {cap} bytes among its first {MESSAGE_MEMBERS_READ} members"
    )


@dataclass
class Change:
    """One proposed file change, its content as raw bytes."""

    id: str
    path: str
    content: bytes | None
    old_hash: str | None
    new_hash: str | None
    is_deleted: bool
    submitted_timestamp: float
    datasite_email: str


@dataclass
class Proposal:
    id: str
    sender_email: str
    changes: list[Change]


def _content_bytes(raw: dict[str, Any]) -> bytes | None:
    content = raw.get("content")
    if content is None:
        return None
    if not isinstance(content, str):
        raise MessageError("content is not a string")
    if raw.get("content_type") == "binary":
        try:
            return base64.b64decode(content, validate=True)
        except ValueError:
            raise MessageError("binary content is not base64") from None
    return content.encode("utf-8", "surrogatepass")


def _json_body(data: bytes, cap: int) -> Any:
    """The JSON inside a compressed message, at most ``cap`` bytes unpacked."""
    try:
        return json.loads(uncompress(data, cap))
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, MessageError):
            raise
        raise MessageError(f"the message is not JSON ({exc})") from None


def _timestamp(value: Any) -> float:
    """A message's timestamp as a float: 0.0 for anything else (a huge integer too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    try:
        stamp = float(value)
    except OverflowError:
        return 0.0
    return stamp if math.isfinite(stamp) else 0.0


def parse_proposal(data: bytes, cap: int) -> Proposal:
    body = _json_body(data, cap)
    if not isinstance(body, dict) or not isinstance(body.get("proposed_file_changes"), list):
        raise MessageError("the message has no list of proposed_file_changes")
    sender = body.get("sender_email")
    if not isinstance(sender, str):
        raise MessageError("the message names no sender_email")
    changes = []
    for raw in body["proposed_file_changes"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("path_in_datasite"), str):
            raise MessageError("a change has no path_in_datasite")
        deleted = bool(raw.get("is_deleted"))
        content = None if deleted else _content_bytes(raw)
        for key in ("old_hash", "new_hash"):
            if raw.get(key) is not None and not isinstance(raw.get(key), str):
                raise MessageError(f"{key} is not text")
        stamp = raw.get("submitted_timestamp")
        changes.append(
            Change(
                id=str(raw.get("id") or uuid.uuid4()),
                path=raw["path_in_datasite"],
                content=content,
                old_hash=raw.get("old_hash"),
                new_hash=raw.get("new_hash"),
                is_deleted=deleted,
                submitted_timestamp=_timestamp(stamp),
                datasite_email=str(raw.get("datasite_email") or ""),
            )
        )
    return Proposal(str(body.get("id") or ""), sender, changes)


def event(
    path: str,
    datasite_email: str,
    content: bytes | None,
    old_hash: str | None,
    timestamp: float,
    event_id: str | None = None,
    submitted_timestamp: float | None = None,
) -> dict[str, Any]:
    """One FileChangeEvent as the clients serialize it (``content`` None: a deletion)."""
    if content is None:
        text, kind, new_hash = None, None, None
    else:
        new_hash = sha256_hex(content)
        try:
            text, kind = content.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, kind = base64.b64encode(content).decode("ascii"), "binary"
    return {
        "id": event_id or str(uuid.uuid4()),
        "path_in_datasite": path,
        "datasite_email": datasite_email,
        "content": text,
        "old_hash": old_hash,
        "new_hash": new_hash,
        "is_deleted": content is None,
        "submitted_timestamp": timestamp if submitted_timestamp is None else submitted_timestamp,
        "timestamp": timestamp,
        "content_type": kind,
    }


def events_message(
    events: list[dict[str, Any]], timestamp: float | None = None
) -> tuple[str, bytes]:
    """(file name, bytes) of a ``syfteventsmessagev3`` message holding ``events``."""
    stamp = time.time() if timestamp is None else timestamp
    message_id = str(uuid.uuid4())
    body = {
        "events": events,
        "message_filepath": {"id": message_id, "timestamp": stamp, "extension": EXTENSION},
    }
    name = f"{EVENTS_PREFIX}{stamp}_{message_id}{EXTENSION}"
    return name, compress(json.dumps(body).encode("utf-8"))


# -- the owner's own restore data: rolling state and checkpoints ---------------------------
# Kept as the real client keeps them (syft_client.sync.checkpoints): the rolling state
# holds the latest event of each path since the last checkpoint; at 50 paths it
# becomes an incremental checkpoint, and 4 incremental checkpoints are merged into
# one full checkpoint.
CHECKPOINT_AT = 50
COMPACT_CHECKPOINTS_AT = 4
ROLLING_STATE_PREFIX = "rolling_state_"
INCREMENTAL_PREFIX = "incremental_checkpoint_"
FULL_PREFIX = "checkpoint_"
CHECKPOINT_VERSION = 1


def rolling_state(
    email: str, base: float, last: float | None, events: list[dict[str, Any]]
) -> bytes:
    body = {
        "version": CHECKPOINT_VERSION,
        "timestamp": time.time(),
        "email": email,
        "base_checkpoint_timestamp": base,
        "last_event_timestamp": last,
        "events": events,
    }
    return compress(json.dumps(body).encode("utf-8"))


def incremental_checkpoint(
    email: str, sequence: int, events: list[dict[str, Any]]
) -> tuple[str, bytes]:
    stamp = time.time()
    body = {
        "version": CHECKPOINT_VERSION,
        "timestamp": stamp,
        "email": email,
        "sequence_number": sequence,
        "events": events,
    }
    return f"{INCREMENTAL_PREFIX}{sequence}_{stamp}{EXTENSION}", compress(
        json.dumps(body).encode("utf-8")
    )


def full_checkpoint(
    email: str, files: list[dict[str, str]], last: float | None
) -> tuple[str, bytes]:
    stamp = time.time()
    body = {
        "version": CHECKPOINT_VERSION,
        "timestamp": stamp,
        "email": email,
        "last_event_timestamp": last,
        "files": files,
    }
    return f"{FULL_PREFIX}{stamp}{EXTENSION}", compress(json.dumps(body).encode("utf-8"))


def incremental_sequence(name: str) -> int | None:
    """The sequence number in ``incremental_checkpoint_<n>_<time>.tar.gz``, or None."""
    match = re.match(r"^incremental_checkpoint_(\d+)_(\d+(?:\.\d+)?)\.tar\.gz$", name)
    return int(match.group(1)) if match else None


def full_checkpoint_timestamp(name: str) -> float | None:
    """The time in ``checkpoint_<time>.tar.gz``, or None."""
    match = re.match(r"^checkpoint_(\d+(?:\.\d+)?)\.tar\.gz$", name)
    return float(match.group(1)) if match else None


def parse_checkpoint(data: bytes, cap: int) -> dict[str, Any]:
    """A checkpoint's JSON: ``files`` (full) or ``events`` (incremental), as lists."""
    body = _json_body(data, cap)
    if not isinstance(body, dict):
        raise MessageError("the checkpoint is not a JSON object")
    for key in ("files", "events"):
        if not isinstance(body.get(key, []), list):
            raise MessageError(f"the checkpoint's {key} is not a list")
    return body
