"""The checkpointed state: everything the next pass needs, in one JSON file.

Jobs are keyed by (ds_email, protocol, job_name), never by name alone: a data
scientist's ``inbox/<ds>/<job>`` (protocol 0) and ``inbox/<ds>/v1/<job>`` are
two jobs. The file carries a schema number; older schemas are migrated on load.
Saving is atomic, so a pass killed at any instant leaves the previous or the
new checkpoint, both loadable.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso, parse_iso
from syft_bg_app.errors import SyftBgError
from syft_bg_app.job_transition import KEEPS
from syft_bg_app.store.fsutil import atomic_write_json, short_repr
from syft_bg_app.store.state_shape import ShapeError, check_checkpoint, check_pass_record

SCHEMA_VERSION = 3
CURRENT_PROTOCOL = "1"
TERMINAL_STATUSES = frozenset({"rejected", "done", "failed"})
ACTIVE_STATUSES = frozenset({"received", "pending", "approved", "running"})
SYNC_ONLY_KEYS = frozenset(
    {
        "seen_at",
        "waiting_since",
        "waiting_reason",
        "state_mtime_ns",
        "received_at",
        "received_hashes",
        "received_datasets",
        "folder_id",
    }
)


class StateError(SyftBgError):
    pass


def damaged(path: Path, what: str) -> StateError:
    """The one message for a checkpoint that cannot be used, whatever is wrong with it."""
    return StateError(
        f"{path}: the checkpoint is damaged: {what}. Nothing was changed. Move it aside "
        f"(mv {path} {path}.damaged) and run again: the next pass starts over from what "
        f"the datasite holds, without emailing about it; the datasite itself is not affected"
    )


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    # Schema 1 keyed jobs by "ds_email/job_name" strings; 2 nests them per DS.
    nested: dict[str, dict[str, Any]] = {}
    for key, record in data.get("jobs", {}).items():
        ds_email, _, job_name = key.partition("/")
        nested.setdefault(ds_email, {})[job_name] = record
    data["jobs"] = nested
    return data


def job_key(job_name: str, protocol: str) -> str:
    """The checkpoint key of a job under its data scientist.

    Current-protocol jobs keep their bare name (as in schema 2); others are
    ``v<protocol>/<name>``. Job names are folder names, so never contain "/".
    """
    return job_name if protocol == CURRENT_PROTOCOL else f"v{protocol}/{job_name}"


def _migrate_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
    # Schema 2 keyed jobs by name under their data scientist, so a v0 and a v1
    # job of the same name shared one record and the second was never received.
    # Each record moves to the key of its own protocol; the folder listings
    # are forgotten, so the next pass lists every inbox again and receives
    # the job that was left out.
    for ds_email, jobs in data.get("jobs", {}).items():
        moved = {}
        for name, record in jobs.items():
            protocol = str(record.get("protocol", CURRENT_PROTOCOL))
            moved[job_key(name, protocol)] = record
        data["jobs"][ds_email] = moved
    data["scan"] = {}
    return data


MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def empty_state() -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "created_at": iso(),
        "baseline_done": False,
        "jobs": {},
        "peers": {},
        "scan": {},
        "events": [],
        "next_event_id": 1,
        "steps": {},
        "last_pass": None,
        "warnings": {},
        "peer_folders_waiting": [],
        "held_jobs": {},
    }


# What each pass records about itself lives in a small file of its own, so that
# an idle pass rewrites that file and never the checkpoint, however large.
PASS_RECORD_KEYS = ("steps", "last_pass")


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    checkpoint = {k: v for k, v in data.items() if k not in PASS_RECORD_KEYS}
    return checkpoint, {k: data[k] for k in PASS_RECORD_KEYS}


def _fingerprint(data: Any) -> bytes:
    """Bytes that are equal exactly when ``data`` is equal.

    Marshal version 2 writes no back-references, so two equal values give the
    same bytes whether or not they share objects (a string one step copied
    into two records would otherwise make an unchanged checkpoint look changed).
    """
    return marshal.dumps(data, 2)


class State:
    """The checkpoint in memory, with the few operations the steps share."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data = data
        self.path = path
        self.pass_record_path = path.with_name("last_pass.json")
        # marshal is a fast C serializer: comparing its bytes tells whether a
        # step changed anything, so an idle pass writes nothing it need not.
        checkpoint, record = _split(data)
        self._saved = _fingerprint(checkpoint)
        self._saved_record = _fingerprint(record)

    @classmethod
    def load(cls, path: Path) -> State:
        state = cls._load_checkpoint(path)
        try:
            record = json.loads(state.pass_record_path.read_bytes())
            check_pass_record(record)
        except (OSError, ValueError):
            # No pass recorded yet, or a record torn or damaged: it only says how
            # the last pass went, and the next pass writes it whole again.
            return state
        state.data.update({k: record[k] for k in PASS_RECORD_KEYS if k in record})
        state._note_idle_check()
        state._saved_record = _fingerprint(_split(state.data)[1])
        return state

    def _note_idle_check(self) -> None:
        """A pass that ended at the idle check is the last pass; the full one is named in it."""
        from syft_bg_app.schedule.idle import read_last_check

        last = self.data.get("last_pass")
        checked = read_last_check(self.path.parent)
        if not last or not checked:
            return
        try:
            if parse_iso(checked[0]) <= parse_iso(last["finished_at"]):
                return
        except (ValueError, KeyError, TypeError):
            return
        full_at = last.get("full_pass_at", last["finished_at"])
        full_summary = last.get("full_pass_summary", last.get("summary", ""))
        self.data["last_pass"] = {
            **last,
            "finished_at": checked[0],
            "seconds": checked[1],
            "summary": f"idle: nothing changed since the full pass at {full_at} ({full_summary})",
            "full_pass_at": full_at,
            "full_pass_summary": full_summary,
        }

    @classmethod
    def _load_checkpoint(cls, path: Path) -> State:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(empty_state(), path)
        except IsADirectoryError:
            raise damaged(path, "it is a folder, not a file") from None
        except OSError as exc:
            raise StateError(
                f"{path}: the checkpoint cannot be read ({exc.strerror or exc}); "
                f"nothing was changed"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise damaged(path, f"it is not UTF-8 text (byte {exc.start})") from None
        except ValueError as exc:
            raise damaged(path, f"it is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise damaged(path, f"it holds a {type(data).__name__}, not a mapping")
        version = data.get("schema")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise damaged(path, f"its schema number is {short_repr(version)}")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{path}: checkpoint schema {version!r} is newer than this app "
                f"understands ({SCHEMA_VERSION}); update the app"
            )
        try:
            while version < SCHEMA_VERSION:
                data = MIGRATIONS[version](data)
                version += 1
                data["schema"] = version
            check_checkpoint(data)
        except (ShapeError, AttributeError, TypeError, ValueError) as exc:
            raise damaged(path, str(exc)) from None
        base = empty_state()
        base.update(data)
        return cls(base, path)

    @property
    def is_fresh(self) -> bool:
        return not self.data["baseline_done"]

    def save(self) -> bool:
        """Write what changed (checkpoint, pass record); True when the checkpoint was."""
        checkpoint, record = _split(self.data)
        current = _fingerprint(checkpoint)
        written = current != self._saved
        if written:
            self._compact_finished_jobs()
            current = _fingerprint(checkpoint)
            atomic_write_json(self.path, checkpoint, mode=0o600, compact=True)
            self._saved = current
        current_record = _fingerprint(record)
        if current_record != self._saved_record:
            atomic_write_json(self.pass_record_path, record, mode=0o600, compact=True)
            self._saved_record = current_record
        return written

    def _compact_finished_jobs(self) -> None:
        # Finished jobs stay only so they are never received twice; what sync
        # kept while they were unfinished is dropped (state.yaml has the details).
        for _, _, record in self.iter_jobs():
            if record["status"] in TERMINAL_STATUSES:
                for key in SYNC_ONLY_KEYS.intersection(record) - KEEPS[record["status"]]:
                    del record[key]

    # -- jobs ---------------------------------------------------------------
    def job(
        self, ds_email: str, job_name: str, protocol: str = CURRENT_PROTOCOL
    ) -> dict[str, Any] | None:
        return self.data["jobs"].get(ds_email, {}).get(job_key(job_name, protocol))

    def set_job(
        self, ds_email: str, job_name: str, record: dict[str, Any], protocol: str | None = None
    ) -> None:
        """Store a job's record; its protocol is ``protocol`` or the record's own."""
        protocol = protocol or record.get("protocol") or CURRENT_PROTOCOL
        self.data["jobs"].setdefault(ds_email, {})[job_key(job_name, protocol)] = record

    def iter_jobs(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(ds_email, job_name, record); the record's ``protocol`` tells v0 from v1."""
        for ds_email, jobs in self.data["jobs"].items():
            for key, record in jobs.items():
                yield ds_email, key.rpartition("/")[2], record

    def active_jobs(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [j for j in self.iter_jobs() if j[2]["status"] in ACTIVE_STATUSES]

    # -- peers ----------------------------------------------------------------
    def peer(self, email: str) -> dict[str, Any] | None:
        return self.data["peers"].get(email)

    def set_peer(self, email: str, record: dict[str, Any]) -> None:
        self.data["peers"][email] = record

    # -- events (consumed by the notify step) ---------------------------------
    def add_event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"id": self.data["next_event_id"], "kind": kind, "at": iso(), **fields}
        self.data["next_event_id"] += 1
        self.data["events"].append(event)
        return event

    # -- step bookkeeping --------------------------------------------------------
    def record_step(self, step: str, ok: bool, error: str | None, counts: dict) -> None:
        self.data["steps"][step] = {
            "at": iso(),
            "ok": ok,
            "error": error,
            "counts": counts,
        }
