"""The datasite on disk: the syft-job protocol v1 layout (and v0 for reading).

``ROOT/<email>/`` (syft-client) or ``ROOT/datasites/<email>/`` (SyftBox Go
client). Under it ``app_data/job/`` holds ``inbox/<ds>/v1/<job>/`` (what the
data scientist submitted), ``review/<ds>/v1/<job>/`` (state and results, which
this app writes) and ``peers/<ds>/request.yaml`` (peer requests).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import SyftBgError
from .fsutil import PERMISSION_FILE, atomic_write_yaml, load_yaml
from .state import iso

PROTOCOL_DIR_RE = re.compile(r"^v\d+$")
CURRENT_PROTOCOL = "1"
JOB_STATE_FIELDS = (
    "status",
    "received_at",
    "approved_by",
    "approved_at",
    "approval_method",
    "rejected_by",
    "rejected_at",
    "review_reason",
    "completed_at",
    "return_code",
)
JOB_STATUSES = (
    "received",
    "pending",
    "approved",
    "rejected",
    "running",
    "done",
    "failed",
)


class JobStateError(SyftBgError):
    """A state.yaml that cannot be read (written by hand or half-synced)."""


@dataclass(frozen=True, order=True)
class JobRef:
    """One job: who submitted it, its name, and the protocol layout it uses."""

    ds_email: str
    name: str
    protocol: str = CURRENT_PROTOCOL

    @property
    def label(self) -> str:
        return f"{self.ds_email}/{self.name}"


def detect_datasite_path(root: Path, email: str) -> Path:
    """Where the datasite of ``email`` lives under the SyftBox folder ``root``."""
    go_layout = root / "datasites" / email
    flat_layout = root / email
    if go_layout.is_dir():
        return go_layout
    if flat_layout.is_dir():
        return flat_layout
    if (root / "datasites").is_dir():
        return go_layout
    return flat_layout


class Datasite:
    def __init__(self, root: Path, email: str) -> None:
        self.root = Path(root)
        self.email = email
        self.path = detect_datasite_path(self.root, email)
        self.job_root = self.path / "app_data" / "job"
        self.inbox = self.job_root / "inbox"
        self.review = self.job_root / "review"
        self.peers = self.job_root / "peers"
        self._review_str = os.fspath(self.review)

    @property
    def layout(self) -> str:
        return "datasites/<email>" if self.path.parent.name == "datasites" else "<email>"

    # -- job paths ------------------------------------------------------------
    def _under(self, base: Path, ref: JobRef) -> Path:
        folder = base / ref.ds_email
        if ref.protocol != "0":
            folder = folder / f"v{ref.protocol}"
        return folder / ref.name

    def submission_dir(self, ref: JobRef) -> Path:
        return self._under(self.inbox, ref)

    def review_dir(self, ref: JobRef) -> Path:
        return self._under(self.review, ref)

    def state_file(self, ref: JobRef) -> Path:
        return self.review_dir(ref) / "state.yaml"

    def state_file_str(self, ref: JobRef) -> str:
        """``state_file`` as a plain string: cheap enough to stat every open job each pass."""
        parts = [self._review_str, ref.ds_email]
        if ref.protocol != "0":
            parts.append(f"v{ref.protocol}")
        return os.path.join(*parts, ref.name, "state.yaml")

    def job_folders(self, ds_email: str) -> list[tuple[str, Path]]:
        """(protocol, folder) places that hold jobs of ``ds_email``: v1/ and the v0 root."""
        base = self.inbox / ds_email
        return [(CURRENT_PROTOCOL, base / f"v{CURRENT_PROTOCOL}"), ("0", base)]

    def list_job_names(self, ds_email: str) -> list[JobRef]:
        refs = []
        for protocol, folder in self.job_folders(ds_email):
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if protocol == "0" and PROTOCOL_DIR_RE.match(entry.name):
                    continue
                if entry.name.startswith("."):
                    continue
                refs.append(JobRef(ds_email, entry.name, protocol))
        return refs

    def list_ds_emails(self) -> list[str]:
        try:
            return sorted(
                e.name
                for e in os.scandir(self.inbox)
                if e.is_dir(follow_symlinks=False) and "@" in e.name
            )
        except FileNotFoundError:
            return []

    # -- job state (syft-job JobState v1 on disk) --------------------------------
    def read_job_state(self, ref: JobRef) -> dict[str, Any] | None:
        path = self.state_file(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise JobStateError(f"{path}: unreadable: {exc}") from None
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise JobStateError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict) or data.get("status") not in JOB_STATUSES:
            raise JobStateError(f"{path}: no valid 'status' in state.yaml")
        return data

    def write_job_state(self, ref: JobRef, **changes: Any) -> dict[str, Any]:
        """Update state.yaml atomically, keeping syft-job's field set and format."""
        try:
            current = self.read_job_state(ref) or {}
        except JobStateError:
            current = {}
        state = {name: current.get(name) for name in JOB_STATE_FIELDS}
        state["status"] = state["status"] or "received"
        for name, value in changes.items():
            if name not in JOB_STATE_FIELDS:
                raise ValueError(f"not a JobState field: {name}")
            state[name] = value
        if ref.protocol != "0":
            state["canonical_name"] = "JobState"
            state["version"] = "1"
        atomic_write_yaml(self.state_file(ref), state)
        return state

    # -- permission files ---------------------------------------------------------
    @staticmethod
    def write_permissions(folder: Path, read: list[str] = (), write: list[str] = ()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        rules = {
            "rules": [
                {
                    "pattern": "**",
                    "access": {"admin": [], "read": list(read), "write": list(write)},
                }
            ],
            "terminal": False,
        }
        atomic_write_yaml(folder / PERMISSION_FILE, rules)

    def ensure_base_layout(self) -> None:
        """Create the job folders and the peer-request permission file."""
        for folder in (self.inbox, self.review):
            folder.mkdir(parents=True, exist_ok=True)
        self.peers.mkdir(parents=True, exist_ok=True)
        # Each user may write (and read) only the folder named after themselves.
        atomic_write_yaml(
            self.peers / PERMISSION_FILE,
            {
                "rules": [
                    {
                        "pattern": "{{.UserEmail}}/**",
                        "access": {"admin": [], "read": ["USER"], "write": ["USER"]},
                    }
                ],
                "terminal": False,
            },
        )

    def ensure_peer_folders(self, ds_email: str) -> None:
        """What accepting a peer creates: its inbox (write) and review (read) folders."""
        self.write_permissions(self.inbox / ds_email, write=[ds_email])
        self.write_permissions(self.review / ds_email, read=[ds_email])

    def peer_has_inbox(self, ds_email: str) -> bool:
        return (self.inbox / ds_email / PERMISSION_FILE).is_file()

    # -- peer requests -----------------------------------------------------------------
    def peer_request_file(self, ds_email: str) -> Path:
        return self.peers / ds_email / "request.yaml"

    def write_peer_status(self, ds_email: str, status: str, reason: str | None) -> None:
        """Tell the requester the decision (they may read their own folder)."""
        atomic_write_yaml(
            self.peers / ds_email / "status.yaml",
            {"status": status, "decided_at": iso(), "reason": reason},
        )
