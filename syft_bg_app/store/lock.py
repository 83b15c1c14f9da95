"""One pass at a time per app home.

The lock is an OS file lock (filelock), so it disappears with its process: a
pass killed by ``kill -9`` or a reboot never blocks the next one. Beside it an
owner file says who holds it, for the "another pass is running" message.
"""

from __future__ import annotations

import json
import os
from types import TracebackType

from filelock import FileLock, Timeout

from syft_bg_app.clock import iso
from syft_bg_app.errors import BusyError
from syft_bg_app.schedule.idle_watch import touch_changed_marker
from syft_bg_app.store.fsutil import atomic_write_json
from syft_bg_app.store.home import AppHome


class PassLock:
    def __init__(self, home: AppHome, wait: float = 0.0, purpose: str = "pass") -> None:
        self.home = home
        self.wait = wait
        self.purpose = purpose
        self._lock = FileLock(str(home.lock_file), timeout=wait)

    def owner(self) -> str:
        try:
            info = json.loads(self.home.lock_info_file.read_text())
            return f"pid {info['pid']}, since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "pid unknown"

    def is_held(self) -> bool:
        """True while some process holds the lock (probing leaves the owner file alone)."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return True
        self._lock.release()
        return False

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
