"""One pass at a time per app home; a dead holder never blocks the next pass."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from itertools import pairwise

from conftest import PATIENCE

from syft_bg_app.session import LOCK_WAIT_SECONDS

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from syft_bg_app.store.home import AppHome
    from syft_bg_app.store.lock import PassLock
    lock = PassLock(AppHome.resolve(sys.argv[1]))
    assert lock.acquire()
    print("holding", flush=True)
    time.sleep(3600)
    """
)


def _hold_lock(app) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(app.home.root)],
        stdout=subprocess.PIPE,
        text=True,
        env=app.env,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_pass_exits_0_at_once_naming_the_running_one(app):
    app.submit("waiting")
    holder = _hold_lock(app)
    try:
        started = time.monotonic()
        result = app.cli("run", "--once")
        elapsed = time.monotonic() - started
        still_held = holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0
    assert re.search(rf"another pass is running \(pid {holder.pid}, since 20\d\d-", result.stderr)
    # It returned while the lock was still held, so it did not wait for it; and well
    # before a command that does wait would give up (generous: the machine may be slow).
    assert still_held
    assert elapsed < LOCK_WAIT_SECONDS / 2, elapsed
    assert not (app.datasite.review / "alice@uni.edu" / "v1" / "waiting").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(app):
    app.submit("after-crash")
    holder = _hold_lock(app)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    result = app.cli("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "another pass" not in result.stderr
    assert app.job_state("after-crash")["status"] == "pending"


def test_changing_commands_wait_for_a_running_pass(app):
    app.submit("to-approve")
    app.run_pass()
    holder = _hold_lock(app)
    approver = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app", "jobs", "approve", "to-approve"],
        env=app.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    assert approver.poll() is None, "approve must wait for the lock"
    assert app.job_state("to-approve")["status"] == "pending"
    holder.kill()
    holder.wait()
    out, err = approver.communicate(timeout=PATIENCE)
    assert approver.returncode == 0, err
    assert app.job_state("to-approve")["status"] == "approved"


def test_passes_started_together_never_overlap_and_receive_each_job_once(app):
    app.set_config(notify={"enabled": False})
    for i in range(60):
        app.submit(f"job-{i:02d}", files={f"f{j}.py": f"x = {j}\n" for j in range(5)})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "syft_bg_app", "run", "--once"],
            env=app.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=PATIENCE) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    worked = [err for _, err in outputs if "another pass is running" not in err]
    assert len(worked) >= 1
    assert any("60 received" in err for err in worked)
    log = (app.home.logs_dir / "syft-bg.log").read_text()
    intervals = _pass_intervals(log)
    assert len(intervals) == len(worked)
    for (_, end_a), (start_b, _) in pairwise(intervals):
        assert end_a <= start_b
    from syft_bg_app.store.state import State

    events = State.load(app.home.state_file).data["events"]
    assert len(events) == 60
    assert len({e["job"] for e in events}) == 60


def _pass_intervals(log: str) -> list[tuple[int, int]]:
    """(start line, end line) of each pass, by process id, in log order."""
    starts, spans = {}, []
    for number, line in enumerate(log.splitlines()):
        match = re.match(r"\S+ \S+ (\d+) INFO syft_bg\.pass: (pass started|pass ok)", line)
        if not match:
            continue
        pid, what = match.groups()
        if what == "pass started":
            starts[pid] = number
        else:
            spans.append((starts.pop(pid), number))
    assert not starts, "a pass started but never finished"
    return sorted(spans)
