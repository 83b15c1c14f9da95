"""The file set of a job: ``run.sh`` and everything under ``code/``, by raw bytes.

This is what rules match and what approval snapshots. Anything that could make
the bytes checked differ from the bytes run is refused and reported: symlinks,
devices, sockets, fifos, files with more than one hard link, names that are not
UTF-8 or that try to leave the folder. Empty files under ``code/`` are not part
of it: sync clients never deliver them, so a job looks the same whether it was
synced or written in place (and an empty file is never run).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .fsutil import is_ignored_name

HASH_PREFIX = "sha256:"
CHUNK = 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


class UnsafeFileError(OSError):
    """A path that is not (or no longer) a plain, singly-linked regular file."""


def open_regular(root: Path, rel: str) -> int:
    """Open ``root/rel`` for reading without following a symlink at any level.

    A file checked with ``lstat`` can be swapped for a symlink (or a folder on
    its path for a symlinked folder) before it is read; walking each component
    with ``O_NOFOLLOW`` and checking the opened file itself closes that gap.
    """
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        raise UnsafeFileError(f"{rel!r} is not a plain relative path")
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, flags_dir, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFileError(f"{rel}: cannot be opened safely ({exc.strerror})") from None
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    problem = _refusal(rel, st)
    if problem:
        os.close(fd)
        raise UnsafeFileError(problem)
    return fd


def read_regular(root: Path, rel: str) -> bytes:
    """The bytes of ``root/rel``, refusing symlinks, devices and hard links."""
    fd = open_regular(root, rel)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def sha256_regular(root: Path, rel: str) -> str:
    """``sha256:<hex>`` of ``root/rel``, read as ``read_regular`` reads it."""
    fd = open_regular(root, rel)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


@dataclass
class JobFiles:
    """Relative path -> stat of each regular file, plus what was refused."""

    root: Path
    files: dict[str, os.stat_result] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.files)

    def hash(self, rel: str) -> str:
        return sha256_regular(self.root, rel)


def _refusal(rel: str, st: os.stat_result) -> str | None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return f"{rel} is a symlink"
    if not stat.S_ISREG(mode):
        return f"{rel} is not a regular file (device, fifo or socket)"
    if st.st_nlink > 1:
        return f"{rel} has {st.st_nlink} hard links"
    return None


def collect(job_dir: Path) -> JobFiles:
    """Scan ``run.sh`` and ``code/`` of a job folder without following links."""
    found = JobFiles(Path(job_dir))
    run_sh = found.root / "run.sh"
    try:
        st = os.lstat(run_sh)
    except FileNotFoundError:
        found.problems.append("run.sh is missing")
    else:
        problem = _refusal("run.sh", st)
        (found.problems.append(problem) if problem else found.files.__setitem__("run.sh", st))
    code = found.root / "code"
    try:
        code_st = os.lstat(code)
    except FileNotFoundError:
        return found
    if not stat.S_ISDIR(code_st.st_mode):
        found.problems.append("code is not a folder")
        return found
    # (relative prefix, folder): building names as strings keeps a pass over
    # thousands of pending jobs cheap (pathlib per file costs more than lstat).
    stack = [("code/", os.fspath(code))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    found.problems.append(f"{rel!r} has a name that is not UTF-8")
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if not is_ignored_name(entry.name, True):
                        stack.append((rel + "/", entry.path))
                    continue
                if is_ignored_name(entry.name, False):
                    continue
                problem = _refusal(rel, st)
                if problem:
                    found.problems.append(problem)
                elif st.st_size:
                    found.files[rel] = st
    found.problems.sort()
    return found


def file_set_hashes(job_dir: Path) -> dict[str, str]:
    """{path: sha256} of the job's file set as it is now (refused files left out)."""
    found = collect(job_dir)
    return {rel: found.hash(rel) for rel in sorted(found.files)}
