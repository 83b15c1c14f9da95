"""Where the app keeps its own files (never synced)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "SYFT_BG_HOME"
# Kept across reboots (unlike /tmp, often a small tmpfs), and on every Linux.
SHARED_TMP = "/var/tmp"


def default_home() -> Path:
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    colab = colab_home()
    if colab is not None:
        return colab
    return Path.home() / ".syft-bg"


COLAB_DRIVE = Path("/content/drive/MyDrive")


def colab_home() -> Path | None:
    """On Colab with Google Drive mounted, the app home lives on Drive: the VM's
    disk is wiped when the runtime ends, and config, checkpoint and tokens must not be."""
    drive = COLAB_DRIVE
    if not drive.is_dir():
        return None
    if os.environ.get("COLAB_RELEASE_TAG"):
        return drive / "syft-bg"
    import importlib.util

    try:
        found = importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        found = False
    return drive / "syft-bg" if found else None


@dataclass(frozen=True)
class AppHome:
    """The app home and the fixed places inside it."""

    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> AppHome:
        return cls(Path(root).expanduser() if root else default_home())

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "pass.lock"

    @property
    def lock_info_file(self) -> Path:
        return self.root / "pass.owner"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def runs_dir(self) -> Path:
        """Where the working folders of runs live: outside the app home, so a job
        never learns (from its mounts) or reaches (by path) where the app home is.

        One folder per user and app home under /var/tmp; ``execute`` creates it and
        refuses one that someone else made.
        """
        return self.runs_dir_of(os.geteuid())

    def runs_dir_of(self, uid: int) -> Path:
        """``runs_dir`` of this app home when the app runs as ``uid``."""
        if not os.path.isdir(SHARED_TMP):
            return self.root / "runs"
        digest = hashlib.sha256(os.fsencode(os.path.abspath(self.root))).hexdigest()[:16]
        return Path(SHARED_TMP) / f"syft-bg-runs-{uid}-{digest}"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
