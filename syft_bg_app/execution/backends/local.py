"""Runs on this machine: one launcher forks a detached supervisor per run.

The pass takes each run's ``supervisor.lock`` and hands the descriptor to the
launcher, which forks the supervisors (each keeps its lock for its whole life)
and prints their pids; so "lock free and not finished" later means the
supervisor is gone, whatever happened to its pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from syft_bg_app.datasite.linksafe import read_capped
from syft_bg_app.execution import sandbox
from syft_bg_app.execution.backends import Poll, Started
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.execution.supervisor import is_running, kill_run_leftovers, start_ticks
from syft_bg_app.store.home import AppHome

# The supervisor keeps at most output_cap_kb of each stream, plus its marker.
RUN_FILE_SLACK = 64 * 1024
# How long the launcher of a pass's supervisors may take to fork them all.
LAUNCH_TIMEOUT = 60
# The folder that holds the syft_bg_app package, however it was installed.
APP_PARENT = str(Path(__file__).resolve().parents[3])
# The launcher runs isolated (-I: no environment variables, no current folder on
# the path) and without site-packages (-S); the app's folder goes on the path
# after the standard library, so nothing installed beside the app can shadow it.
LAUNCHER = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from syft_bg_app.execution.supervisor import main; sys.exit(main(['--launch']))"
)


class LocalBackend:
    name = "local"

    def runs_dir(self, home: AppHome) -> Path:
        return home.runs_dir

    def start(self, layouts: list[RunLayout]) -> tuple[list[Started], str]:
        results = [Started() for _ in layouts]
        handed: list[tuple[int, RunLayout]] = []
        try:
            for layout, result in zip(layouts, results, strict=True):
                try:
                    handed.append((take_run_lock(layout), layout))
                except OSError as exc:
                    result.refused = exc
            pids, errors = start_supervisors(handed) if handed else ([], "")
        finally:
            for lock_fd, _ in handed:
                # Each supervisor holds its run's lock through the descriptor it inherited.
                os.close(lock_fd)
        started = iter(pids)
        for result in results:
            if result.refused is None:
                result.pid = next(started)
                result.ticks = start_ticks(result.pid) if result.pid is not None else None
        return results, errors

    def poll(self, layout: RunLayout) -> Poll:
        return Poll(read_run_status(layout), supervisor_alive(layout))

    def stop(self, run_id: str, status: dict[str, Any], record: dict[str, Any]) -> None:
        pid = status.get("supervisor_pid") or record.get("supervisor_pid")
        ticks = status.get("supervisor_start") or record.get("supervisor_start")
        if isinstance(pid, int) and pid > 0 and is_running(pid, ticks):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.kill_leftovers(run_id, status)

    def kill_leftovers(self, run_id: str, status: dict[str, Any]) -> int:
        return kill_run_leftovers(run_id, status.get("job_pid"), status.get("job_start"))


def supervisor_alive(layout: RunLayout) -> bool:
    """True while a supervisor holds the run's lock."""
    try:
        fd = os.open(layout.lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_run_status(layout: RunLayout) -> dict[str, Any]:
    try:
        data = json.loads(read_capped(layout.status, RUN_FILE_SLACK))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def take_run_lock(layout: RunLayout) -> int:
    """The run's lock, taken, as a descriptor to hand to its supervisor."""
    fd = _above_stdio(os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _above_stdio(fd: int) -> int:
    # A pass started with a standard stream closed must not hand one over as a lock.
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def start_supervisors(handed: list[tuple[int, RunLayout]]) -> tuple[list[int | None], str]:
    """One launcher process forks a detached supervisor per (lock fd, run folder).
    Returns their pids (None where none started) and what went wrong, in words, if
    anything did."""
    lines = "".join(f"{lock_fd} {layout.root}\n" for lock_fd, layout in handed)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, APP_PARENT],
            cwd=handed[0][1].root.parent,
            env=supervisor_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=[lock_fd for lock_fd, _ in handed],
        )
    except (OSError, subprocess.SubprocessError) as exc:
        # Counted as a failed start of each run, so a lasting cause ends in failed jobs.
        words = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        errors = f"the supervisor launcher could not be started: {words}"
        for _, layout in handed:
            note_start_error(layout, errors)
        return [None] * len(handed), errors
    try:
        out, err = process.communicate(lines.encode(), timeout=LAUNCH_TIMEOUT)
        problem = f"exit status {process.returncode}" if process.returncode else ""
    except subprocess.TimeoutExpired:
        # Supervisors it forked live on and are found by their runs' locks.
        process.kill()
        out, err = process.communicate()
        problem = f"timed out after {LAUNCH_TIMEOUT} s"
    words = out.decode("ascii", "replace").split()
    pids = [int(word) if word.isdigit() else None for word in words[: len(handed)]]
    # A launcher that died part way reported fewer pids than runs.
    pids += [None] * (len(handed) - len(pids))
    text = err.decode("utf-8", "replace").strip()
    errors = "; ".join(part for part in (problem, text.splitlines()[-1] if text else "") if part)
    if text:
        for (_, layout), pid in zip(handed, pids, strict=True):
            if pid is None:
                note_start_error(layout, text)
    return pids, errors or "no error given"


def note_start_error(layout: RunLayout, errors: str) -> None:
    try:
        with open(layout.supervisor_errors, "a", encoding="utf-8") as handle:
            handle.write(errors + "\n")
    except OSError:
        pass


def supervisor_environment() -> dict[str, str]:
    # The supervisors need nothing of the pass's environment.
    return {"PATH": sandbox.SYSTEM_PATH, "LANG": "C.UTF-8"}
