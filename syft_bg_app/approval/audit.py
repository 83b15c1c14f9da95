"""The audit log: one JSON line per decision, appended and fsynced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso
from syft_bg_app.store.fsutil import append_line


def record(path: Path, subject: str, decision: str, why: str, **details: Any) -> dict:
    """Append one decision: who or what (``subject``), the outcome and why."""
    entry = {
        "at": iso(),
        "subject": subject,
        "decision": decision,
        "why": why,
        **details,
    }
    append_line(path, json.dumps(entry, sort_keys=True))
    return entry


def read(path: Path, subject: str | None = None) -> list[dict]:
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-append
        if not isinstance(entry, dict):
            continue  # a damaged line: every line the app writes is a mapping
        if subject is None or entry.get("subject") == subject:
            entries.append(entry)
    return entries
