"""A job written by syft-job's submit_python_job runs to done here: uv from the
app, the system's Python, packages from a local index the data owner configured.

The index is a folder of wheels this test builds and serves on 127.0.0.1; the
job reaches it under ``execute.network: host``, the only mode that reaches this
machine's loopback. No traffic leaves this machine.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PATIENCE, App, job_user_alone
from hostile import run_until_finished

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution import sandbox, supervisor
from syft_bg_app.store.state import State

syft_job = pytest.importorskip("syft_job")
_PROBE = sandbox.probe_bwrap(network="host")
pytestmark = pytest.mark.skipif(not _PROBE.ok, reason=f"bwrap unusable: {_PROBE.detail}")

DS = "alice@uni.edu"
SYSTEM_VERSION = (supervisor.system_pythons() or ["3"])[-1]
# What the data owner advertises as the client library jobs install, and a dependency.
CLIENT = "ds-client-stub"
DEPENDENCY = "tinydep"
MAIN = """import os
import ds_client_stub
import tinydep
os.makedirs("outputs", exist_ok=True)
with open("outputs/result.txt", "w") as handle:
    handle.write(tinydep.greet() + " " + ds_client_stub.NAME + "\\n")
print("ran with", tinydep.greet())
"""


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, module: str, source: str) -> Path:
    """A pure-Python wheel of one module, written by hand (no build backend needed)."""
    dist = f"{name.replace('-', '_')}-1.0"
    files = {
        f"{module}/__init__.py": source.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
        ),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in files.items())
    record += f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    wheel = folder / "files" / f"{dist}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    page = folder / "simple" / name / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'<html><body><a href="/files/{wheel.name}">{wheel.name}</a></body></html>\n')
    return wheel


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[str]:
    """A simple (PEP 503) index of two wheels on 127.0.0.1; yields its URL."""
    folder = tmp_path / "index"
    build_wheel(folder, CLIENT, "ds_client_stub", 'NAME = "client stub"\n')
    build_wheel(folder, DEPENDENCY, "tinydep", 'def greet():\n    return "tinydep works"\n')
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def _submit(app: App, tmp_path: Path, name: str) -> None:
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS)
    client.peer_install_sources[app.do_email] = CLIENT
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    client.submit_python_job(app.do_email, str(script), name, dependencies=[DEPENDENCY])


def _run(app: App, name: str) -> dict:
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/{name}", check=True)
    with job_user_alone():
        return run_until_finished(app, name)[name]


def test_a_submit_python_job_job_installs_from_the_owners_index_and_runs_to_done(
    tmp_path, package_index, monkeypatch
):
    # syft-job 0.1.40 asks for Python 3.12; a data scientist whose client asks for the
    # version installed here (this machine cannot download interpreters).
    monkeypatch.setattr(syft_job.client, "RUN_SCRIPT_PYTHON_VERSION", SYSTEM_VERSION)
    app = App(tmp_path).init(
        notify={"enabled": False},
        execute={"network": "host", "package_index_url": package_index, "timeout": int(PATIENCE)},
    )
    app.cli("peers", "accept", DS, check=True)
    _submit(app, tmp_path, "analysis")
    run_sh = (app.datasite.inbox / DS / "v1" / "analysis" / "run.sh").read_text()
    assert f"uv venv --python {SYSTEM_VERSION}" in run_sh and "uv pip install" in run_sh

    state = _run(app, "analysis")

    review = app.datasite.review_dir(JobRef(DS, "analysis"))
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    assert "ran with tinydep works" in (review / "stdout.txt").read_text()
    assert (review / "outputs" / "result.txt").read_text() == "tinydep works client stub\n"
    # syft-job reads the result back.
    [job] = [j for j in syft_job.get_client(str(app.root), DS).jobs if j.name == "analysis"]
    assert job.status == "done"


def test_a_submit_python_job_job_asking_for_a_python_not_here_fails_saying_so(
    tmp_path, package_index
):
    if "3.12" in supervisor.system_pythons():
        pytest.skip("Python 3.12, which syft-job 0.1.40 asks for, is installed here")
    app = App(tmp_path).init(
        notify={"enabled": False},
        execute={"network": "off", "package_index_url": package_index, "timeout": int(PATIENCE)},
    )
    app.cli("peers", "accept", DS, check=True)
    _submit(app, tmp_path, "wants-312")

    state = _run(app, "wants-312")

    assert state["status"] == "failed"
    events = State.load(app.home.state_file).data["events"]
    [event] = [e for e in events if e["kind"] == "job_finished"]
    assert (
        "the Python version the job asks for is not installed on this machine" in (event["reason"])
    )
    assert f"installed: {', '.join(supervisor.system_pythons())}" in event["reason"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://mirror.example.org/simple/", "must be an http(s) URL"),
        ("https://user:secret@mirror.example.org/simple/", "must not hold a user name or password"),
        ("not a url", "must be an http(s) URL"),
    ],
)
def test_a_package_index_url_that_is_not_a_plain_http_url_is_refused(url, problem):
    from syft_bg_app.config.load import parse_config
    from syft_bg_app.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        parse_config(f"do_email: a@b.org\nexecute:\n  package_index_url: '{url}'\n")
    assert "secret" not in str(raised.value)
