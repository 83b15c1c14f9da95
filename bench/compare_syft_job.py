"""200 trivial jobs from submission to done: this app beside syft-job's own DO loop.

Both start from the same datasite: JOBS bash jobs (``echo ok``) submitted with
the real syft-job client by ten accepted peers. syft-job's loop is what its DO
side offers (scan the inbox, approve every pending job, run the approved ones
with ``process_approved_jobs``) in one process. This app gets one auto-approval
rule trusting that exact job and runs passes back to back (each its own process,
as run.sh starts them) until every job is done.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

DO_EMAIL = "owner@bench.example"
SCRIPT = "echo ok\n"
PEERS = 10
MAX_CONCURRENT = 32


def _submit_all(root: Path, jobs: int) -> None:
    from syft_job import get_client

    (root / DO_EMAIL).mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        do = get_client(str(root), DO_EMAIL)
        for p in range(PEERS):
            (root / f"ds{p}@lab.example").mkdir(parents=True, exist_ok=True)
            do.setup_ds_job_folder_as_do(f"ds{p}@lab.example")
        for i in range(jobs):
            ds = get_client(str(root), f"ds{i % PEERS}@lab.example")
            ds.submit_bash_job(DO_EMAIL, SCRIPT, f"job-{i:04d}")


def _syft_job_loop(root: Path) -> float:
    from syft_job import create_runner, get_client

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        client = get_client(str(root), DO_EMAIL)
        client.scan_inbox()
        for job in client.jobs:
            if job.status == "pending":
                job.approve()
        create_runner(str(root), DO_EMAIL).process_approved_jobs(stream_output=False)
    return time.perf_counter() - started


def _statuses(root: Path) -> list[str]:
    review = root / DO_EMAIL / "app_data/job/review"
    return [yaml.safe_load(p.read_text())["status"] for p in review.glob("*/v1/*/state.yaml")]


def _this_app(root: Path, home: Path, jobs: int) -> tuple[float, int]:
    from syft_bg_app.datasite.jobfiles import sha256_bytes

    home.mkdir(parents=True)
    script_hash = sha256_bytes(SCRIPT.encode())
    config = {
        "do_email": DO_EMAIL,
        "syftbox_root": str(root),
        "approve": {
            "auto_approvals": [
                {"name": "echo", "files": {"run.sh": script_hash, "code/script.sh": script_hash}}
            ]
        },
        "execute": {"max_concurrent": MAX_CONCURRENT},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, SYFT_BG_HOME=str(home))
    command = [sys.executable, "-m", "syft_bg_app", "run", "--once"]
    started = time.perf_counter()
    passes = 0
    while True:
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        passes += 1
        statuses = _statuses(root)
        if len(statuses) == jobs and all(s in ("done", "failed") for s in statuses):
            break
        if passes > 20 * jobs:
            raise RuntimeError(f"jobs did not finish: {sorted(set(statuses))}")
    return time.perf_counter() - started, passes


def compare(workdir: Path, jobs: int = 200) -> list[str]:
    theirs_root, ours_root = workdir / "syft-job" / "SyftBox", workdir / "ours" / "SyftBox"
    _submit_all(theirs_root, jobs)
    shutil.copytree(theirs_root, ours_root, symlinks=True)
    theirs = _syft_job_loop(theirs_root)
    ours, passes = _this_app(ours_root, workdir / "ours" / "home", jobs)
    failed = _statuses(ours_root).count("failed")
    return [
        f"| {jobs} trivial jobs to done, syft-job DO loop | {theirs * 1000:.0f} ms | | "
        "| one process |",
        f"| {jobs} trivial jobs to done, this app | {ours * 1000:.0f} ms | | | {passes} passes, "
        f"max_concurrent {MAX_CONCURRENT}, {failed} failed |",
        f"| this app / syft-job | {ours / theirs:.2f}x | | | target <= 0.5x |",
    ]


if __name__ == "__main__":
    import tempfile

    from installed import compile_app

    compile_app()
    scratch = Path(tempfile.mkdtemp(prefix="syft-bg-compare-"))
    try:
        print("\n".join(compare(scratch, int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
