"""The file set of a job: ``run.sh`` and everything under ``code/``, by raw bytes.

This is what rules match and what approval snapshots. Anything that could make
the bytes checked differ from the bytes run is refused and reported: symlinks,
devices, sockets, fifos, files with more than one hard link, names that are not
UTF-8 or that try to leave the folder. Empty files under ``code/`` are not part
of it: sync clients never deliver them, so a job looks the same whether it was
synced or written in place (and an empty file is never run).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from syft_bg_app.config.load import SCHEMA
from syft_bg_app.datasite.linksafe import UnsafePathError, open_dir, open_dir_at, open_file_at
from syft_bg_app.store.fsutil import is_ignored_name

HASH_PREFIX = "sha256:"
CHUNK = 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_stream(handle: BinaryIO) -> str:
    """``sha256:<hex>`` of what is left to read in ``handle``, read in chunks."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


class UnsafeFileError(UnsafePathError):
    """A path that is not (or no longer) a plain, singly-linked regular file."""


def _open_top(root: Path | int) -> int:
    """A descriptor of the job folder: ``root`` itself when it is one, else opened.

    A path's last component (the job folder) is opened without following a link;
    callers that reach the folder from the datasite pass the descriptor they
    opened with ``Datasite.open_job_dir``, which follows no link at any level.
    """
    if isinstance(root, int):
        return os.dup(root)
    path = Path(root)
    return open_dir(path.parent, [path.name], shown_prefix="")


def open_regular(root: Path | int, rel: str) -> int:
    """Open ``root/rel`` for reading without following a symlink at any level.

    ``root`` is the job folder's path or an open descriptor of it. A file
    checked with ``lstat`` can be swapped for a symlink (or a folder on its
    path for a symlinked folder) before it is read; walking each component
    with ``O_NOFOLLOW`` and checking the opened file itself closes that gap.
    """
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        raise UnsafeFileError(f"{rel!r} is not a plain relative path")
    try:
        dir_fd = _open_top(root)
    except UnsafePathError as exc:
        raise UnsafeFileError(f"{rel}: the job folder cannot be opened safely ({exc})") from None
    try:
        fd = open_file_at(dir_fd, rel)
    except UnsafePathError as exc:
        raise UnsafeFileError(f"{rel}: cannot be opened safely ({exc})") from None
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    problem = _refusal(rel, st)
    if problem:
        os.close(fd)
        raise UnsafeFileError(problem)
    return fd


def read_regular(root: Path | int, rel: str) -> bytes:
    """The bytes of ``root/rel``, refusing symlinks, devices and hard links."""
    fd = open_regular(root, rel)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def sha256_regular(root: Path | int, rel: str) -> str:
    """``sha256:<hex>`` of ``root/rel``, read as ``read_regular`` reads it."""
    fd = open_regular(root, rel)
    with os.fdopen(fd, "rb") as handle:
        return sha256_stream(handle)


@dataclass(frozen=True)
class Limits:
    """How much of a job folder is looked at; beyond it the job is refused, unread.

    Every pass that looks at a job walks its tree, so the walk itself is
    bounded: it stops at the first entry past a limit.
    """

    max_files: int
    max_depth: int
    max_path: int

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(
            max_files=config.get("sync.max_job_files"),
            max_depth=config.get("sync.max_job_depth"),
            max_path=config.get("sync.max_path_length"),
        )


def _default_limits() -> Limits:
    sync = SCHEMA["sync"].fields
    return Limits(
        max_files=sync["max_job_files"].default,
        max_depth=sync["max_job_depth"].default,
        max_path=sync["max_path_length"].default,
    )


# For callers without a config (the email of a job, a rule made from a folder).
DEFAULT_LIMITS = _default_limits()
# A job with thousands of symlinks must not make a reason of megabytes.
PROBLEMS_SHOWN = 20


@dataclass
class JobFiles:
    """Relative path -> stat of each regular file, plus what was refused.

    ``over_limit`` says which limit stopped the walk (the listing is then
    incomplete and the job can never be approved).
    """

    root: Path
    files: dict[str, os.stat_result] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    over_limit: str | None = None
    dir_fd: int | None = None

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.files)

    @property
    def all_problems(self) -> list[str]:
        """The limit that stopped the walk (the listing is then partial), then each refusal."""
        return ([self.over_limit] if self.over_limit else []) + self.problems

    @property
    def total_bytes(self) -> int:
        return sum(st.st_size for st in self.files.values())

    def hash(self, rel: str) -> str:
        return sha256_regular(self.root if self.dir_fd is None else self.dir_fd, rel)


def _refusal(rel: str, st: os.stat_result) -> str | None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return f"{rel} is a symlink"
    if not stat.S_ISREG(mode):
        return f"{rel} is not a regular file (device, fifo or socket)"
    if st.st_nlink > 1:
        return f"{rel} has {st.st_nlink} hard links"
    return None


class _Stop(Exception):
    """A limit was reached: the walk ends at once."""


def collect(job_dir: Path, limits: Limits | None = None, dir_fd: int | None = None) -> JobFiles:
    """Scan ``run.sh`` and ``code/`` of a job folder without following links.

    ``dir_fd`` is the job folder opened by the caller (``Datasite.open_job_dir``);
    without it the folder at ``job_dir`` is opened (its last component without
    following a link). Every folder below is opened relative to its parent with
    ``O_NOFOLLOW``, and the walk stops at the first entry past ``limits``.
    """
    limits = limits or DEFAULT_LIMITS
    found = JobFiles(Path(job_dir), dir_fd=dir_fd)
    try:
        top = _open_top(job_dir if dir_fd is None else dir_fd)
    except UnsafePathError as exc:
        found.problems.append(f"the job folder cannot be opened safely ({exc})")
        return found
    try:
        _collect_at(top, found, limits)
    finally:
        os.close(top)
    found.problems.sort()
    if len(found.problems) > PROBLEMS_SHOWN:
        more = len(found.problems) - PROBLEMS_SHOWN
        found.problems[PROBLEMS_SHOWN:] = [f"and {more} more problems"]
    return found


def _collect_at(top: int, found: JobFiles, limits: Limits) -> None:
    try:
        st = os.stat("run.sh", dir_fd=top, follow_symlinks=False)
    except FileNotFoundError:
        found.problems.append("run.sh is missing")
    else:
        problem = _refusal("run.sh", st)
        (found.problems.append(problem) if problem else found.files.__setitem__("run.sh", st))
    try:
        code = open_dir_at(top, ["code"])
    except UnsafePathError as exc:
        if exc.errno == errno.ENOENT:
            return
        found.problems.append("code is not a folder" if exc.errno == errno.ENOTDIR else str(exc))
        return
    seen = [0]
    try:
        _walk(code, "code/", 1, found, limits, seen)
    except _Stop:
        pass
    finally:
        os.close(code)


def _walk(
    folder_fd: int, prefix: str, depth: int, found: JobFiles, limits: Limits, seen: list[int]
) -> None:
    # Building names as strings keeps a pass over thousands of pending jobs
    # cheap (pathlib per file costs more than the stat).
    with os.scandir(folder_fd) as entries:
        subfolders = []
        for entry in entries:
            seen[0] += 1
            if seen[0] > limits.max_files:
                found.over_limit = (
                    f"the job has more than {limits.max_files} files and folders under code/ "
                    f"(this datasite accepts at most {limits.max_files})"
                )
                raise _Stop
            rel = prefix + entry.name
            if len(rel) > limits.max_path:
                found.over_limit = (
                    f"a path in the job is longer than {limits.max_path} characters "
                    "(this datasite accepts no longer paths)"
                )
                raise _Stop
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                found.problems.append(f"{rel!r} has a name that is not UTF-8")
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if not is_ignored_name(entry.name, True):
                    subfolders.append((entry.name, rel))
                continue
            if is_ignored_name(entry.name, False):
                continue
            problem = _refusal(rel, st)
            if problem:
                found.problems.append(problem)
            elif st.st_size:
                found.files[rel] = st
    for name, rel in subfolders:
        if depth + 1 > limits.max_depth:
            found.over_limit = (
                f"the job's folders are nested more than {limits.max_depth} deep under code/ "
                f"(this datasite accepts at most {limits.max_depth})"
            )
            raise _Stop
        try:
            child = open_dir_at(folder_fd, [name])
        except UnsafePathError:
            # Swapped for a link (or removed) since it was listed.
            found.problems.append(f"{rel} changed while it was read (a symlink?)")
            continue
        try:
            _walk(child, rel + "/", depth + 1, found, limits, seen)
        finally:
            os.close(child)


def file_set_hashes(
    job_dir: Path, dir_fd: int | None = None, limits: Limits | None = None
) -> dict[str, str]:
    """{path: sha256} of the job's file set as it is now (refused files left out)."""
    found = collect(job_dir, limits, dir_fd)
    return {rel: found.hash(rel) for rel in sorted(found.files)}
