"""Without a working sandbox no job starts, unless the data owner chose none.

``execute.sandbox: auto`` (the default) and ``bwrap`` never fall back to
running jobs unisolated: approved jobs wait, every pass fails its execute step
saying why, ``status`` and ``setup-status`` show the fix, and the data owner
gets one email. Once bwrap works the jobs start.
"""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import DS_EMAIL, App, outbox, text_of
from hostile import run_until_finished

from syft_bg_app.approval import decisions
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.session import changing
from syft_bg_app.store.state import State

WAIT_SUBJECT = "[syft-bg] approved jobs wait: the sandbox does not work"
BROKEN_BWRAP = """#!/bin/sh
echo "bwrap: setting up uid map: Permission denied" >&2
exit 1
"""


def _without_bwrap(tmp_path, monkeypatch) -> None:
    empty = tmp_path / "no-bwrap"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _with_broken_bwrap(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "broken-bwrap"
    folder.mkdir()
    (folder / "bwrap").write_text(BROKEN_BWRAP)
    (folder / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/local/bin:/usr/bin:/bin")


BREAKS = {
    "missing": (_without_bwrap, "bwrap is not installed", "apt-get install bubblewrap"),
    "unusable": (_with_broken_bwrap, "setting up uid map", "user namespaces"),
}


def _app(tmp_path, setting: str) -> App:
    app = App(tmp_path).init(execute={"sandbox": setting, "timeout": 30})
    app.cli("peers", "accept", DS_EMAIL, check=True)
    return app


def _approve(app: App, *names: str) -> None:
    for name in names:
        app.submit(name, run_sh=f"#!/bin/bash\necho ran {name}\nid -u\n")
    assert app.run_pass().exit_code == 0
    with changing(app.home, "test approvals") as ctx:
        for name in names:
            decisions.approve_job(ctx, JobRef(DS_EMAIL, name), "manual")


def _waiting_emails(app: App) -> list:
    return [m for m in outbox(app) if m["Subject"] == WAIT_SUBJECT]


@pytest.mark.parametrize("setting", ["auto", "bwrap"])
@pytest.mark.parametrize("broken", sorted(BREAKS))
def test_without_a_working_sandbox_approved_jobs_wait_and_every_pass_says_why(
    tmp_path, monkeypatch, setting, broken
):
    app = _app(tmp_path, setting)
    _approve(app, "first", "second")
    breaks, detail, fix = BREAKS[broken]
    real_path = os.environ["PATH"]
    breaks(tmp_path, monkeypatch)

    for _ in range(3):
        result = app.run_pass()
        assert result.exit_code == 1 and result.failed_steps == ["execute"]
        for name in ("first", "second"):
            assert app.job_state(name)["status"] == "approved"
        error = State.load(app.home.state_file).data["steps"]["execute"]["error"]
        assert detail in error and fix in error
        assert "never run without isolation" in error
    assert app.cli("run").returncode == 1  # the command line says so too
    assert not app.home.runs_dir.exists()  # nothing ran, not even unisolated

    status = app.cli("status").stdout
    assert "WARNING no job starts" in status and detail in status
    assert "2 approved jobs wait for a working sandbox" in status
    setup = app.cli("setup-status").stdout
    assert "✗ bwrap: bwrap" in setup and "approved jobs wait" in setup
    assert fix in setup and "execute.sandbox: none" in setup

    [mail] = _waiting_emails(app)  # one email, however many passes
    body = text_of(mail)
    assert detail in body and fix in body and "2 approved now" in body

    # bwrap works again: the jobs start and run sandboxed.
    monkeypatch.setenv("PATH", real_path)
    if not shutil.which("bwrap"):
        pytest.skip("bwrap is not installed here")
    from syft_bg_app.execution.sandbox import probe_bwrap

    if not probe_bwrap(True).ok:
        pytest.skip("bwrap does not work here")
    states = run_until_finished(app, ["first", "second"], deadline=60)
    assert {s["status"] for s in states.values()} == {"done"}
    assert "sandbox_problem" not in State.load(app.home.state_file).data["execute"]
    assert len(_waiting_emails(app)) == 1


def test_with_sandbox_none_a_root_apps_job_runs_as_a_uid_of_its_own(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the app runs as an ordinary user here (tests/test_sandbox_user.py)")
    app = _app(tmp_path, "none")
    _without_bwrap(tmp_path, monkeypatch)
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    token = app.home.root / "gmail_token.json"
    token.write_text('{"refresh_token": "SECRET-REFRESH"}')
    token.chmod(0o600)
    home = app.home.root
    reader = (
        "#!/bin/bash\n"
        "id -u\n"
        f"cat {home}/gmail_token.json\n"
        f"cat {home}/../home/gmail_token.json\n"
        f"cat {home}/state.json\n"
        f"ls {home}\n"
        f"echo x > {home}/written-by-job && echo WROTE\n"
        "cat ../../*/job/run.sh\n"
        "cat /proc/1/environ\n"
    )
    app.submit("reader", run_sh=reader)
    app.submit("other", run_sh="#!/bin/bash\n# OTHER-JOB-SECRET\nsleep 2\n")
    assert app.run_pass().exit_code == 0
    with changing(app.home, "test approvals") as ctx:
        for name in ("reader", "other"):
            decisions.approve_job(ctx, JobRef(DS_EMAIL, name), "manual")

    run_until_finished(app, ["reader", "other"], deadline=60)

    review = app.datasite.review_dir(JobRef(DS_EMAIL, "reader"))
    out = (review / "stdout.txt").read_text() + (review / "stderr.txt").read_text()
    uid = int(out.splitlines()[0])
    assert uid != 0 and uid >= 1_000_000
    assert "SECRET-REFRESH" not in out
    assert "OTHER-JOB-SECRET" not in out
    assert "WROTE" not in out and not (home / "written-by-job").exists()
    assert out.count("Permission denied") >= 5
    # The approval email says how the job runs.
    approvals = [text_of(m) for m in outbox(app) if "approved" in text_of(m)]
    assert any("unprivileged uid of its own, never as root" in t for t in approvals)
