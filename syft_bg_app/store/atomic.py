"""Atomic file replacement, with nothing but the standard library.

The bytes go to a temporary file in the same folder, are fsynced, and replace
the target with ``os.replace``; the folder is fsynced too, so after ``kill -9``
or a power cut a reader sees either the old file or the new one, never a torn
one. The run supervisor uses this too, and it starts without site-packages.
"""

from __future__ import annotations

import os
import stat

TEMP_PREFIX = ".syft-bg-tmp-"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(folder: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        name = os.path.join(folder, TEMP_PREFIX + os.urandom(6).hex())
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, unless_same: bool = False
) -> None:
    """Replace ``path`` with ``data`` so that readers see old or new, never half.

    With ``unless_same``, a regular file that already holds exactly ``data`` with
    ``mode`` is left as it is (no write, no fsync): one left by a writer killed
    between its rename and the folder fsync is trusted as it reads, and the next
    change to it is written durably.
    """
    path = os.fspath(path)
    if unless_same and _holds(path, data, mode):
        return
    folder = os.path.dirname(path) or "."
    try:
        fd, tmp_name = _create_temp(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_name = _create_temp(folder)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)


def _holds(path: str, data: bytes, mode: int) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != mode:
            return False
        if info.st_size != len(data):
            return False
        return os.read(fd, len(data) + 1) == data
    except OSError:
        return False
    finally:
        os.close(fd)
