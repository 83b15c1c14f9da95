"""The outbox transport: one RFC 5322 ``.eml`` file per email in <app home>/outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_bg_app.mail.errors import TransientMailError
from syft_bg_app.mail.retry import Deadline
from syft_bg_app.store.atomic import atomic_write_bytes


class OutboxTransport:
    name = "outbox"
    # Each email's file name is fixed, so sending it again replaces the file: no
    # checkpoint save is needed around each send to keep emails from doubling.
    resend_replaces = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def describe(self) -> str:
        return f"outbox ({self.folder})"

    def path_for(self, entry: dict[str, Any]) -> Path:
        stamp = entry["created_at"].replace("-", "").replace(":", "").split(".")[0]
        return self.folder / f"{stamp.rstrip('Z')}Z-{entry['id']}.eml"

    def send(
        self, entry: dict[str, Any], raw: bytes, thread_id: str | None, deadline: Deadline
    ) -> str | None:
        # The name is fixed by the entry, so a resend after a crash replaces the
        # file instead of adding a second copy.
        try:
            atomic_write_bytes(self.path_for(entry), raw, mode=0o600)
        except OSError as exc:
            raise TransientMailError(f"cannot write to {self.folder}: {exc.strerror}") from None
        return None

    def close(self) -> None:
        return None
