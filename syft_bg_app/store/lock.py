"""One pass at a time per app home.

The lock is an OS file lock (filelock), so it disappears with its process: a
pass killed by ``kill -9`` or a reboot never blocks the next one. Beside it an
owner file says who holds it, for the "another pass is running" message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from filelock import FileLock, Timeout

from syft_bg_app.clock import iso, parse_iso
from syft_bg_app.errors import BusyError
from syft_bg_app.schedule.idle_watch import touch_changed_marker
from syft_bg_app.store.fsutil import atomic_write_json
from syft_bg_app.store.home import AppHome


@dataclass
class LockInfo:
    """Whether a pass (or a command) holds the app lock, and who says they do."""

    held: bool
    pid: int | None = None
    since: datetime | None = None
    purpose: str | None = None


def _owner_record(home: AppHome) -> dict:
    """What the holder wrote beside the lock ({} when unreadable)."""
    try:
        info = json.loads(home.lock_info_file.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _is_free(home: AppHome) -> bool:
    """True when nobody holds the lock (taken and released at once, the owner file untouched)."""
    lock = FileLock(str(home.lock_file), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def lock_info(home: AppHome) -> LockInfo:
    """Whether the app lock is held now, and by whom; an app home not made yet is free."""
    if not home.root.is_dir():
        return LockInfo(False)
    try:
        if _is_free(home):
            return LockInfo(False)
    except OSError:
        return LockInfo(False)
    info = _owner_record(home)
    try:
        since = parse_iso(info["since"]) if info.get("since") else None
        pid = info.get("pid")
        return LockInfo(True, pid if isinstance(pid, int) else None, since, info.get("purpose"))
    except (ValueError, TypeError):
        return LockInfo(True)


class PassLock:
    def __init__(self, home: AppHome, wait: float = 0.0, purpose: str = "pass") -> None:
        self.home = home
        self.wait = wait
        self.purpose = purpose
        self._lock = FileLock(str(home.lock_file), timeout=wait)

    def owner(self) -> str:
        info = _owner_record(self.home)
        if "pid" not in info or "since" not in info:
            return "pid unknown"
        return f"pid {info['pid']}, since {info['since']}"

    def is_held(self) -> bool:
        """True while some process holds the lock (probing leaves the owner file alone)."""
        return not _is_free(self.home)

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it past ``wait``."""
        self.home.ensure()
        try:
            self._lock.acquire(timeout=self.wait)
        except Timeout:
            return False
        atomic_write_json(
            self.home.lock_info_file,
            {"pid": os.getpid(), "since": iso(), "purpose": self.purpose},
            mode=0o600,
        )
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                if self.purpose != "pass":
                    # Every command that may change what a pass does holds this
                    # lock: the next pass runs in full (see idle_watch).
                    touch_changed_marker(self.home)
            finally:
                self._lock.release()

    def __enter__(self) -> PassLock:
        if not self.acquire():
            raise BusyError(f"another pass is running ({self.owner()}); try again in a moment")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
