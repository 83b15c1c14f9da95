"""A job cannot fill the data owner's disk.

Each run gets ``execute.disk_mb`` of disk: under bwrap its $HOME and /tmp are
tmpfs mounts of that size, and the supervisor measures its job folder (and,
without bwrap, its home and tmp too), stopping a job that goes past it. The
data scientist is told why; the passes beside it carry on and checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import App
from hostile import run_until_finished, script
from test_faults_disk import _in_namespace, needs_mounts
from test_sandbox import DS, MODES, _new_app, _submit_and_approve

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.store.state import State

DISK_MB = 8
# Far more than DISK_MB: only a disk limit stops these jobs in time.
FILES = 400
OVER = f"the job used more than {DISK_MB} MB of disk"


class Fill:
    def __init__(self, app, mode, states, passes):
        self.app = app
        self.mode = mode
        self.states = states
        self.passes = passes

    def event(self, name: str) -> dict:
        events = State.load(self.app.home.state_file).data["events"]
        [event] = [e for e in events if e["kind"] == "job_finished" and e["job"] == name]
        return event

    def stderr(self, name: str) -> str:
        return (self.app.datasite.review_dir(JobRef(DS, name)) / "stderr.txt").read_text()


@pytest.fixture(scope="module", params=MODES)
def fill(request, tmp_path_factory):
    mode = request.param
    app = _new_app(
        tmp_path_factory.mktemp(f"fill-{mode}"),
        mode,
        disk_mb=DISK_MB,
        timeout=120,
        file_size_mb=64,
        cpu_seconds=60,
    )
    jobs = {
        "filltmp": script("fill.sh", dir='"$TMPDIR"', count=FILES),
        "fillhome": script("fill.sh", dir='"$HOME/cache"', count=FILES),
        "filljob": script("fill.sh", dir="data", count=FILES),
        "filloutputs": script("fill.sh", dir="code/outputs", count=FILES),
        "fillunlinked": script("fill_unlinked.sh", count=FILES),
        # Faster than any measurement, and done before the next one.
        "burst": "#!/bin/bash\nfor i in $(seq 1 40); do head -c 1M /dev/zero > b$i; done\n",
        "modest": "#!/bin/bash\nhead -c 1M /dev/zero > code/outputs/one.bin\necho fine\n",
    }
    _submit_and_approve(app, jobs)
    passes = []
    states = run_until_finished(app, list(jobs), deadline=240)
    passes.append(State.load(app.home.state_file).data["last_pass"])
    yield Fill(app, mode, states, passes)


@pytest.mark.parametrize("name", ["filltmp", "fillhome"])
def test_a_job_filling_its_tmp_or_home_is_stopped_and_told_why(fill, name):
    assert fill.states[name]["status"] == "failed"
    reason = fill.event(name)["reason"]
    assert OVER in reason, reason
    assert OVER in fill.stderr(name)  # what the data scientist reads
    if fill.mode == "bwrap":
        assert "No space left on device" in fill.stderr(name)  # the tmpfs was full
    assert "the machine restarted" not in reason


@pytest.mark.parametrize("name", ["filljob", "filloutputs", "fillunlinked", "burst"])
def test_a_job_filling_its_own_folder_is_stopped_at_the_limit(fill, name):
    assert fill.states[name]["status"] == "failed"
    reason = fill.event(name)["reason"]
    assert reason.startswith(f"stopped: {OVER} (execute.disk_mb); its files ")
    assert OVER in fill.stderr(name)
    assert "wrote everything" not in fill.stderr(name)


def test_what_a_job_wrote_to_code_outputs_before_the_stop_is_published(fill):
    reason = fill.event("filloutputs")["reason"]
    assert reason.endswith("its files other than code/outputs were deleted")
    published = fill.app.datasite.review_dir(JobRef(DS, "filloutputs")) / "outputs"
    assert len(list(published.iterdir())) >= DISK_MB


def test_the_other_jobs_and_the_passes_carry_on_while_jobs_fill_the_disk(fill):
    assert fill.states["modest"]["status"] == "done"
    outputs = fill.app.datasite.review_dir(JobRef(DS, "modest")) / "outputs" / "one.bin"
    assert outputs.stat().st_size == 1024 * 1024
    last = fill.passes[-1]
    assert not last.get("failed_steps"), last
    # Every pass succeeded (run_until_finished checks) and checkpointed the outcomes.
    state = State.load(fill.app.home.state_file)
    for name, on_disk in fill.states.items():
        assert state.job(DS, name)["status"] == on_disk["status"]
    assert fill.app.run_pass().exit_code == 0


def test_finished_runs_keep_no_files_of_their_jobs(fill):
    used = 0
    for dirpath, _dirs, files in os.walk(fill.app.home.runs_dir):
        for name in files:
            used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    # Logs and status remain; what the jobs wrote is gone.
    assert used < 2 * 1024 * 1024, used
    assert not list(fill.app.home.runs_dir.glob("*/job"))


def test_jobs_wait_while_the_disk_has_no_room_for_a_run(tmp_path):
    app = _new_app(tmp_path, "none", min_free_disk_mb=1 << 30)
    _submit_and_approve(app, {"waits": "#!/bin/bash\necho never\n"})

    result = app.run_pass()

    assert result.exit_code == 1 and result.failed_steps == ["execute"]
    assert app.job_state("waits")["status"] == "approved"
    error = State.load(app.home.state_file).data["steps"]["execute"]["error"]
    assert "not enough free disk to start a job" in error
    assert "execute.min_free_disk_mb" in error
    app.set_config(execute={"min_free_disk_mb": 0})
    assert run_until_finished(app, "waits")["waits"]["status"] == "done"


def test_a_runs_folder_someone_else_made_is_refused(tmp_path):
    app = _new_app(tmp_path, "none")
    runs = app.home.runs_dir
    runs.parent.mkdir(parents=True, exist_ok=True)
    # Someone else was first in the shared folder: a link to a folder of theirs.
    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir()
    runs.symlink_to(elsewhere)
    try:
        _submit_and_approve(app, {"waits": "#!/bin/bash\necho never\n"})
        result = app.run_pass()
        assert result.exit_code == 1
        error = State.load(app.home.state_file).data["steps"]["execute"]["error"]
        assert "is not a folder of this user's" in error
        assert app.job_state("waits")["status"] == "approved"
        assert not any(elsewhere.iterdir())
    finally:
        runs.unlink()


PASSES_UNTIL_DONE = """
import json, os, subprocess, sys, time, yaml
out, state_yaml = os.environ["OUT"], os.environ["JOB_STATE"]
exits = []
for _ in range(240):
    done = subprocess.run([sys.executable, "-m", "syft_bg_app", "run", "--once"],
                          capture_output=True, text=True)
    exits.append(done.returncode)
    try:
        status = yaml.safe_load(open(state_yaml))["status"]
    except OSError:
        status = None
    if status in ("done", "failed"):
        break
    time.sleep(0.25)
done = subprocess.run([sys.executable, "-m", "syft_bg_app", "run", "--once"],
                      capture_output=True, text=True)
exits.append(done.returncode)
disk = os.statvfs(os.environ["DISK"])
json.dump({"exits": exits, "last_err": done.stderr,
           "free_mb": disk.f_bavail * disk.f_frsize // (1024 * 1024)},
          open(os.path.join(out, "result.json"), "w"))
subprocess.run(["cp", "-a", os.environ["DISK"] + "/.", os.path.join(out, "disk")], check=True)
"""


def run_on_one_small_disk(app: App, tmp_path: Path, hog: str, mount_options: str) -> dict:
    """Approve the job ``hog`` (its run.sh), then run passes until it is done with the
    app home, SyftBox folder and run folders all on one tmpfs of ``mount_options``
    (in a private mount namespace). Returns what the passes reported; the datasite
    and app home as the passes left them are copied to ``tmp_path/out/disk``."""
    disk = app.tmp
    app.cli("peers", "accept", DS, check=True)
    app.set_config(execute={"enabled": False})
    _submit_and_approve(app, {"hog": hog})
    app.set_config(execute={"enabled": True})
    out, scratch = tmp_path / "out", tmp_path / "scratch-mount"
    out.mkdir()
    scratch.mkdir()
    review = app.datasite.review_dir(JobRef(DS, "hog"))
    result = _in_namespace(
        app,
        textwrap.dedent(
            f"""
            mount -t tmpfs -o {mount_options} tmpfs "$SCRATCH"
            cp -a "$DISK/." "$SCRATCH/"
            mkdir "$SCRATCH/runs"
            mount --bind "$SCRATCH" "$DISK"
            mkdir -p "$RUNS"
            mount --bind "$DISK/runs" "$RUNS"
            "$PY" -c "$PASSES"
            """
        ),
        DISK=disk,
        SCRATCH=scratch,
        RUNS=app.home.runs_dir,
        OUT=out,
        PY=Path(sys.executable),
        JOB_STATE=review / "state.yaml",
        PASSES=PASSES_UNTIL_DONE,
    )
    assert result.returncode == 0, result.stderr
    return json.loads((out / "result.json").read_text())


@needs_mounts
def test_a_job_that_fills_the_owners_disk_is_stopped_and_the_app_carries_on(tmp_path):
    """App home, SyftBox folder and run folders on one small disk (a 48 MB tmpfs); a job
    fills it to the last byte at once. It is stopped and its files go, and the passes
    after it checkpoint and report the right reason."""
    disk = tmp_path / "disk"
    app = App(disk).init(
        notify={"enabled": False},
        execute={"sandbox": "none", "disk_mb": 20, "min_free_disk_mb": 8, "timeout": 120},
    )
    outcome = run_on_one_small_disk(
        app,
        tmp_path,
        "#!/bin/bash\nfor i in $(seq 1 100); do\n"
        "  fallocate -l 4M big$i 2>/dev/null || head -c 4M /dev/zero > big$i || break\n"
        "done\necho full\nsleep 60\n",
        "size=48m",
    )

    final = App(tmp_path / "out" / "disk")
    state = State.load(final.home.state_file)  # a whole checkpoint
    record = state.job(DS, "hog")
    assert record["status"] == "failed", record
    assert record["reason"].startswith("stopped: the job used more than 20 MB of disk"), record
    results = final.datasite.review_dir(JobRef(DS, "hog"))
    # 100 files of 4 MB do not fit: the job ran until the disk was full.
    assert "full" in (results / "stdout.txt").read_text()
    stderr = (results / "stderr.txt").read_text()
    assert "the job used more than 20 MB of disk" in stderr
    assert "machine restarted" not in stderr
    # The passes after the stop checkpoint again, and the job's files are gone.
    assert outcome["exits"][-1] == 0, outcome
    assert outcome["free_mb"] > 30, outcome
