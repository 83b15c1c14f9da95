"""The Python API (``import syft_bg_app as bg``) against a real app home."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE

import syft_bg_app as bg
from syft_bg_app.errors import SyftBgError, UsageError
from syft_bg_app.store import home as home_mod

DS = "alice@uni.edu"


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=PATIENCE,
    )


def test_importing_the_package_loads_nothing_else():
    result = _python(
        """
        import sys
        import syft_bg_app
        print(sorted(m for m in sys.modules if m.startswith("syft_bg_app")))
        print("yaml" in sys.modules, "filelock" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['syft_bg_app']", "False False"]


def test_api_names_stay_functions_after_the_cli_and_a_pass_loaded_everything(app):
    result = _python(
        """
        import syft_bg_app.cli.main, syft_bg_app.passes, syft_bg_app.store.home
        import syft_bg_app as bg
        print(syft_bg_app.passes.run_pass(syft_bg_app.store.home.AppHome.resolve()).exit_code)
        print(type(bg.jobs()).__name__, type(bg.status()).__name__, callable(bg.approve))
        """,
        env=app.env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["0", "JobList TextReport True"]
    assert sorted(set(bg.API) - set(dir(bg))) == []


def test_init_writes_a_working_config(bare_app):
    with pytest.raises(UsageError, match="does not exist"):
        bg.init("owner@datasite.org", bare_app.root)
    assert not bare_app.home.config_file.exists() and not bare_app.root.exists()
    setup = bg.init("Owner@Datasite.org", bare_app.root, create=True)

    assert setup.config_file == bare_app.home.config_file
    assert bare_app.config.do_email == "owner@datasite.org"
    assert setup.datasite == bare_app.root / "owner@datasite.org"
    assert (setup.datasite / "app_data/job/peers/syft.pub.yaml").is_file()
    with pytest.raises(UsageError, match="already exists"):
        bg.init("owner@datasite.org", bare_app.root)
    bg.init("other@datasite.org", bare_app.root, force=True)
    assert bare_app.config.do_email == "other@datasite.org"
    assert bg.run_once().exit_code == 0


def test_run_once_jobs_pending_and_approve(app):
    app.submit("first")
    app.submit("second", ds_email="bob@co.com")

    result = bg.run_once()

    assert result.exit_code == 0 and "2 received" in result.summary
    pending = bg.pending()
    assert [j.label for j in pending] == ["alice@uni.edu/first", "bob@co.com/second"]
    assert pending["first"].status == "pending"
    assert pending["bob@co.com/second"].type == "bash"
    assert "run.sh" in pending["first"].files

    approved = bg.approve("first", "checked by hand")
    assert approved.status == "approved"
    state = app.job_state("first")
    assert state["approval_method"] == "manual" and state["review_reason"] == "checked by hand"
    assert [j.label for j in bg.pending()] == ["bob@co.com/second"]
    assert [j.label for j in bg.jobs("approved")] == ["alice@uni.edu/first"]
    with pytest.raises(SyftBgError, match="only pending jobs"):
        bg.approve("first")


def test_reject_sends_the_reason(app):
    app.submit("risky")
    bg.run_once()
    job = bg.jobs()["risky"]

    rejected = job.reject("prints raw rows")

    assert rejected.status == "rejected"
    assert rejected.reason == "prints raw rows"
    assert app.job_state("risky")["review_reason"] == "prints raw rows"
    assert app.job_state("risky")["rejected_by"] == app.do_email


def test_a_job_object_approves_and_shows_its_results(app):
    app.submit("hello", run_sh="#!/bin/bash\necho hello from the job\n")
    bg.run_once()

    job = bg.jobs()["hello"].approve()
    for _ in range(50):
        bg.run_once()
        job = job.refresh()
        if job.status in ("done", "failed"):
            break

    assert job.status == "done"
    assert "hello from the job" in job.stdout
    assert "stdout.txt" in job.results
    assert "job alice@uni.edu/hello" in job.describe()


def test_status_is_the_status_page(app):
    bg.run_once()
    report = bg.status()
    assert str(report.text).startswith(f"app home: {app.home.root}")
    assert "last pass:" in str(report)
    assert "<pre" in report._repr_html_()


def test_submit_and_my_jobs_as_a_data_scientist(app, tmp_path):
    script = tmp_path / "count.py"
    script.write_text("print(3)\n")

    sub = bg.submit(app.do_email, script, name="count", as_email=DS)

    assert sub.path == app.datasite.inbox / DS / "v1" / "count"
    assert sub.files == ["run.sh", "code/count.py"]
    assert sub.type == "python" and sub.peer is False
    bg.run_once()
    # Not an accepted peer yet: the job waits in the inbox, not received.
    assert not (app.datasite.review / DS / "v1" / "count").exists()
    assert bg.peers()[DS]["jobs_waiting"] == 1
    request = bg.request_peer(app.do_email, "hello", as_email=DS)
    assert request.status == "requested" and request.path.is_file()
    bg.accept_peer(DS.upper())
    bg.run_once()
    assert app.job_state("count")["status"] == "pending"
    assert bg.peers()[DS] == {
        "status": "accepted",
        "since": bg.peers()[DS]["since"],
        "message": None,  # accepted before any pass read the request
        "problem": None,
        "jobs_waiting": 0,
    }
    mine = bg.my_jobs(as_email=DS)
    assert [(j.label, j.status) for j in mine] == [(f"{app.do_email}/count", "pending")]
    assert "count" in repr(mine) and "<table" in mine._repr_html_()


# -- auto-approval -------------------------------------------------------------------


def test_auto_approve_job_trusts_exactly_that_job(app):
    files = {"main.py": "print('stats')\n"}
    run_sh = "#!/bin/bash\ncd code && python3 main.py\n"
    app.cli("peers", "accept", DS, check=True)
    app.submit("v1-of-stats", files=files, run_sh=run_sh)
    bg.run_once()

    change = bg.auto_approve_job(f"{DS}/v1-of-stats", name="stats")

    assert change.rule.name == "stats"
    assert change.rule.peers == (DS,)
    assert sorted(change.rule.files) == ["code/main.py", "run.sh"]
    assert change.rule.inert_reason() is None
    rules = bg.list_auto_approvals()
    assert [r.name for r in rules] == ["stats"]
    assert "live" in repr(rules)

    app.submit("v2-of-stats", files=files, run_sh=run_sh)  # identical content
    app.submit("changed", files={"main.py": "print('raw rows')\n"}, run_sh=run_sh)
    bg.run_once()
    assert app.job_state("v2-of-stats")["approval_method"] == "auto"
    assert app.job_state("changed")["status"] == "pending"

    removed = bg.remove_auto_approve("stats")
    assert "removed rule 'stats'" in str(removed)
    assert list(bg.list_auto_approvals()) == []
    with pytest.raises(SyftBgError, match="no auto-approval rule"):
        bg.remove_auto_approve("stats")


def test_auto_approve_from_files_and_removing_files(app, tmp_path):
    job = app.submit("template", files={"main.py": "print(1)\n", "params.json": "{}"})
    change = bg.auto_approve(
        ["run.sh", "code/main.py"],
        base_dir=job,
        name_only="code/params.json",
        peers=DS,
        name="template",
    )
    rule = change.rule
    assert rule.name == "template" and rule.peers == (DS,)
    assert sorted(rule.files) == ["code/main.py", "run.sh"]
    assert rule.name_only == frozenset({"code/params.json"})
    on_disk = yaml.safe_load(app.home.config_file.read_text())["approve"]["auto_approvals"]
    assert [r["name"] for r in on_disk] == ["template"]

    smaller = bg.remove_auto_approve("template", files=["code/params.json"])
    assert smaller.rule.name_only == frozenset()
    assert sorted(smaller.rule.files) == ["code/main.py", "run.sh"]


# -- Colab ---------------------------------------------------------------------------------


@pytest.fixture
def colab_drive(tmp_path, monkeypatch):
    drive = tmp_path / "content" / "drive" / "MyDrive"
    monkeypatch.setattr(home_mod, "COLAB_DRIVE", drive)
    monkeypatch.delenv("SYFT_BG_HOME", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return drive


def test_colab_home_is_on_drive_when_drive_is_mounted(colab_drive, monkeypatch, tmp_path):
    local = Path(tmp_path / "user" / ".syft-bg")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260101")
    assert home_mod.default_home() == local  # Drive not mounted
    colab_drive.mkdir(parents=True)
    assert home_mod.default_home() == colab_drive / "syft-bg"
    monkeypatch.setenv("SYFT_BG_HOME", str(tmp_path / "mine"))
    assert home_mod.default_home() == tmp_path / "mine"


def test_colab_is_recognised_by_its_module(colab_drive, monkeypatch, tmp_path):
    colab_drive.mkdir(parents=True)
    assert home_mod.default_home() == tmp_path / "user" / ".syft-bg"  # not Colab
    fake = tmp_path / "site"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(fake))
    try:
        assert home_mod.default_home() == colab_drive / "syft-bg"
    finally:
        sys.modules.pop("google.colab", None)
