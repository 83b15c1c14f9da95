"""What a submitted job folder contains, and whether it is complete and well-formed.

A folder that is still arriving (sync clients deliver file by file) is
*incomplete*: the caller waits. A folder that can never become valid (an extra
top-level entry, a symlink, a config.yaml of the wrong shape) is *invalid*.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.datasite.jobfiles import DEFAULT_LIMITS, Limits, collect
from syft_bg_app.datasite.linksafe import FILE_FLAGS, UnsafePathError, lstat_at, open_dir
from syft_bg_app.store.fsutil import (
    PERMISSION_FILE,
    is_ignored_name,
    load_untrusted_yaml,
    short_repr,
    untrusted_text,
)

TOP_LEVEL = ("config.yaml", "run.sh", "code")
JOB_TYPES = ("python", "bash")
METADATA_CAP_BYTES = 256 * 1024
# config.yaml's description and tags (beside syft-job's fields): what a reader shows.
DESCRIPTION_CAP = 4000
MAX_TAGS = 20
TAG_CAP = 64


@dataclass
class SubmissionCheck:
    metadata: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # Files config.yaml lists that are not there (yet): an empty one never comes.
    not_arrived: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.invalid and not self.not_arrived

    @property
    def only_listed_files_absent(self) -> bool:
        return not self.missing and not self.invalid and bool(self.not_arrived)

    def reason(self) -> str:
        waiting = self.missing + [f"{rel} has not arrived" for rel in self.not_arrived]
        return "; ".join(self.invalid or waiting)


def metadata_tags(metadata: dict[str, Any]) -> list[str]:
    """config.yaml's ``tags`` as one-line texts; anything but scalars is no tag."""
    tags = metadata.get("tags")
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list):
        return []
    shown = (untrusted_text(tag, TAG_CAP) for tag in tags[:MAX_TAGS])
    return [tag for tag in shown if tag]


def metadata_description(metadata: dict[str, Any]) -> str | None:
    return untrusted_text(metadata.get("description"), DESCRIPTION_CAP, multiline=True)


def _top_entries(folder: Path | int) -> dict[str, os.stat_result]:
    out = {}
    for entry in os.scandir(folder):
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.name == PERMISSION_FILE or is_ignored_name(entry.name, is_dir):
            continue
        out[entry.name] = entry.stat(follow_symlinks=False)
    return out


def _safe_manifest_path(item: Any) -> str | None:
    if not isinstance(item, str) or not item or item.startswith("/"):
        return None
    parts = item.replace("\\", "/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(parts)


def _never_delivered(rel: str) -> bool:
    *folders, name = rel.split("/")
    return is_ignored_name(name, False) or any(is_ignored_name(f, True) for f in folders)


def read_metadata(
    path: Path, dir_fd: int | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, problem): parse config.yaml without trusting its size or shape.

    The data scientist writes this file: it is opened without following a
    symlink or blocking on a fifo, read up to the cap, and parsed without
    aliases (see ``load_untrusted_yaml``). With ``dir_fd`` (the job folder,
    opened without links) ``path`` is ``config.yaml`` inside it.
    """
    try:
        # O_NONBLOCK: a fifo in place of the file must not hang the reader.
        if dir_fd is None:
            fd = os.open(path, FILE_FLAGS)
        else:
            fd = os.open("config.yaml", FILE_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None, "config.yaml is not a regular file"
            raw = handle.read(METADATA_CAP_BYTES + 1)
        if len(raw) > METADATA_CAP_BYTES:
            return None, f"config.yaml is larger than {METADATA_CAP_BYTES // 1024} KiB"
        data = load_untrusted_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "config.yaml is not UTF-8 text"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        detail = getattr(exc, "problem", None) or str(exc)
        return None, f"config.yaml is not valid YAML{where}: {detail[:200]}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "config.yaml is a symlink"
        return None, f"config.yaml cannot be read: {exc.strerror}"
    if not isinstance(data, dict):
        return None, "config.yaml must be a mapping of keys"
    return data, None


def check_submission(
    folder: Path,
    max_bytes: int | None = None,
    dir_fd: int | None = None,
    limits: Limits | None = None,
) -> SubmissionCheck:
    """Is the job folder complete and well-formed? ``dir_fd``: the folder, opened without links.

    Without ``dir_fd`` the folder at ``folder`` is opened (its last component
    without following a link); everything below is reached from that descriptor.
    """
    folder = Path(folder)
    try:
        top = os.dup(dir_fd) if dir_fd is not None else open_dir(folder.parent, [folder.name])
    except UnsafePathError as exc:
        check = SubmissionCheck()
        check.invalid.append(f"the job folder cannot be read safely: {exc}")
        return check
    try:
        return _check_at(folder, top, max_bytes, limits)
    finally:
        os.close(top)


def _check_at(
    folder: Path, top: int, max_bytes: int | None, limits: Limits | None
) -> SubmissionCheck:
    check = SubmissionCheck()
    try:
        entries = _top_entries(top)
    except OSError as exc:
        check.invalid.append(f"the job folder cannot be read: {exc.strerror}")
        return check
    for name, st in sorted(entries.items()):
        if name not in TOP_LEVEL:
            check.invalid.append(
                f"unexpected entry {name!r} in the job folder (allowed: code/, run.sh, config.yaml)"
            )
        elif stat.S_ISLNK(st.st_mode):
            check.invalid.append(f"{name} is a symlink")
        elif name == "code" and not stat.S_ISDIR(st.st_mode):
            check.invalid.append("code must be a folder")
        elif name != "code" and not stat.S_ISREG(st.st_mode):
            check.invalid.append(f"{name} must be a regular file")
    if check.invalid:
        return check
    if "run.sh" not in entries:
        check.missing.append("run.sh has not arrived")
    if "config.yaml" not in entries:
        check.missing.append("config.yaml has not arrived")
        return check
    metadata, problem = read_metadata(folder / "config.yaml", dir_fd=top)
    if problem:
        # A half-delivered file parses badly too: wait before calling it invalid.
        check.missing.append(problem)
        return check
    check.metadata = metadata
    job_type = metadata.get("type", "python")
    if job_type not in JOB_TYPES:
        check.invalid.append(f"config.yaml type must be python or bash, got {short_repr(job_type)}")
    manifest = metadata.get("files", [])
    if manifest is None:
        manifest = []
    if not isinstance(manifest, list):
        check.invalid.append("config.yaml files must be a list of paths under code/")
        return check
    limits = limits or DEFAULT_LIMITS
    if len(manifest) > limits.max_files:
        check.invalid.append(
            f"config.yaml files lists more than {limits.max_files} files "
            f"(this datasite accepts at most {limits.max_files})"
        )
        return check
    for item in manifest:
        rel = _safe_manifest_path(item)
        if rel is None:
            check.invalid.append(f"config.yaml files lists an unsafe path {short_repr(item)}")
            continue
        if _never_delivered(rel):
            continue  # syft-job lists every file; sync clients skip these
        if len(rel) + len("code/") > limits.max_path:
            check.invalid.append(
                f"config.yaml files lists a path longer than {limits.max_path} characters"
            )
            continue
        try:
            st = lstat_at(top, f"code/{rel}")
        except UnsafePathError as exc:
            check.invalid.append(str(exc))
            continue
        if st is None:
            check.not_arrived.append(f"code/{rel}")
            continue
        if stat.S_ISLNK(st.st_mode):
            check.invalid.append(f"code/{rel} is a symlink")
        elif not stat.S_ISREG(st.st_mode):
            check.invalid.append(f"code/{rel} is not a regular file")
    if check.complete or check.only_listed_files_absent:
        _check_file_set(folder, top, check, max_bytes, limits)
    return check


def _check_file_set(
    folder: Path, top: int, check: SubmissionCheck, max_bytes: int | None, limits: Limits
) -> None:
    """Refuse what could never be approved safely, and jobs too large to keep."""
    found = collect(folder, limits, dir_fd=top)
    if found.over_limit:
        # The listing stopped there: what was found is not the whole job.
        check.invalid.append(found.over_limit)
        return
    check.invalid.extend(found.problems)
    total = found.total_bytes
    if max_bytes is not None and total > max_bytes:
        check.invalid.append(
            f"the job's files add up to {total / 1e6:.1f} MB, more than the "
            f"{max_bytes / 1e6:.0f} MB this datasite accepts"
        )
