"""``run.sh --demo``: the whole flow on a throwaway datasite.

A data scientist asks to become a peer and submits a job, written in the
on-disk protocol exactly as their tools would; passes run over it and each
step is narrated. Nothing outside a temporary folder is touched.
"""

from __future__ import annotations

import email
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from syft_bg_app.config.load import render_sample
from syft_bg_app.datasite.layout import Datasite, JobRef
from syft_bg_app.invocation import command
from syft_bg_app.passes import run_pass
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import HOME_ENV, AppHome

DO_EMAIL = "owner@demo.example"
DS_EMAIL = "alice@university.example"
JOB_NAME = "mean-age"
DEMO_WAIT_SECONDS = 30

MAIN_PY = """\
import json, os, statistics

ages = [34, 29, 41, 52, 38]
os.makedirs("outputs", exist_ok=True)
with open("outputs/result.json", "w") as handle:
    json.dump({"mean_age": statistics.mean(ages), "n": len(ages)}, handle)
print("mean age computed over", len(ages), "records")
"""

RUN_SH = """\
#!/bin/bash
set -euo pipefail
cd code
python3 main.py
"""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _pass(home: AppHome, label: str) -> None:
    result = run_pass(home)
    _say(f"  pass ({label}): {result.summary}")


def _write_peer_request(datasite: Datasite) -> None:
    path = datasite.peer_request_file(DS_EMAIL)
    path.parent.mkdir(parents=True, exist_ok=True)
    request = {
        "email": DS_EMAIL,
        "requested_at": "2026-01-05T09:00:00Z",
        "message": "Hi! I study ageing and would like to run aggregate statistics.",
    }
    path.write_text(yaml.safe_dump(request))


def _write_job(datasite: Datasite) -> Path:
    folder = datasite.submission_dir(JobRef(DS_EMAIL, JOB_NAME))
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "main.py").write_text(MAIN_PY)
    (folder / "run.sh").write_text(RUN_SH)
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "canonical_name": "JobSubmissionMetadata",
                "version": "1",
                "name": JOB_NAME,
                "type": "python",
                "submitted_at": "2026-01-05T10:00:00Z",
                "entrypoint": "main.py",
                "files": ["main.py"],
                "dependencies": [],
                "job_type": "local",
            }
        )
    )
    return folder


def run_demo(keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="syft-bg-demo-"))
    home = AppHome(workdir / "home")
    root = workdir / "SyftBox"
    previous_home = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home.root)
    try:
        return _demo(workdir, home, root)
    finally:
        if previous_home is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = previous_home
        if keep:
            _say(f"\nthe demo folder is kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            gone = "removed it" if not workdir.exists() else "could not remove all of it"
            _say(f"\nthe demo ran in {workdir}; {gone} (keep it next time with --keep)")


def _demo(workdir: Path, home: AppHome, root: Path) -> int:
    from syft_bg_app.approval.decisions import approve_job
    from syft_bg_app.session import changing

    _say(f"syft-bg demo in {workdir}")
    _say(f"  data owner {DO_EMAIL}; data scientist {DS_EMAIL}\n")
    home.ensure()
    config_text = render_sample(DO_EMAIL, str(root)).replace(
        "approved_domains: []", "approved_domains: [university.example]"
    )
    atomic_write_text(home.config_file, config_text, mode=0o600)
    datasite = Datasite(root, DO_EMAIL)
    datasite.ensure_base_layout()
    _say("1. syft-bg init wrote config.yaml; its rule: accept peers from university.example")

    _write_peer_request(datasite)
    _say(f"2. {DS_EMAIL} asks to become a peer (peers/{DS_EMAIL}/request.yaml)")
    _pass(home, "request received and accepted by the domain rule")

    _write_job(datasite)
    _say(f"3. {DS_EMAIL} submits the python job {JOB_NAME!r} (inbox/{DS_EMAIL}/v1/{JOB_NAME}/)")
    _pass(home, "job received, pending review")

    ref = JobRef(DS_EMAIL, JOB_NAME)
    with changing(home, "demo approve") as ctx:
        approve_job(ctx, ref, "manual", reason="aggregate only")
    _say(f"4. the data owner approves it: {command(f'jobs approve {DS_EMAIL}/{JOB_NAME}')}")
    _pass(home, "approved job started")

    deadline = time.monotonic() + DEMO_WAIT_SECONDS
    status = datasite.read_job_state(ref)["status"]
    last = None
    while status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        last = run_pass(home)
        status = datasite.read_job_state(ref)["status"]
    if last is not None:
        _say(f"  pass (run finished and reaped): {last.summary}")
    _say(f"5. the job is {status}")
    review = datasite.review_dir(ref)
    for name in ("stdout.txt", "outputs/result.json"):
        path = review / name
        if path.is_file():
            _say(f"   {name}: {path.read_text().strip()}")
    _pass(home, "final notifications")
    emails = sorted(home.outbox_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    _say(f"6. emails written to the outbox: {len(emails)}")
    for eml in emails:
        message = email.message_from_bytes(eml.read_bytes())
        _say(f"   to {message['To']}: {message['Subject']}")
    _say("\ndone: this is what each ./run.sh does on your real datasite.")
    return 0 if status == "done" else 1
