"""Time of check = time of use: approved bytes are copied into app-private storage.

On approval each file of the job is read once; the same bytes are hashed and
written to ``<app home>/snapshots/<id>/files/``, with a manifest of the hashes.
The executor runs only a copy of the snapshot, after ``verified`` has re-hashed
it against the manifest. Changes the data scientist makes after approval never
run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .datasite import JobRef
from .errors import SyftBgError
from .fsutil import atomic_write_bytes, atomic_write_json
from .jobfiles import collect, read_regular, sha256_bytes, sha256_file


class SnapshotError(SyftBgError):
    pass


def snapshot_dir(snapshots_root: Path, ref: JobRef) -> Path:
    key = hashlib.sha256(f"{ref.ds_email}\0{ref.protocol}\0{ref.name}".encode()).hexdigest()
    return snapshots_root / key[:32]


def take(
    snapshots_root: Path,
    ref: JobRef,
    job_dir: Path,
    expected: dict[str, str] | None = None,
) -> dict[str, str]:
    """Copy the job's files; return {path: sha256}. ``expected`` pins exact hashes."""
    found = collect(job_dir)
    if found.problems:
        raise SnapshotError(f"{ref.label}: " + "; ".join(found.problems))
    target = snapshot_dir(snapshots_root, ref)
    if target.exists():
        shutil.rmtree(target)
    hashes: dict[str, str] = {}
    for rel in sorted(found.files):
        try:
            # Not (job_dir / rel).read_bytes(): a file swapped for a symlink after
            # the scan must not pull an outside file into what runs.
            data = read_regular(job_dir, rel)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise SnapshotError(f"{ref.label}: {exc}") from None
        digest = sha256_bytes(data)
        if expected is not None and expected.get(rel) != digest:
            shutil.rmtree(target, ignore_errors=True)
            raise SnapshotError(f"{ref.label}: {rel} changed while it was being approved")
        atomic_write_bytes(target / "files" / rel, data, mode=0o600)
        hashes[rel] = digest
    if expected is not None and set(expected) != set(hashes):
        shutil.rmtree(target, ignore_errors=True)
        raise SnapshotError(f"{ref.label}: the job's file set changed while it was approved")
    atomic_write_json(
        target / "manifest.json",
        {"job": ref.label, "protocol": ref.protocol, "files": hashes},
        mode=0o600,
    )
    return hashes


def verified(snapshots_root: Path, ref: JobRef) -> tuple[Path, dict[str, str]]:
    """The snapshot's files folder, after every file's hash is checked again."""
    target = snapshot_dir(snapshots_root, ref)
    try:
        manifest = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{ref.label}: no usable approval snapshot ({exc})") from None
    files_dir = target / "files"
    found = collect(files_dir)
    if found.problems or set(found.files) != set(manifest["files"]):
        raise SnapshotError(f"{ref.label}: the approval snapshot's file set was altered")
    for rel, digest in manifest["files"].items():
        if sha256_file(files_dir / rel) != digest:
            raise SnapshotError(f"{ref.label}: {rel} in the approval snapshot was altered")
    return files_dir, manifest["files"]


def discard(snapshots_root: Path, ref: JobRef) -> None:
    shutil.rmtree(snapshot_dir(snapshots_root, ref), ignore_errors=True)
