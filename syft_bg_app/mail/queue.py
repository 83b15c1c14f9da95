"""The mail queue in the checkpoint, and the message files it points to.

``state.data["mail"]`` holds the queue (one entry per email, in order), the
identities of every email ever queued (``seen``: one email per event, entity
and recipient, ever), the DO's threads (Message-IDs sent so far and the Gmail
threadId), the transport's last problem and a few counters. Events whose
emails could not be composed wait in ``set_aside`` with the reason. The full
RFC 5322 bytes of a queued email live in ``<app home>/mail/queue/<id>.eml`` so the
checkpoint stays small; they are written before the entry that points to them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from syft_bg_app.store.home import AppHome
from syft_bg_app.store.state import State

DEFAULTS: dict[str, Any] = {
    "queue": [],
    "seen": {},
    "threads": {},
    "problem": None,
    "sent_total": 0,
    "last_sent_at": None,
    "heartbeat_at": None,
    "set_aside": [],
}


def mail_state(state: State) -> dict[str, Any]:
    """The mail part of the checkpoint, created with its defaults on first use."""
    mail = state.data.setdefault("mail", {})
    for key, value in DEFAULTS.items():
        if key not in mail:
            mail[key] = type(value)() if isinstance(value, (list, dict)) else value
    return mail


def peek(state: State) -> dict[str, Any]:
    """The mail part for reading only (nothing is added to the checkpoint)."""
    return {**DEFAULTS, **state.data.get("mail", {})}


def email_id(key: str) -> str:
    """Stable id of the email with identity ``key`` (also its file name and Message-ID).

    A key may hold a folder name that was not UTF-8 (os.fsdecode keeps its bytes
    as surrogates): those are hashed too, always the same way.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def queue_dir(home: AppHome) -> Path:
    return home.root / "mail" / "queue"


def message_file(home: AppHome, entry_id: str) -> Path:
    return queue_dir(home) / f"{entry_id}.eml"


def remove_orphans(home: AppHome, mail: dict[str, Any]) -> int:
    """Delete message files no queue entry points to (a pass stopped between the
    file and the checkpoint); the event that made them is still queued and
    composes the same file again."""
    folder = queue_dir(home)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    wanted = {f"{entry['id']}.eml" for entry in mail["queue"]}
    removed = 0
    for name in names:
        if name.endswith(".eml") and name not in wanted:
            try:
                os.unlink(folder / name)
                removed += 1
            except FileNotFoundError:
                pass
    return removed
