"""Hostile job scripts and helpers for the execute and sandbox tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def script(name: str, **values: object) -> str:
    """A job script from this folder with its __PLACEHOLDERS__ filled in."""
    text = (HERE / name).read_text()
    for key, value in values.items():
        text = text.replace(f"__{key.upper()}__", str(value))
    return text


def marked_processes(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{name}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != b"Z":
            found.append(int(name))
    return found


def run_until_finished(app, names, ds_email="alice@uni.edu", deadline=60.0, watch=None):
    """Run passes until every job in ``names`` is done or failed; returns their states.

    ``watch`` is called between passes (to sample processes while jobs run).
    """
    names = [names] if isinstance(names, str) else list(names)
    end = time.monotonic() + deadline
    while True:
        result = app.run_pass()
        assert result.exit_code == 0, result.summary
        states = {name: app.job_state(name, ds_email) for name in names}
        if all(s["status"] in ("done", "failed") for s in states.values()):
            return states
        assert time.monotonic() < end, f"jobs did not finish: {states}"
        if watch is not None:
            watch()
        time.sleep(0.1)
