"""The shape a loaded checkpoint must have before any step may read it.

``state.json`` is the app's own file, but a disk error, an editor or a copy
from elsewhere can leave it holding anything: another JSON type at the top,
a list where a table of jobs belongs, a status that is a number. Every part
the app reads is checked once, on load, so a damaged checkpoint is refused
with one message instead of failing deep inside a step or a command.

Keys this table does not know are left alone (a newer field written by an
older or newer part of the app is not damage); known keys must have their
type, and the few timestamps the app computes with must parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from syft_bg_app.store.fsutil import short_repr

# datasite.JOB_STATUSES (datasite imports state, so it cannot be imported here).
JOB_STATUSES = frozenset(
    {"received", "pending", "approved", "rejected", "running", "done", "failed"}
)
PEER_STATUSES = frozenset({"requested", "accepted", "rejected", "invalid", "blocked"})


class Kind:
    """One accepted type of a value, with the words used when it is wrong."""

    def __init__(self, name: str, *types: type, optional: bool = False, time: bool = False):
        self.name = name
        self.types = types
        self.optional = optional
        self.time = time
        # Exact types, for the fast test of every value of a large checkpoint
        # (JSON gives no subclasses; a bool is not an int here).
        self.exact = frozenset(types) | ({type(None)} if optional else set())

    def problem(self, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        # bool is an int to Python, never to this file.
        if isinstance(value, bool) and bool not in self.types:
            return f"is {value!r}, not {self.name}"
        if not isinstance(value, self.types):
            return f"is {short_repr(value, 40)}, not {self.name}"
        if self.time:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return f"is {short_repr(value)}, not an ISO 8601 time"
        return None


STR = Kind("text", str)
OPT_STR = Kind("text", str, optional=True)
TIME = Kind("a time", str, time=True)
OPT_TIME = Kind("a time", str, optional=True, time=True)
INT = Kind("a whole number", int)
OPT_INT = Kind("a whole number", int, optional=True)
NUMBER = Kind("a number", int, float)
OPT_NUMBER = Kind("a number", int, float, optional=True)
BOOL = Kind("true or false", bool)
OPT_BOOL = Kind("true or false", bool, optional=True)
DICT = Kind("a mapping", dict)
OPT_DICT = Kind("a mapping", dict, optional=True)
LIST = Kind("a list", list)

TOP = {
    "created_at": OPT_STR,
    "baseline_done": BOOL,
    "jobs": DICT,
    "peers": DICT,
    "scan": DICT,
    "events": LIST,
    "next_event_id": INT,
    "steps": DICT,
    "last_pass": OPT_DICT,
    "warnings": DICT,
    "peer_folders_waiting": LIST,
    "held_jobs": DICT,
    "mail": DICT,
    "replies": DICT,
}
JOB = {
    "protocol": STR,
    "seen_at": OPT_STR,
    "waiting_since": TIME,
    "waiting_reason": OPT_STR,
    "state_mtime_ns": OPT_INT,
    "received_at": OPT_STR,
    "received_hashes": DICT,
    "received_datasets": LIST,
    "never_arrived": LIST,
    "approved_at": OPT_STR,
    "method": OPT_STR,
    "rule": OPT_STR,
    "reason": OPT_STR,
    "run_id": STR,
    "run_dir": STR,
    "started_at": OPT_TIME,
    "timeout": NUMBER,
    "sandbox": OPT_STR,
    "supervisor_pid": OPT_INT,
    "supervisor_start": OPT_INT,
    "slurm_job_id": OPT_STR,
    "start_attempts": INT,
    "return_code": OPT_INT,
    "finished_at": OPT_STR,
    "outputs_note": OPT_STR,
    "reruns": INT,
    "datasets": LIST,
    "auto": DICT,
    "auto_note": OPT_STR,
    "folder_id": Kind("a (device, inode) pair", list, optional=True),
}
# What _fast_fields_ok compares with: a field not listed may be anything, and a
# time field (no type is enough for it) sends the job to the full check.
ANY_TYPE = frozenset({str, int, float, bool, type(None), dict, list})
JOB_EXACT = {key: frozenset() if kind.time else kind.exact for key, kind in JOB.items()}
PEER = {
    "requested_at": OPT_STR,
    "decided_at": OPT_TIME,
    "decided_by": OPT_STR,
    "message": OPT_STR,
    "problem": OPT_STR,
    "reason": OPT_STR,
    "request_mtime_ns": OPT_INT,
    "seen_at": OPT_STR,
    "auto_note": OPT_STR,
    "request_number": INT,
    "before_block": OPT_DICT,
    "asked_again": OPT_BOOL,
}
EVENT = {"id": INT, "kind": STR, "at": OPT_STR, "ds_email": STR, "job": STR}
MAIL = {
    "queue": LIST,
    "seen": DICT,
    "threads": DICT,
    "problem": OPT_DICT,
    "sent_total": INT,
    "last_sent_at": OPT_STR,
    "heartbeat_at": OPT_TIME,
    "set_aside": LIST,
}
# An event whose emails could not be composed, kept aside (mail/enqueue.py).
SET_ASIDE = {"event": DICT, "reason": STR, "at": OPT_STR, "fingerprint": OPT_STR}
MAIL_ENTRY = {
    "id": STR,
    "kind": STR,
    "to": STR,
    "status": STR,
    "thread": OPT_STR,
    "attempts": INT,
    "not_before": OPT_TIME,
    "created_at": STR,
}
THREAD = {"subject": STR, "ids": LIST, "gmail_thread_id": OPT_STR}
STEP = {"ok": BOOL, "error": OPT_STR, "counts": DICT, "at": STR}
LAST_PASS = {
    "finished_at": TIME,
    "seconds": OPT_NUMBER,
    "ok": BOOL,
    "failed_steps": LIST,
    "summary": STR,
}


class ShapeError(ValueError):
    """Where the checkpoint differs from its shape, in words."""


def check_checkpoint(data: Any) -> None:
    """Raise ShapeError naming the first part of ``data`` that is not as the app wrote it."""
    if not isinstance(data, dict):
        raise ShapeError(f"it holds {short_repr(data, 40)}, not a mapping")
    _fields(data, TOP, "")
    _table("jobs", data.get("jobs", {}), _job_table)
    _table("peers", data.get("peers", {}), _peer)
    for key, value in data.get("scan", {}).items():
        _kind(OPT_INT, value, f"scan[{short_repr(key)}]")
    for n, folder in enumerate(data.get("peer_folders_waiting", [])):
        _kind(STR, folder, f"peer_folders_waiting[{n}]")
    for n, event in enumerate(data.get("events", [])):
        where = f"events[{n}]"
        _kind(DICT, event, where)
        _fields(event, EVENT, where, required=("id", "kind"))
    for ds_email, held in data.get("held_jobs", {}).items():
        where = f"held_jobs[{short_repr(ds_email)}]"
        _kind(DICT, held, where)
        _fields(held, {"reason": STR, "jobs": INT, "since": OPT_STR}, where)
    check_pass_record(data, strict=False)
    mail = data.get("mail")
    if mail is not None:
        _check_mail(mail)


def check_pass_record(record: Any, strict: bool = True) -> None:
    """The ``steps`` and ``last_pass`` parts (their own small file, see state.py)."""
    if not isinstance(record, dict):
        raise ShapeError(f"it holds {short_repr(record, 40)}, not a mapping")
    if strict:
        _fields(record, {"steps": DICT, "last_pass": OPT_DICT}, "")
    for step, info in record.get("steps", {}).items():
        where = f"steps[{short_repr(step)}]"
        _kind(DICT, info, where)
        _fields(info, STEP, where, required=("ok", "at"))
    last = record.get("last_pass")
    if last:
        _fields(last, LAST_PASS, "last_pass", required=("finished_at", "summary"))
        for n, step in enumerate(last.get("failed_steps", [])):
            _kind(STR, step, f"last_pass.failed_steps[{n}]")


def _check_mail(mail: dict[str, Any]) -> None:
    _fields(mail, MAIL, "mail")
    for n, entry in enumerate(mail.get("queue", [])):
        where = f"mail.queue[{n}]"
        _kind(DICT, entry, where)
        _fields(entry, MAIL_ENTRY, where, required=("id", "kind", "to", "status", "created_at"))
    for name, thread in mail.get("threads", {}).items():
        where = f"mail.threads[{short_repr(name)}]"
        _kind(DICT, thread, where)
        _fields(thread, THREAD, where)
    for n, record in enumerate(mail.get("set_aside", [])):
        where = f"mail.set_aside[{n}]"
        _kind(DICT, record, where)
        _fields(record, SET_ASIDE, where, required=("event", "reason"))
        _fields(record["event"], EVENT, f"{where}.event", required=("id", "kind"))
    problem = mail.get("problem")
    if problem is not None:
        _fields(problem, {"kind": STR, "error": STR, "advice": OPT_STR}, "mail.problem")


def _table(name: str, table: Mapping[str, Any], check_one: Any) -> None:
    for key, value in table.items():
        check_one(f"{name}[{short_repr(key)}]", value)


def _job_table(where: str, jobs: Any) -> None:
    _kind(DICT, jobs, where)
    # The one part that grows with history: a finished job is usually just its
    # status and protocol, so that case costs a few operations and nothing more.
    for name, record in jobs.items():
        if type(record) is dict:
            status = record.get("status")
            if (
                type(status) is str
                and status in JOB_STATUSES
                and type(record.get("protocol")) is str
                and (len(record) == 2 or _fast_fields_ok(record))
                and _folder_id_ok(record.get("folder_id"))
            ):
                continue
        inner = f"{where}[{short_repr(name)}]"
        _kind(DICT, record, inner)
        _status(record, JOB_STATUSES, inner)
        _fields(record, JOB, inner, required=("protocol",))
        if not _folder_id_ok(record.get("folder_id")):
            raise ShapeError(
                f"{inner}.folder_id is {short_repr(record['folder_id'], 40)}, "
                "not a (device, inode) pair"
            )


def _folder_id_ok(value: Any) -> bool:
    """A job folder's identity as sync recorded it: [device, inode], or none yet."""
    return value is None or (
        type(value) is list and len(value) == 2 and all(type(n) is int for n in value)
    )


def _fast_fields_ok(record: dict[str, Any]) -> bool:
    """True when every known field of a job has its type; a job with a time to
    parse (only unfinished ones have one) is left to ``_fields``."""
    for key, value in record.items():
        exact = JOB_EXACT.get(key, ANY_TYPE)
        if type(value) not in exact:
            return False
    return True


def _peer(where: str, record: Any) -> None:
    _kind(DICT, record, where)
    _status(record, PEER_STATUSES, where)
    _fields(record, PEER, where)
    if record.get("before_block") is not None:
        _status(record["before_block"], PEER_STATUSES, f"{where}.before_block")


def _status(record: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    if "status" not in record:
        raise ShapeError(f"{where} has no status")
    status = record["status"]
    if not isinstance(status, str) or status not in allowed:
        raise ShapeError(
            f"{where}.status is {short_repr(status)}, not one of {', '.join(sorted(allowed))}"
        )


def _fields(
    record: dict[str, Any], kinds: Mapping[str, Kind], where: str, required: tuple[str, ...] = ()
) -> None:
    for key in required:
        if key not in record:
            raise ShapeError(f"{where or 'the top level'} has no {key}")
    for key, kind in kinds.items():
        if key in record:
            _kind(kind, record[key], f"{where}.{key}" if where else key)


def _kind(kind: Kind, value: Any, where: str) -> None:
    problem = kind.problem(value)
    if problem:
        raise ShapeError(f"{where} {problem}")
