"""Fixtures for the schedule and operations tests: nothing of the real user's
schedule is ever touched.

Every test gets its own XDG_CONFIG_HOME (where systemd user units would go)
and, unless it asks for more, a ``crontab`` and ``systemctl`` that do not
exist, so "no scheduler here" is the default. ``cron_user`` gives a test the
real crontab of a throwaway user made with useradd (root only) and removes
the user afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

MISSING = "/nonexistent/syft-bg-test-command"


@pytest.fixture(name="isolated_schedule", autouse=True)
def isolated_schedule_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config_home = tmp_path / "xdg-config"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("SYFT_BG_CRONTAB", MISSING)
    monkeypatch.setenv("SYFT_BG_SYSTEMCTL", MISSING)
    return config_home


@pytest.fixture(name="cron_user")
def cron_user_fixture(monkeypatch: pytest.MonkeyPatch):
    """The name of a throwaway user whose crontab the app edits (``crontab -u NAME``)."""
    if os.geteuid() != 0:
        pytest.skip("editing a throwaway user's crontab needs root (crontab -u, useradd)")
    for tool in ("crontab", "useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install cron passwd)")
    name = "sbgt" + uuid.uuid4().hex[:10]
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SYFT_BG_CRONTAB", f"crontab -u {name}")
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)


def crontab_of(user: str) -> str:
    result = subprocess.run(["crontab", "-u", user, "-l"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def set_crontab(user: str, text: str) -> None:
    subprocess.run(["crontab", "-u", user, "-"], input=text, text=True, check=True)
