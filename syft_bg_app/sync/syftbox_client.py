"""What the SyftBox client itself says about the SyftBox folder.

The client keeps a JSON config (``~/.syftbox/config.json``; the
``SYFTBOX_CLIENT_CONFIG_PATH`` environment variable names another; older
clients used ``~/.syftbox/client_config.json``) whose ``data_dir`` is the
SyftBox folder and ``email`` the owner. ``init`` offers that folder when the
one it was given does not exist, and ``setup-status`` looks for the client's
traces to tell a real SyftBox folder from a mistyped one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

CONFIG_PATH_ENV = "SYFTBOX_CLIENT_CONFIG_PATH"
# Folders the SyftBox clients make inside the SyftBox folder besides datasites.
CLIENT_FOLDERS = ("apps", ".syftbox", ".data", "plugins")
_EMAIL_NAME = re.compile(r"[^@/\s]+@[^@/\s]+\.[^@/\s]+")


@dataclass(frozen=True)
class ClientConfig:
    path: Path
    data_dir: Path | None
    email: str | None


def config_candidates() -> list[Path]:
    explicit = os.environ.get(CONFIG_PATH_ENV)
    if explicit:
        return [Path(explicit).expanduser()]
    base = Path.home() / ".syftbox"
    return [base / "config.json", base / "client_config.json"]


def read_client_config() -> ClientConfig | None:
    """The first SyftBox client config that exists and reads as a JSON object."""
    for path in config_candidates():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        data_dir = data.get("data_dir")
        email = data.get("email")
        return ClientConfig(
            path,
            Path(data_dir).expanduser() if isinstance(data_dir, str) and data_dir else None,
            email if isinstance(email, str) else None,
        )
    return None


def client_folder() -> ClientConfig | None:
    """The client config when it names a SyftBox folder that exists."""
    config = read_client_config()
    if config is None or config.data_dir is None or not config.data_dir.is_dir():
        return None
    return config


def traces(root: Path, own_datasite: Path) -> list[str]:
    """Signs that ``root`` is a SyftBox folder a client keeps, not just a folder."""
    found: list[str] = []
    config = read_client_config()
    if config is not None and config.data_dir is not None:
        try:
            if os.path.samefile(config.data_dir, root):
                found.append(f"named by {config.path}")
        except OSError:
            pass
    for name in CLIENT_FOLDERS:
        if (root / name).is_dir():
            found.append(f"{name}/")
    holder = own_datasite.parent
    try:
        others = [
            entry.name
            for entry in os.scandir(holder)
            if entry.name != own_datasite.name
            and _EMAIL_NAME.fullmatch(entry.name)
            and entry.is_dir(follow_symlinks=False)
        ]
    except OSError:
        others = []
    if others:
        found.append(f"{len(others)} other datasite(s)")
    return found
