"""The published syft clients from PyPI, each in a virtual environment of its own,
built on first use and cached across runs (``SYFT_BG_TEST_CACHE`` names the folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from tests.conftest import PATIENCE

SYFT_CLIENT = "syft-client==0.1.117"
SYFT_0_10 = "syft==0.10.0"
CACHE = Path(os.environ.get("SYFT_BG_TEST_CACHE", Path.home() / ".cache" / "syft-bg-tests"))


def client_venv(requirement: str) -> Path:
    """The Python of a virtual environment holding ``requirement`` from PyPI, built once."""
    folder = CACHE / requirement.replace("==", "-")
    python = folder / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", requirement],
                check=True,
                timeout=3 * PATIENCE,
            )
            (folder / ".complete").touch()
    return python


def folders_to_run(python: Path) -> list[str]:
    """The folders a sandboxed job must be able to read to start ``python``: its virtual
    environment and the installation it was made from (often in a home folder, which
    the sandbox hides), unless that is under ``/usr``, which every job sees."""
    base = subprocess.run(
        [str(python), "-c", "import sys; print(sys.base_prefix)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    ).stdout.strip()
    folders = [str(python.parent.parent)]
    if not (base + "/").startswith("/usr/"):
        folders.append(base)
    return folders
