"""A pass killed with SIGKILL at any instant loses nothing and receives nothing twice."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

from syft_bg_app.store.state import State

ROUNDS = 10
JOBS_PER_ROUND = 25
JOBS = ROUNDS * JOBS_PER_ROUND


def test_sigkill_mid_pass_then_rerun_loads_state_and_receives_each_job_once(app):
    app.set_config(notify={"enabled": False})
    rng = random.Random(20261122)
    received_at = {}
    for round_number in range(ROUNDS):
        # New work arrives each round, so every kill lands while jobs are being received.
        for i in range(round_number * JOBS_PER_ROUND, (round_number + 1) * JOBS_PER_ROUND):
            app.submit(f"job-{i:03d}", files={f"part{j}.py": f"value = {j}\n" for j in range(4)})
        proc = subprocess.Popen(
            [sys.executable, "-m", "syft_bg_app", "run", "--once"],
            env=app.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.1, 0.35))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The checkpoint must load after every kill.
        state = State.load(app.home.state_file)
        json.dumps(state.data)
        # A job's received_at, once written, never changes (never received twice).
        for i in range(JOBS):
            path = app.datasite.review / "alice@uni.edu" / "v1" / f"job-{i:03d}" / "state.yaml"
            if path.exists():
                stamp = app.job_state(f"job-{i:03d}")["received_at"]
                assert received_at.setdefault(i, stamp) == stamp, f"round {round_number}"
    result = app.cli("run", "--once")
    assert result.returncode == 0, result.stderr
    state = State.load(app.home.state_file)
    for i in range(JOBS):
        name = f"job-{i:03d}"
        assert app.job_state(name)["status"] == "pending"
        assert state.job("alice@uni.edu", name)["status"] == "pending"
        if i in received_at:
            assert app.job_state(name)["received_at"] == received_at[i]
    submitted = [e["job"] for e in state.data["events"] if e["kind"] == "job_submitted"]
    assert sorted(submitted) == [f"job-{i:03d}" for i in range(JOBS)]
    assert app.cli("run", "--once").returncode == 0
    again = State.load(app.home.state_file).data["events"]
    assert len(again) == JOBS
