"""The datasite on disk: the syft-job protocol v1 layout (and v0 for reading).

``ROOT/<email>/`` (syft-client) or ``ROOT/datasites/<email>/`` (SyftBox Go
client). Under it ``app_data/job/`` holds ``inbox/<ds>/v1/<job>/`` (what the
data scientist submitted), ``review/<ds>/v1/<job>/`` (state and results, which
this app writes) and ``peers/<ds>/request.yaml`` (peer requests).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.clock import iso
from syft_bg_app.datasite.linksafe import (
    UnsafePathError,
    lstat_at,
    open_dir,
    open_dir_at,
    open_file_at,
)
from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.fsutil import PERMISSION_FILE, atomic_write_yaml, load_yaml

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
    def display_name(self) -> str:
        """The job name, with its protocol in front unless it is the current one.

        A data scientist may have a v0 and a v1 job of the same name: they are
        two jobs, so everything that names one (command line, emails) says which.
        """
        if self.protocol == CURRENT_PROTOCOL:
            return self.name
        return f"v{self.protocol}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.ds_email}/{self.display_name}"

    @property
    def digest(self) -> str:
        """A hex SHA-256 of the job's identity, for file names (names may hold any
        character, also the lone surrogates of folder names that are not UTF-8)."""
        identity = f"{self.ds_email}\0{self.protocol}\0{self.name}"
        return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def event_fields(self) -> dict[str, str]:
        """What names this job in a queued event (the notify step builds the ref back)."""
        return {"ds_email": self.ds_email, "job": self.name, "protocol": self.protocol}


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

    # Everything under inbox/<ds>/ and peers/<ds>/ is written by a data scientist:
    # it is reached from the datasite folder one component at a time, never
    # through a link (see ``linksafe``).
    def open_under(self, path: Path) -> int:
        """Open the folder ``path`` (below ``app_data/job``) without following any link.

        Messages name the path from ``app_data/job`` on (``inbox/<ds> is a symlink``).
        """
        return self._open_job_root_parts(list(Path(path).relative_to(self.job_root).parts))

    def _open_job_root_parts(self, parts: list[str]) -> int:
        # app_data/job is the owner's; its names are not shown to anyone.
        anchor_fd = open_dir(self.path, ["app_data", "job"])
        try:
            return open_dir_at(anchor_fd, parts)
        finally:
            os.close(anchor_fd)

    def stat_folder(self, path: Path) -> os.stat_result | None:
        """``stat`` of a folder below the datasite, reached without links; None if unsafe."""
        try:
            fd = self.open_under(path)
        except UnsafePathError:
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _job_parts(self, ref: JobRef) -> list[str]:
        parts = ["inbox", ref.ds_email]
        if ref.protocol != "0":
            parts.append(f"v{ref.protocol}")
        return [*parts, ref.name]

    def open_job_dir(self, ref: JobRef) -> int:
        """The job's submission folder, opened without following a link at any level.

        Raises ``UnsafePathError`` whose message names only the folders the data
        scientist controls (``inbox/<ds>/v1/<job> is a symlink``).
        """
        return self._open_job_root_parts(self._job_parts(ref))

    def list_job_names(self, ds_email: str) -> list[JobRef]:
        """Jobs in ``inbox/<ds>/v1/`` and (protocol 0) ``inbox/<ds>/``.

        A symlink where a job folder belongs is listed too, so that it gets a
        rejection with its reason; it is never looked through.
        """
        refs: list[JobRef] = []
        try:
            base_fd = self.open_under(self.inbox / ds_email)
        except UnsafePathError:
            return refs
        try:
            for protocol in (CURRENT_PROTOCOL, "0"):
                try:
                    fd = base_fd if protocol == "0" else open_dir_at(base_fd, [f"v{protocol}"])
                except UnsafePathError:
                    continue
                try:
                    refs.extend(self._job_entries(ds_email, protocol, fd))
                finally:
                    if fd != base_fd:
                        os.close(fd)
        finally:
            os.close(base_fd)
        return refs

    @staticmethod
    def _job_entries(ds_email: str, protocol: str, fd: int) -> list[JobRef]:
        refs = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if not (entry.is_dir(follow_symlinks=False) or entry.is_symlink()):
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

    def _is_link(self, path: Path) -> bool:
        try:
            return stat.S_ISLNK(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def ensure_peer_folders(self, ds_email: str) -> None:
        """What accepting a peer creates: its inbox (write) and review (read) folders.

        A data scientist may have put a link where their inbox belongs: the app
        never writes through it (it would write the permission file wherever
        the link points).
        """
        for base in (self.inbox, self.review):
            if self._is_link(base / ds_email):
                raise SyftBgError(
                    f"{base.name}/{ds_email} is a symlink; remove it, then accept {ds_email} again"
                )
        self.write_permissions(self.inbox / ds_email, write=[ds_email])
        self.write_permissions(self.review / ds_email, read=[ds_email])

    def peer_has_inbox(self, ds_email: str) -> bool:
        try:
            fd = self.open_under(self.inbox / ds_email)
        except UnsafePathError:
            return False
        try:
            st = lstat_at(fd, PERMISSION_FILE)
        finally:
            os.close(fd)
        return st is not None and stat.S_ISREG(st.st_mode)

    # -- peer requests -----------------------------------------------------------------
    def peer_request_file(self, ds_email: str) -> Path:
        return self.peers / ds_email / "request.yaml"

    def open_peer_request(self, ds_email: str) -> int:
        """``peers/<ds>/request.yaml`` opened for reading, following no link at any level.

        Non-blocking (a fifo answers at once); the caller checks it is a regular file.
        """
        fd = self.open_under(self.peers / ds_email)
        try:
            return open_file_at(fd, "request.yaml", f"peers/{ds_email}/")
        finally:
            os.close(fd)

    def write_peer_status(self, ds_email: str, status: str, reason: str | None) -> None:
        """Tell the requester the decision (they may read their own folder).

        Not written when their folder is a link: the app never writes through one.
        """
        if self._is_link(self.peers / ds_email):
            return
        atomic_write_yaml(
            self.peers / ds_email / "status.yaml",
            {"status": status, "decided_at": iso(), "reason": reason},
        )
