"""A job's code as the data owner's email shows it: ``run.sh`` first, then
``code/**``, text inline within the caps, binary files listed, every path reached
without following a link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from syft_bg_app.context import Context
from syft_bg_app.datasite.jobfiles import UnsafeFileError, collect, open_regular, sha256_bytes
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.views.render import has_bidi_controls

# Bytes looked at to tell text from binary before reading a file whole.
SNIFF_BYTES = 8192
# Files (and refused entries) an email lists by name; the rest are counted, and
# ``syft-bg jobs show`` lists them all. Keeps a job of 100,000 files from making
# a 40 MB email.
EMAIL_FILES_LISTED = 50


def kib(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size / 1024:.1f} KB"


def read_submission(ctx: Context, ref: JobRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.yaml metadata, ``collect_code``) of a job's submission folder,
    reached without following a link at any level."""
    file_cap = ctx.config.get("notify.code_file_cap")
    total_cap = ctx.config.get("notify.code_total_cap")
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError:
        return {}, collect_code(None, file_cap, total_cap)
    try:
        metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
        return metadata or {}, collect_code(job_fd, file_cap, total_cap)
    finally:
        os.close(job_fd)


def collect_code(job_fd: int | None, file_cap: int, total_cap: int) -> dict[str, Any]:
    """``run.sh`` and ``code/**`` of a job for the DO's email, within the caps.

    ``job_fd`` is the job folder, opened without following links (None: it is gone).

    Text files are shown up to ``file_cap`` bytes each and ``total_cap`` bytes
    altogether; binary files are listed, never inlined; once the total is
    reached the remaining files are listed by name and size. At most
    ``EMAIL_FILES_LISTED`` files and refused entries are listed; ``more_files``
    and ``more_problems`` count the others. ``bidi_files`` names the files whose
    text holds bidirectional controls (shown marked, e.g. ``<U+202E>``).
    """
    result: dict[str, Any] = {
        "available": job_fd is not None,
        "files": [],
        "problems": [],
        "file_cap": kib(file_cap),
        "total_cap": kib(total_cap),
        "shown_bytes": 0,
        "total_bytes": 0,
        "file_count": 0,
        "more_files": 0,
        "more_problems": 0,
        "bidi_files": [],
    }
    if not result["available"]:
        return result
    found = collect(Path("."), dir_fd=job_fd)
    problems = found.all_problems
    result["problems"] = problems[:EMAIL_FILES_LISTED]
    result["more_problems"] = max(0, len(problems) - EMAIL_FILES_LISTED)
    paths = sorted(found.files, key=lambda rel: (rel != "run.sh", rel))
    result["file_count"] = len(paths)
    result["total_bytes"] = sum(st.st_size for st in found.files.values())
    result["more_files"] = max(0, len(paths) - EMAIL_FILES_LISTED)
    budget = total_cap
    for rel in paths[:EMAIL_FILES_LISTED]:
        size = found.files[rel].st_size
        entry: dict[str, Any] = {
            "path": rel,
            "size": kib(size),
            "binary": False,
            "text": None,
            "truncated": False,
            "omitted": False,
            "shown": None,
            "sha256": None,
        }
        result["files"].append(entry)
        try:
            # collect() looked with lstat; the file may have been swapped since
            # (for a symlink, or a fifo that would block): open it safely.
            fd = open_regular(job_fd, rel)
            with os.fdopen(fd, "rb") as handle:
                head = handle.read(min(size, max(file_cap, SNIFF_BYTES)))
                # Whole when the read reached the end: what the email shows is all there is.
                whole = len(head) == size and not handle.read(1)
        except UnsafeFileError as exc:
            result["problems"].append(f"{rel}: not shown ({exc})")
            entry["omitted"] = True
            continue
        except OSError as exc:
            result["problems"].append(f"{rel}: cannot read ({exc.strerror})")
            entry["omitted"] = True
            continue
        if b"\0" in head[:SNIFF_BYTES] or _decode(head, complete=len(head) >= size) is None:
            entry["binary"] = True
            continue
        if budget <= 0:
            entry["omitted"] = True
            continue
        take = min(size, file_cap, budget)
        text = _decode(head[:take], complete=take >= size)
        if text is None:
            entry["binary"] = True
            continue
        entry["text"] = text
        if has_bidi_controls(text):
            result["bidi_files"].append(rel)
        entry["truncated"] = take < size
        if whole and not entry["truncated"]:
            entry["sha256"] = sha256_bytes(head)
        entry["shown"] = kib(take)
        budget -= take
        result["shown_bytes"] += take
    for entry in result["files"]:
        entry["note"] = file_note(entry)
    result["shown_bytes"] = kib(result["shown_bytes"])
    result["total_bytes"] = kib(result["total_bytes"])
    return result


def file_note(entry: dict[str, Any]) -> str:
    if entry["binary"]:
        return "binary, not shown"
    if entry["omitted"]:
        return "not shown: this email's limit is reached"
    if entry["truncated"]:
        return f"first {entry['shown']} shown"
    return "shown below"


def _decode(data: bytes, complete: bool) -> str | None:
    """UTF-8 text, or None for binary. A cut at the end may split one character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if complete or exc.start < len(data) - 3:
            return None
        try:
            return data[: exc.start].decode("utf-8")
        except UnicodeDecodeError:
            return None
