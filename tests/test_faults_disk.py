"""A full disk or a read-only app home: the pass stops with a clear error (exit 1),
the checkpoint stays whole, and the first pass after space returns carries on and
loses nothing.

The disk fills up for real where the kernel lets the test mount a small tmpfs or a
read-only bind mount in a private mount namespace (``unshare -m``, root); those
tests are skipped elsewhere. A pass whose file writes start failing with ENOSPC at
a chosen point runs everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE, App
from faults_support import (
    Scenario,
    check_outcome,
    count_writes,
    email_table,
    outbox_messages,
    run_until_quiet,
    run_with_full_disk,
)

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.store.state import State

STOPPED = "syft-bg: the pass stopped:"


def _scenario(app: App, tmp_path: Path, **config) -> Scenario:
    scenario = Scenario.build(
        app, tmp_path / "ledger.txt", rounds=1, peers=2, jobs_per_peer=2, off_rule=0, **config
    )
    # The first pass sees an empty datasite; what arrives next is new work: the
    # peers are accepted first, so that the pass under test receives their jobs.
    assert app.cli("run", "--once").returncode == 0
    scenario.arrive(0, jobs=False)
    assert app.cli("run", "--once").returncode == 0
    scenario.arrive(0, requests=False)
    return scenario


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# The pass that receives this scenario's jobs makes over a hundred file writes: the
# lock's owner file, review state files, mail files, snapshots, the checkpoint. The
# disk fills up before the first of them, and at points inside each step: fractions
# of the writes the same pass makes on a twin of the scenario with room to spare.
@pytest.mark.parametrize("fraction", [0, 0.05, 0.3, 0.75, 0.97])
def test_a_disk_that_fills_up_mid_pass_stops_it_clearly_and_the_next_pass_loses_nothing(
    app, tmp_path, fraction
):
    twin = App(tmp_path / "twin").init()
    _scenario(twin, tmp_path / "twin")
    writes = count_writes(twin, tmp_path / "twin", "run", "--once")
    after = int(writes * fraction)
    scenario = _scenario(app, tmp_path)
    before = app.home.state_file.read_bytes()

    result = run_with_full_disk(app, tmp_path, after, "run", "--once")

    assert result.returncode == 1, result.stderr
    line = _last_line(result.stderr)
    assert line.startswith(STOPPED) and "No space left on device" in line, result.stderr
    assert "free some disk space and the next pass carries on" in line
    # Whatever instant the disk filled up, the checkpoint loads; before the first
    # write it is byte for byte what it was.
    State.load(app.home.state_file)
    if after == 0:
        assert app.home.state_file.read_bytes() == before
    # Space is back: the passes carry on and nothing is lost or done twice.
    run_until_quiet(app)
    check_outcome(scenario)


def test_no_space_for_a_run_folder_leaves_the_job_approved_until_space_returns(app, tmp_path):
    """Only the run folders' disk is full: the job is not failed for it, it waits."""
    scenario = _scenario(app, tmp_path)
    app.home.runs_dir.mkdir(parents=True, exist_ok=True)

    result = run_with_full_disk(app, app.home.runs_dir, 0, "run", "--once")

    assert result.returncode == 1, result.stderr
    assert "pass finished with failed steps: execute" in _last_line(result.stderr)
    state = State.load(app.home.state_file)
    for job in scenario.approved:
        assert state.job(job.ds, job.name)["status"] == "approved"
        assert app.job_state(job.name, job.ds)["status"] == "approved"
    status = app.cli("status", check=True).stdout
    assert "execute  enabled   FAILED" in status and "No space left on device" in status
    assert not scenario.ledger.read_text()

    run_until_quiet(app)
    check_outcome(scenario)


def _can_mount() -> str | None:
    """Why private mounts cannot be made here, or None when they can."""
    if sys.platform != "linux" or not shutil.which("unshare"):
        return "needs Linux and unshare"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot mount in a private namespace here: {probe.stderr.strip()}"
    return None


needs_mounts = pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))


def _in_namespace(app: App, script: str, **paths: Path) -> subprocess.CompletedProcess:
    """Run a bash script in a private mount namespace (its mounts vanish with it)."""
    env = {**app.env, **{name: str(path) for name, path in paths.items()}}
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-euc", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


@needs_mounts
def test_a_read_only_app_home_is_refused_clearly_and_nothing_changes(app, tmp_path):
    scenario = _scenario(app, tmp_path)
    before = app.home.state_file.read_bytes()
    result = _in_namespace(
        app,
        textwrap.dedent(
            """
            mount --bind "$HOME_DIR" "$HOME_DIR"
            mount -o remount,bind,ro "$HOME_DIR"
            set +e
            "$PY" -m syft_bg_app run --once
            echo "exit=$?" >&2
            """
        ),
        HOME_DIR=app.home.root,
        PY=Path(sys.executable),
    )
    err = result.stderr.strip().splitlines()
    assert err[-1] == "exit=1", result.stderr
    assert err[-2].startswith(STOPPED) and "Read-only file system" in err[-2], result.stderr
    assert "make that folder writable for this user" in err[-2]
    assert app.home.state_file.read_bytes() == before
    # Nothing was received while the app home could not record it.
    job = scenario.jobs[0]
    assert not (app.datasite.review_dir(JobRef(job.ds, job.name)) / "state.yaml").exists()

    run_until_quiet(app)
    check_outcome(scenario)


@needs_mounts
def test_a_really_full_filesystem_then_space_returns(tmp_path):
    """The app home and the SyftBox folder on a small tmpfs filled to the last byte."""
    disk = tmp_path / "disk"
    app = App(disk)
    app.init()
    # Detached job runs would outlive the namespace; here the other steps are enough.
    scenario = _scenario(app, disk, execute={"enabled": False})
    out, scratch = tmp_path / "out", tmp_path / "scratch-mount"
    out.mkdir()
    scratch.mkdir()
    result = _in_namespace(
        app,
        textwrap.dedent(
            """
            mount -t tmpfs -o size=16m tmpfs "$SCRATCH"
            cp -a "$DISK/." "$SCRATCH/"
            mount --bind "$SCRATCH" "$DISK"
            cp "$DISK/home/state.json" "$OUT/state-before.json"
            dd if=/dev/zero of="$DISK/filler" bs=64k 2>/dev/null || true
            set +e
            "$PY" -m syft_bg_app run --once 2> "$OUT/full.err"
            echo $? > "$OUT/full.exit"
            cp "$DISK/home/state.json" "$OUT/state-full.json"
            rm "$DISK/filler"
            for n in 1 2 3 4; do "$PY" -m syft_bg_app run --once 2>> "$OUT/after.err"; done
            echo $? > "$OUT/after.exit"
            cp -a "$DISK/." "$OUT/disk/"
            """
        ),
        DISK=disk,
        SCRATCH=scratch,
        OUT=out,
        PY=Path(sys.executable),
    )
    assert result.returncode == 0, result.stderr

    assert (out / "full.exit").read_text().strip() == "1"
    line = _last_line((out / "full.err").read_text())
    assert line.startswith(STOPPED) and "No space left on device" in line, line
    assert (out / "state-full.json").read_bytes() == (out / "state-before.json").read_bytes()
    assert (out / "after.exit").read_text().strip() == "0", (out / "after.err").read_text()

    # What the passes after the space came back made of it: everything received and
    # decided, every email of the table once.
    final = App(out / "disk")
    state = State.load(final.home.state_file)
    for job in scenario.jobs:
        record = state.job(job.ds, job.name)
        assert record is not None and record["status"] == "approved", (job.label, record)
        review = final.datasite.review_dir(JobRef(job.ds, job.name))
        assert yaml.safe_load((review / "state.yaml").read_text())["status"] == "approved"
    # Jobs do not run here (execute is off), so there is no "finished" email yet.
    expected = Counter(
        {key: n for key, n in scenario.expected_emails().items() if key[1] != "job_finished"}
    )
    assert email_table(outbox_messages(final)) == expected
    assert state.data["mail"]["queue"] == [] and state.data["events"] == []
