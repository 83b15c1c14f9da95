"""Fixtures for the schedule and operations tests: nothing of the real user's
schedule is ever touched.

Every test gets its own XDG_CONFIG_HOME and no crontab or systemctl (the
autouse ``isolated_schedule`` fixture of conftest.py). ``cron_user`` gives a
test the real crontab of a throwaway user made with useradd (root only) and
removes the user afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest
from conftest import PATIENCE


def _account_command(argv: list[str]) -> subprocess.CompletedProcess:
    """useradd/userdel, retried while another one holds the lock on /etc/passwd
    (parallel test workers, or anyone else on the machine, add users too)."""
    end = time.monotonic() + PATIENCE
    while True:
        result = subprocess.run(argv, capture_output=True, text=True)
        busy = "lock" in (result.stderr or "").lower()
        if result.returncode == 0 or not busy or time.monotonic() > end:
            return result
        time.sleep(0.2)


@pytest.fixture(name="cron_user")
def cron_user_fixture(monkeypatch: pytest.MonkeyPatch):
    """The name of a throwaway user whose crontab the app edits (``crontab -u NAME``)."""
    if os.geteuid() != 0:
        pytest.skip("editing a throwaway user's crontab needs root (crontab -u, useradd)")
    for tool in ("crontab", "useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install cron passwd)")
    name = "sbgt" + uuid.uuid4().hex[:10]
    made = _account_command(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
    assert made.returncode == 0, made.stderr
    monkeypatch.setenv("SYFT_BG_CRONTAB", f"crontab -u {name}")
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True)
        _account_command(["userdel", name])


def crontab_of(user: str) -> str:
    result = subprocess.run(["crontab", "-u", user, "-l"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def set_crontab(user: str, text: str) -> None:
    subprocess.run(["crontab", "-u", user, "-"], input=text, text=True, check=True)
