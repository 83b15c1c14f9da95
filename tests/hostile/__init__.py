"""Hostile job scripts and helpers for the execute and sandbox tests."""

from __future__ import annotations

import os
import threading
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


def run_until_finished(app, names, ds_email="alice@uni.edu", deadline=None, watch=None):
    """Run passes until every job in ``names`` is done or failed; returns their states.

    ``watch`` is called between passes (to sample processes while jobs run).
    ``deadline`` (default: the suite's PATIENCE) only ends a hang: how long jobs
    take depends on the machine, never on the test.
    """
    from conftest import PATIENCE

    deadline = PATIENCE if deadline is None else deadline
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


class ProcessSampler:
    """The most live processes marked ``marker`` seen at once, sampled from a thread
    every few milliseconds while the ``with`` block runs (however long passes take)."""

    def __init__(self, marker: str, every: float = 0.02) -> None:
        self.marker = marker
        self.every = every
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, len(marked_processes(self.marker)))
            self._stop.wait(self.every)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
