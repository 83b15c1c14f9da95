"""Atomic file writes and the names sync clients never deliver.

Every file this app writes goes through ``atomic_write_bytes``: the bytes go to
a temporary file in the same folder, are fsynced, and replace the target with
``os.replace``; the folder is fsynced too, so after ``kill -9`` or a power cut a
reader sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

# Sync clients skip these, so they never count as part of a job.
IGNORED_SUFFIXES = (".log", ".tmp")
IGNORED_DIRS = frozenset({".venv", "__pycache__"})
PERMISSION_FILE = "syft.pub.yaml"

# libyaml's C loader and dumper when PyYAML was built with them: the same safe
# subset of YAML, several times faster on the state files every pass reads.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YAML_LOADER)


def is_ignored_name(name: str, is_dir: bool) -> bool:
    """True for names a sync client never delivers (and that never count)."""
    if is_dir:
        return name in IGNORED_DIRS
    return name.endswith(IGNORED_SUFFIXES) or name.startswith(".syft-bg-tmp-")


def fsync_dir(path: Path) -> None:
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


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".syft-bg-tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_yaml(path: Path, data: Any, mode: int = 0o644) -> None:
    text = yaml.dump(data, Dumper=YAML_DUMPER, default_flow_style=False, sort_keys=True)
    atomic_write_text(path, text, mode)


def atomic_write_json(path: Path, data: Any, mode: int = 0o644, compact: bool = False) -> None:
    if compact:
        text = json.dumps(data, separators=(",", ":"))
    else:
        text = json.dumps(data, indent=1, sort_keys=True)
    atomic_write_text(path, text + "\n", mode)


def append_line(path: Path, line: str, mode: int = 0o600) -> None:
    """Append one line with a single write and fsync (an audit-log style record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
