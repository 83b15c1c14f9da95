"""Time of check = time of use: approved bytes are copied into app-private storage.

On approval each file of the job is read once; the same bytes are hashed and
packed into one file, ``<app home>/snapshots/<id>/files.tar``, beside a manifest
of the hashes. One file means one fsync however many files the job has, and a
crash leaves the old snapshot or the new one, never a mix. The executor runs only
a copy unpacked by ``verified``, which re-hashes every member against the
manifest first. Changes the data scientist makes after approval never run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from syft_bg_app.datasite.jobfiles import Limits, collect, read_regular, sha256_bytes
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.fsutil import atomic_write_json

PACK = "files.tar"
MANIFEST = "manifest.json"


class SnapshotError(SyftBgError):
    pass


class SnapshotMissing(SnapshotError):
    """The job has no snapshot to run (approved outside syft-bg), or it cannot be opened."""


def snapshot_dir(snapshots_root: Path, ref: JobRef) -> Path:
    return snapshots_root / ref.digest[:32]


def take(
    snapshots_root: Path,
    ref: JobRef,
    job_dir: Path,
    expected: dict[str, str] | None = None,
    dir_fd: int | None = None,
    limits: Limits | None = None,
) -> dict[str, str]:
    """Pack the job's files; return {path: sha256}. ``expected`` pins exact hashes.

    ``dir_fd`` is the job folder as the caller opened and checked it
    (``decisions.open_received_job``): every file is read below that
    descriptor, so a folder swapped for a link since is never read through.
    """
    found = collect(job_dir, limits, dir_fd)
    if found.over_limit:
        raise SnapshotError(f"{ref.label}: {found.over_limit}")
    if found.problems:
        raise SnapshotError(f"{ref.label}: " + "; ".join(found.problems))
    source = job_dir if dir_fd is None else dir_fd
    hashes: dict[str, str] = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as pack:
        for rel in sorted(found.files):
            try:
                # Not (job_dir / rel).read_bytes(): a file swapped for a symlink after
                # the scan must not pull an outside file into what runs.
                data = read_regular(source, rel)
            except OSError as exc:
                raise SnapshotError(f"{ref.label}: {exc}") from None
            digest = sha256_bytes(data)
            if expected is not None and expected.get(rel) != digest:
                raise SnapshotError(f"{ref.label}: {rel} changed while it was being approved")
            member = tarfile.TarInfo(rel)
            member.size, member.mode = len(data), 0o600
            pack.addfile(member, io.BytesIO(data))
            hashes[rel] = digest
    if expected is not None and set(expected) != set(hashes):
        raise SnapshotError(f"{ref.label}: the job's file set changed while it was approved")
    target = snapshot_dir(snapshots_root, ref)
    shutil.rmtree(target / "files", ignore_errors=True)
    # The manifest names the pack's hashes; written after the pack, a crash in
    # between leaves a mismatch that ``verified`` refuses, never a wrong run.
    atomic_write_bytes(target / PACK, buffer.getvalue(), mode=0o600)
    atomic_write_json(
        target / MANIFEST,
        {"job": ref.label, "protocol": ref.protocol, "files": hashes},
        mode=0o600,
    )
    return hashes


def verified(snapshots_root: Path, ref: JobRef) -> tuple[Path, dict[str, str]]:
    """A fresh folder of the snapshot's files, each checked against the manifest."""
    target = snapshot_dir(snapshots_root, ref)
    try:
        manifest = json.loads((target / MANIFEST).read_text())
        pack = tarfile.open(target / PACK, mode="r:")
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise SnapshotMissing(f"{ref.label}: no usable approval snapshot ({exc})") from None
    expected: dict[str, str] = manifest["files"]
    unpacked = Path(tempfile.mkdtemp(prefix=".files-", dir=target))
    try:
        with pack:
            seen = set()
            for member in pack:
                if not member.isreg() or member.name not in expected or member.name in seen:
                    raise SnapshotError(f"{ref.label}: the approval snapshot was altered")
                data = pack.extractfile(member).read()
                if sha256_bytes(data) != expected[member.name]:
                    raise SnapshotError(
                        f"{ref.label}: {member.name} in the approval snapshot was altered"
                    )
                seen.add(member.name)
                destination = unpacked / member.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(data)
                os.chmod(destination, 0o600)
        if seen != set(expected):
            raise SnapshotError(f"{ref.label}: the approval snapshot's file set was altered")
    except (SnapshotError, OSError, tarfile.TarError) as exc:
        shutil.rmtree(unpacked, ignore_errors=True)
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{ref.label}: the approval snapshot was altered ({exc})") from None
    files_dir = target / "files"
    shutil.rmtree(files_dir, ignore_errors=True)
    os.replace(unpacked, files_dir)
    return files_dir, expected
