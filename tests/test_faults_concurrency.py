"""Eight ``run.sh`` started at once, round after round, while work keeps arriving:
one pass at a time (the logged passes never overlap), and afterwards every approved
job has run exactly once and every email has arrived once."""

from __future__ import annotations

import subprocess
import time
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import PATIENCE
from faults_support import Scenario, check_outcome, pass_intervals, run_until_quiet

from syft_bg_app.store.state import State

RUN_SH = Path(__file__).resolve().parent.parent / "run.sh"
VENV_STAMP = RUN_SH.parent / ".venv" / ".syft-bg-env"
AT_ONCE = 8
ROUNDS = 25

pytestmark = pytest.mark.skipif(
    not VENV_STAMP.exists(), reason="run.sh's environment is made by ./run.sh --test"
)


def test_eight_run_sh_at_once_for_25_rounds_never_overlap_and_lose_nothing(app, tmp_path):
    scenario = Scenario.build(app, tmp_path / "ledger.txt", rounds=ROUNDS)
    started = time.monotonic()
    worked = 0
    for round_number in range(ROUNDS):
        scenario.arrive(round_number)
        # Even rounds start all eight together; odd rounds spread them over half a
        # second, so that later ones arrive while the first pass works or just after.
        spread = 0.0 if round_number % 2 == 0 else 0.5 / AT_ONCE
        procs = []
        for _ in range(AT_ONCE):
            procs.append(
                subprocess.Popen(
                    [str(RUN_SH)],
                    env=app.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            time.sleep(spread)
        outputs = [p.communicate(timeout=PATIENCE)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * AT_ONCE, outputs
        # Each one either did the pass or said at once that another one was doing it.
        passes = [err for err in outputs if "another pass is running" not in err]
        assert passes, outputs
        assert all("syft-bg: pass ok" in err for err in passes), passes
        worked += len(passes)
        # The checkpoint is whole between rounds, whoever wrote it last.
        State.load(app.home.state_file)
    run_until_quiet(app)

    intervals = pass_intervals(app)
    # Every pass that took the lock logged its start and its end ...
    assert all(end != float("inf") for _, end, _ in intervals), intervals
    assert len(intervals) >= worked + 1
    # ... and no two of them overlap.
    for (_, end_a, pid_a), (start_b, _, pid_b) in pairwise(intervals):
        assert end_a < start_b, f"passes {pid_a} and {pid_b} overlap"
    figures = check_outcome(scenario)
    print(
        f"\n{ROUNDS} rounds x {AT_ONCE} run.sh: {worked} passes did the work, "
        f"{ROUNDS * AT_ONCE - worked} found another one running; {figures['emails']} emails; "
        f"{time.monotonic() - started:.1f}s"
    )
