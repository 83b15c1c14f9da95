"""syft-job python jobs: uv from the app's environment, the system's Python, and
failures the data scientist can act on. Real bwrap, real uv, no index reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PATIENCE, App, job_user_alone
from hostile import run_until_finished

from syft_bg_app.approval import decisions
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution import sandbox, supervisor
from syft_bg_app.session import changing
from syft_bg_app.store.state import State

DS = "alice@uni.edu"
_PROBE = sandbox.probe_bwrap(network="off")
pytestmark = pytest.mark.skipif(not _PROBE.ok, reason=f"bwrap unusable: {_PROBE.detail}")
# The newest Python of the system, the one a job can ask uv for here.
SYSTEM_VERSION = (supervisor.system_pythons() or ["3"])[-1]


def _run(tmp_path: Path, run_sh: str, **execute: object) -> tuple[dict, str, str, str]:
    """Run one job to its end; (state, stdout, stderr, reason the DS is told)."""
    app = App(tmp_path).init(
        notify={"enabled": False},
        execute={"timeout": int(PATIENCE), "sandbox": "auto", **execute},
    )
    app.cli("peers", "accept", DS, check=True)
    app.submit("py", run_sh=run_sh, job_type="python")
    assert app.run_pass().exit_code == 0
    with changing(app.home, "test approval") as ctx:
        decisions.approve_job(ctx, JobRef(DS, "py"), "manual")
    with job_user_alone():
        state = run_until_finished(app, "py")["py"]
    review = app.datasite.review_dir(JobRef(DS, "py"))
    events = State.load(app.home.state_file).data["events"]
    [event] = [e for e in events if e["kind"] == "job_finished"]
    return (
        state,
        (review / "stdout.txt").read_text(),
        (review / "stderr.txt").read_text(),
        event.get("reason") or "",
    )


def test_a_job_finds_uv_and_makes_a_venv_with_the_systems_python(tmp_path):
    run_sh = (
        "#!/bin/bash\nset -e\ncd code\ncommand -v uv\nuv --version\n"
        f"uv venv --python {SYSTEM_VERSION} .venv\n"
        ".venv/bin/python -c 'import sys; print(\"venv python\", sys.version_info[:2])'\n"
    )
    state, out, err, _ = _run(tmp_path, run_sh, network="off")
    assert state["status"] == "done", err
    assert "/sandbox/bin/uv" in out
    assert "uv 0.13.9" in out
    assert f"venv python ({SYSTEM_VERSION.replace('.', ', ')})" in out


def _missing_version() -> str:
    """A Python 3 version this machine does not have."""
    installed = set(supervisor.system_pythons())
    return next(f"3.{n}" for n in range(20, 5, -1) if f"3.{n}" not in installed)


@pytest.mark.parametrize("network", ["off", "internet"])
def test_a_job_asking_for_a_python_not_installed_here_is_told_which_are(tmp_path, network):
    version = _missing_version()
    # With network, uv would download the interpreter from the internet: not from a test.
    never = "export UV_PYTHON_DOWNLOADS=never\n" if network != "off" else ""
    run_sh = (
        f"#!/bin/bash\nset -e\n{never}cd code\nuv venv --python {version} .venv\necho made it\n"
    )
    state, out, err, reason = _run(tmp_path, run_sh, network=network)
    assert state["status"] == "failed"
    assert "made it" not in out
    assert "the Python version the job asks for is not installed on this machine" in reason
    assert f"installed: {SYSTEM_VERSION}" in reason
    assert reason in err  # the data scientist reads it in stderr.txt too


@pytest.mark.parametrize(
    ("network", "why"),
    [
        ("off", "this data owner runs jobs without network (execute.network: off)"),
        ("internet", "the network jobs get here did not reach it"),
    ],
)
def test_a_job_whose_installs_cannot_reach_the_index_is_told_so(tmp_path, network, why):
    # An index on an address nothing answers for: no traffic leaves this machine.
    run_sh = (
        "#!/bin/bash\nset -e\ncd code\n"
        f"uv venv --python {SYSTEM_VERSION} .venv\n. .venv/bin/activate\n"
        "UV_HTTP_RETRIES=0 uv pip install --index-url http://127.0.0.1:9/simple/ requests\n"
        "echo installed\n"
    )
    state, out, err, reason = _run(tmp_path, run_sh, network=network)
    assert state["status"] == "failed"
    assert "installed" not in out
    assert f"uv could not reach the package index: {why}" in reason


def test_a_job_without_uv_is_told_uv_is_not_available(tmp_path):
    state, _out, _err, reason = _run(
        tmp_path, "#!/bin/bash\nuv venv .venv\n", network="off", tools=[]
    )
    assert state["status"] == "failed"
    assert reason == (
        "exited with return code 127; uv is not available to jobs on this machine "
        "(ask the data owner)"
    )


def test_uv_failures_are_explained_only_from_the_last_error():
    tail = b"error: failed to fetch: x\nlater\nerror: something else entirely\n"
    assert supervisor.explain_uv_failure(tail, "off") is None
    assert supervisor.explain_uv_failure(b"plain failure\n", "off") is None
