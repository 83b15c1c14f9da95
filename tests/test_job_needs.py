"""Before a job runs, the data owner hears what it needs that jobs here do not get:
network for its package installs, a Python version not installed, uv. Shown by
``jobs approve``, ``jobs show`` and the approval email; read from ``run.sh``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, App, outbox, text_of

from syft_bg_app.execution import supervisor

SYSTEM_VERSION = (supervisor.system_pythons() or ["3"])[-1]
MISSING_VERSION = next(
    f"3.{n}" for n in range(20, 5, -1) if f"3.{n}" not in supervisor.system_pythons()
)
INSTALLS_WITHOUT_NETWORK = "this job installs packages"
OFF = "jobs here run without network (execute.network: off)"


def python_run_sh(version: str = SYSTEM_VERSION, install: str = "uv pip install pandas") -> str:
    """A run.sh as syft-job's submit_python_job writes it: a venv, installs, the script."""
    return (
        "#!/bin/bash\nset -e\nexport UV_SYSTEM_PYTHON=false\ncd code\n"
        f"uv venv --python {version} .venv\n. .venv/bin/activate\n"
        f"{install}\npython main.py\n"
    )


def _app(tmp_path: Path, **execute: object) -> App:
    app = App(tmp_path).init(execute={"enabled": False, **execute})
    app.cli("peers", "accept", DS_EMAIL, check=True)
    return app


def _approve(app: App, name: str, run_sh: str, **submit: object) -> str:
    """Submit ``name``, let a pass see it, approve it; ``jobs approve``'s stdout."""
    app.submit(name, run_sh=run_sh, files={"main.py": "print(1)\n"}, **submit)
    assert app.run_pass().exit_code == 0
    return app.cli("jobs", "approve", f"{DS_EMAIL}/{name}", check=True).stdout


def _approval_email(app: App) -> tuple[str, str]:
    """(text, html) of the data owner's approval email, after a pass sends it."""
    assert app.run_pass().exit_code == 0
    [message] = [
        m for m in outbox(app) if m["To"] == DO_EMAIL and m["X-Syft-BG-Event"] == "job_approved"
    ]
    return text_of(message), message.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    "install",
    [
        "uv pip install pandas",
        "pip install pandas",
        "python -m pip install -r requirements.txt",
        "uv sync",
        "uv run --with numpy python main.py",
    ],
)
def test_an_installing_python_job_under_network_off_is_warned_at_approval(tmp_path, install):
    app = _app(tmp_path, network="off")
    out = _approve(app, "py", python_run_sh(install=install), job_type="python")
    first, *rest = out.splitlines()
    assert first.startswith("approved ")
    assert [line for line in rest if line.startswith("warning: ")] == rest
    assert len(rest) == 1, out
    assert INSTALLS_WITHOUT_NETWORK in rest[0] and OFF in rest[0]

    text, html = _approval_email(app)
    assert INSTALLS_WITHOUT_NETWORK in text and OFF in text
    assert INSTALLS_WITHOUT_NETWORK in html and "execute.network: off" in html

    shown = app.cli("jobs", "show", f"{DS_EMAIL}/py", check=True).stdout
    assert f"  warning: {INSTALLS_WITHOUT_NETWORK}" in shown


def test_a_submit_python_job_job_is_warned_about_installs_and_its_python(tmp_path):
    syft_job = pytest.importorskip("syft_job")
    if syft_job.client.RUN_SCRIPT_PYTHON_VERSION in supervisor.system_pythons():
        pytest.skip("the Python syft-job asks for is installed here")
    asked = syft_job.client.RUN_SCRIPT_PYTHON_VERSION
    app = _app(tmp_path, network="off")
    (app.root / DS_EMAIL).mkdir(parents=True, exist_ok=True)
    script = tmp_path / "main.py"
    script.write_text("print(1)\n")
    client = syft_job.get_client(str(app.root), DS_EMAIL)
    client.peer_install_sources[app.do_email] = "ds-client-stub"
    client.submit_python_job(app.do_email, str(script), "analysis", dependencies=["pandas"])
    assert app.run_pass().exit_code == 0

    out = app.cli("jobs", "approve", f"{DS_EMAIL}/analysis", check=True).stdout
    assert INSTALLS_WITHOUT_NETWORK in out and OFF in out
    installed = ", ".join(supervisor.system_pythons())
    assert f"this job asks for Python {asked}; installed here: {installed}" in out
    text, _ = _approval_email(app)
    assert f"this job asks for Python {asked}; installed here: {installed}" in text


@pytest.mark.parametrize(
    "asking",
    [
        "uv venv --python {v} .venv",
        "uv venv --python={v} .venv",
        "uv venv -p {v} .venv",
        "python{v} -m venv .venv",
        "uv run --python cpython-{v} main.py",
    ],
)
@pytest.mark.parametrize("network", ["off", "host"])
def test_a_job_asking_for_a_python_not_installed_here_is_warned(tmp_path, asking, network):
    app = _app(tmp_path, network=network)
    run_sh = f"#!/bin/bash\nset -e\ncd code\n{asking.format(v=MISSING_VERSION)}\n"
    out = _approve(app, "py", run_sh, job_type="python")
    installed = ", ".join(supervisor.system_pythons()) or "none"
    assert f"this job asks for Python {MISSING_VERSION}; installed here: {installed}" in out
    assert INSTALLS_WITHOUT_NETWORK not in out
    text, html = _approval_email(app)
    assert f"this job asks for Python {MISSING_VERSION}" in text
    assert f"this job asks for Python {MISSING_VERSION}" in html


@pytest.mark.parametrize(
    "run_sh",
    [
        "#!/bin/bash\necho hello\n",
        "#!/bin/bash\nset -e\npython3 code/main.py\n",
        # Words that look like installs but are comments or echoed text only.
        "#!/bin/bash\n# uv pip install pandas\n# uv venv --python 3.99\necho done\n",
        "#!/bin/bash\necho 'no pip here' > out.txt\nwc -l code/main.py\n",
    ],
)
def test_a_job_needing_nothing_missing_gets_no_warning(tmp_path, run_sh):
    app = _app(tmp_path, network="off")
    out = _approve(app, "plain", run_sh)
    assert out.splitlines() == [f"approved {DS_EMAIL}/plain; it runs in the next pass"]
    text, _ = _approval_email(app)
    assert "do not get" not in text and "warning" not in text.lower()


def test_a_python_job_asking_for_the_installed_python_under_host_gets_no_warning(tmp_path):
    app = _app(tmp_path, network="host")
    out = _approve(app, "py", python_run_sh(), job_type="python")
    assert "warning" not in out
    text, _ = _approval_email(app)
    assert INSTALLS_WITHOUT_NETWORK not in text


def test_an_index_on_the_owners_loopback_is_unreachable_under_internet(tmp_path):
    from syft_bg_app.execution import sandbox

    app = _app(tmp_path, network="internet", package_index_url="http://127.0.0.1:8080/simple/")
    if sandbox.job_network(app.config, "bwrap").mode != "internet":
        pytest.skip("execute.network: internet is not available here")
    out = _approve(app, "py", python_run_sh(), job_type="python")
    assert "points at this machine's loopback" in out


def test_a_job_running_uv_where_jobs_do_not_get_uv_is_warned(tmp_path):
    app = _app(tmp_path, network="host", tools=[])
    out = _approve(app, "py", python_run_sh(), job_type="python")
    assert "this job runs uv, which jobs here do not get" in out


def test_warnings_escape_nothing_the_data_scientist_wrote(tmp_path):
    # A run.sh full of terminal control characters around an install: the warning
    # is the app's own sentence; nothing of the script reaches the terminal.
    app = _app(tmp_path, network="off")
    run_sh = "#!/bin/bash\necho '\x1b]0;owned\x07'\nuv pip install \x1b[2Jpandas\n"
    out = _approve(app, "py", run_sh)
    assert INSTALLS_WITHOUT_NETWORK in out
    assert "\x1b" not in out and "\x07" not in out
