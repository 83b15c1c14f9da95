"""Link-safe file operations: opening, reading and removing without following links.

Every step uses these where a folder may hold links someone else made: sync
and approve for the data scientists' folders, execute and publish for the run
folders a job wrote into.

A data scientist can write into ``inbox/<ds>/`` and ``peers/<ds>/`` of the
owner's datasite, so any folder on the way to a job (``inbox/<ds>``, its
``v1``, the job folder, every folder under ``code/``) may be a symlink to
another data scientist's folder or to the owner's files. Checking with
``lstat`` and then opening by path leaves a gap in which the folder can be
swapped. Here every component below a trusted anchor (the datasite folder,
which the owner chose) is opened relative to its parent's descriptor with
``O_NOFOLLOW``, so the descriptor returned is the real folder or file at that
name, never what a link points at. Paths stay short too: each ``open`` names
one component, so a tree deeper than ``PATH_MAX`` can still be walked.

Error messages name only the relative path the caller gave (names the data
scientist chose); never a link's target or the owner's folders.

A job controls its run folder the same way: what it leaves there is read,
copied and removed through descriptors opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a fifo put in place of a file must not hang the pass.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A new file, never one already there (nor a link someone put at its name).
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
READ_CHUNK = 1024 * 1024


class UnsafePathError(OSError):
    """A path a data scientist controls that is a link, not a folder, or gone.

    ``str()`` is safe to show the data scientist: it names only the relative
    path that was asked for.
    """

    def __init__(self, message: str, err: int = errno.EPERM) -> None:
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _why(dir_fd: int, name: str, exc: OSError, shown: str, want_dir: bool) -> UnsafePathError:
    """Say why ``name`` could not be opened, without following it to find out."""
    if exc.errno == errno.ENOENT:
        return UnsafePathError(f"{shown} does not exist", errno.ENOENT)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return UnsafePathError(f"{shown} cannot be opened ({exc.strerror})", exc.errno or 0)
    if stat.S_ISLNK(st.st_mode):
        return UnsafePathError(f"{shown} is a symlink", errno.ELOOP)
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return UnsafePathError(f"{shown} is not a folder", errno.ENOTDIR)
    return UnsafePathError(f"{shown} cannot be opened ({exc.strerror})", exc.errno or 0)


def _check_part(part: str, shown: str) -> None:
    if part in ("", ".", "..") or "/" in part or "\0" in part:
        raise UnsafePathError(f"{shown} is not a plain relative path")


def open_dir_at(dir_fd: int, parts: Sequence[str], shown_prefix: str = "") -> int:
    """Open the folder ``parts`` below the open folder ``dir_fd``, following no link.

    Returns a new descriptor (the caller closes it). ``shown_prefix`` is put in
    front of the parts in error messages (e.g. ``inbox/alice@uni.edu/``).
    """
    fd = os.dup(dir_fd)
    shown = shown_prefix.rstrip("/")
    try:
        for part in parts:
            shown = f"{shown}/{part}" if shown else part
            _check_part(part, shown)
            try:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _why(fd, part, exc, shown, want_dir=True) from None
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(anchor: os.PathLike | str, parts: Sequence[str], shown_prefix: str = "") -> int:
    """Open ``anchor`` (trusted: it may be a link the owner made) then ``parts`` without links."""
    try:
        anchor_fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        what = shown_prefix or "the folder"
        raise UnsafePathError(f"{what} cannot be opened", exc.errno) from None
    try:
        return open_dir_at(anchor_fd, parts, shown_prefix)
    finally:
        os.close(anchor_fd)


def open_file_at(dir_fd: int, rel: str, shown_prefix: str = "") -> int:
    """Open the file ``rel`` (``a/b/c``) below the open folder ``dir_fd`` for reading.

    No component, the file included, may be a link; the file is opened without
    blocking (a fifo answers at once). The caller checks what kind of file it got.
    """
    parts = rel.split("/")
    shown = f"{shown_prefix}{rel}"
    for part in parts:
        _check_part(part, shown)
    parent = open_dir_at(dir_fd, parts[:-1], shown_prefix) if len(parts) > 1 else os.dup(dir_fd)
    try:
        try:
            return os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise _why(parent, parts[-1], exc, shown, want_dir=False) from None
    finally:
        os.close(parent)


def lstat_at(dir_fd: int, rel: str, shown_prefix: str = "") -> os.stat_result | None:
    """``lstat`` of ``rel`` below the open folder ``dir_fd``; None when it is not there.

    The folders on the way are opened without following links: a symlinked
    folder on the path raises ``UnsafePathError`` rather than being looked through.
    """
    parts = rel.split("/")
    for part in parts:
        _check_part(part, f"{shown_prefix}{rel}")
    try:
        parent = open_dir_at(dir_fd, parts[:-1], shown_prefix)
    except UnsafePathError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    try:
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(parent)


def identity(fd: int) -> list[int]:
    """(device, inode) of an open file: what a folder is, whatever its name."""
    st = os.fstat(fd)
    return [st.st_dev, st.st_ino]


def read_capped(path: os.PathLike | str, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``; b"" for a link, a fifo,
    a folder or a file that cannot be read."""
    try:
        fd = os.open(path, FILE_FLAGS)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def remove_tree(path: os.PathLike | str) -> None:
    """Delete a folder however deep it is, never following a link (best effort).

    ``shutil.rmtree`` recurses once per level, so a job's deeply nested folders
    would make it raise RecursionError in every later pass. This walks down, and
    back up through "..", holding one folder open at a time; each ".." must be
    the folder it came from.
    """
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:
        try:
            os.unlink(path)  # a link or a file where a folder was expected
        except OSError:
            pass
        return
    # Per open level: its name in the folder above, its identity, the folders left in it.
    levels: list[tuple[str, list[int], list[str]]] = []
    try:
        levels.append(("", identity(fd), _clear_files(fd)))
        while True:
            todo = levels[-1][2]
            if todo:
                name = todo.pop()
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                os.close(fd)
                fd = child
                levels.append((name, identity(fd), _clear_files(fd)))
                continue
            if len(levels) == 1:
                break
            name, _, _ = levels.pop()
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            if identity(fd) != levels[-1][1]:
                return  # moved meanwhile: stop rather than delete elsewhere
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
    except OSError:
        return
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the folder ``fd`` but folders; return the folders."""
    try:
        # A job may leave folders it cannot write; the app's user owns them and fixes that.
        if os.fstat(fd).st_uid == os.geteuid():
            os.chmod(fd, 0o700)
    except OSError:
        pass
    folders = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    continue
    except OSError:
        pass
    return folders
