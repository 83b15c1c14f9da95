"""run.sh as SyftBox and cron call it."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PATIENCE, wait_until

RUN_SH = Path(__file__).resolve().parent.parent / "run.sh"
VENV_STAMP = RUN_SH.parent / ".venv" / ".syft-bg-env"

pytestmark = pytest.mark.skipif(
    not VENV_STAMP.exists(), reason="run.sh's environment is made by ./run.sh --test"
)


def test_run_sh_without_config_says_what_to_do(bare_app):
    result = subprocess.run(
        [str(RUN_SH)], env=bare_app.env, capture_output=True, text=True, timeout=PATIENCE
    )
    assert result.returncode == 2
    assert bare_app.command("init -e YOUR_EMAIL") in result.stderr


def test_run_sh_every_rejects_a_bad_interval(bare_app):
    result = subprocess.run(
        [str(RUN_SH), "--every", "soon"], env=bare_app.env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "usage: run.sh --every SECONDS" in result.stderr


def _received(app, name: str) -> bool:
    try:
        return app.job_state(name)["status"] == "pending"
    except FileNotFoundError:
        return False


def test_run_sh_every_starts_a_fresh_pass_process_each_interval(app):
    app.submit("first")
    loop = subprocess.Popen(
        [str(RUN_SH), "--every", "1"],
        env=app.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = app.home.logs_dir / "syft-bg.log"

    def pass_pids() -> set[str]:
        text = log.read_text() if log.exists() else ""
        return set(re.findall(r"pass started \(pid (\d+)\)", text))

    try:
        wait_until(lambda: _received(app, "first"), "the first pass to receive a job")
        app.submit("second")
        wait_until(lambda: _received(app, "second"), "a later pass to receive the second job")
    finally:
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=PATIENCE)
    assert len(pass_pids()) >= 2, log.read_text()
    assert app.job_state("first")["status"] == "pending"
    assert app.job_state("second")["status"] == "pending"
    assert err.count("syft-bg: pass ok") >= 2
