"""The rule commands: hash, auto-approve, list/remove-auto-approval, remove-peer."""

from __future__ import annotations

import hashlib

from syft_bg_app.approval.rules import Rule

ALICE = "alice@uni.edu"
BOB = "bob@co.com"


def sha(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def rules(app) -> dict[str, dict]:
    return {r["name"]: r for r in app.config.get("approve.auto_approvals")}


def job_folder(tmp_path, name="job"):
    folder = tmp_path / name
    (folder / "code" / "lib").mkdir(parents=True)
    (folder / "run.sh").write_text("#!/bin/bash\npython code/main.py\n")
    (folder / "code" / "main.py").write_text("print(1)\n")
    (folder / "code" / "lib" / "util.py").write_text("X = 1\n")
    (folder / "code" / "__pycache__").mkdir()
    (folder / "code" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (folder / "config.yaml").write_text("name: job\n")
    return folder


def test_hash_prints_the_raw_bytes_hash(app, tmp_path):
    lf = tmp_path / "lf.sh"
    crlf = tmp_path / "crlf.sh"
    lf.write_bytes(b"echo hi\n")
    crlf.write_bytes(b"echo hi\r\n")

    one = app.cli("hash", str(lf), check=True).stdout
    both = app.cli("hash", str(lf), str(crlf), check=True).stdout

    assert one == sha(b"echo hi\n") + "\n"
    lf_hash, crlf_hash = sha(b"echo hi\n"), sha(b"echo hi\r\n")
    assert lf_hash != crlf_hash
    assert both.splitlines() == [f"{lf_hash}  {lf}", f"{crlf_hash}  {crlf}"]
    assert app.cli("hash", str(tmp_path)).returncode == 2
    assert app.cli("hash", str(tmp_path / "missing")).returncode == 2


def test_auto_approve_a_job_folder_trusts_run_sh_and_code_only(app, tmp_path):
    folder = job_folder(tmp_path)

    out = app.cli("auto-approve", ".", "-b", str(folder), "-p", ALICE, "-n", "ana", check=True)

    rule = rules(app)["ana"]
    assert rule["files"] == {
        "run.sh": sha("#!/bin/bash\npython code/main.py\n"),
        "code/main.py": sha("print(1)\n"),
        "code/lib/util.py": sha("X = 1\n"),
    }
    assert rule["peers"] == [ALICE]
    assert "skipped config.yaml" in out.stdout
    assert "[live]" in out.stdout


def test_auto_approve_outside_a_job_folder_reads_paths_under_code_like_0_3(app, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print(2)\n")

    out = app.cli(
        "auto-approve", "main.py", "-b", str(project), "-f", "config.yaml", check=True
    ).stdout

    rule = rules(app)["main"]
    assert rule["files"] == {"code/main.py": sha("print(2)\n")}
    assert rule["name_only"] == ["code/config.yaml"]
    assert rule["peers"] == []
    assert "approves nothing yet" in out and "run.sh" in out


def test_extending_a_rule_with_run_sh_makes_it_live(app, tmp_path):
    folder = job_folder(tmp_path)
    app.cli("auto-approve", "code", "-b", str(folder), "-n", "ana", check=True)
    assert Rule.from_dict(rules(app)["ana"]).inert_reason() is not None

    out = app.cli("auto-approve", "run.sh", "-b", str(folder), "-n", "ana", check=True).stdout

    assert "updated rule 'ana'" in out
    rule = Rule.from_dict(rules(app)["ana"])
    assert rule.inert_reason() is None
    assert set(rule.files) == {"run.sh", "code/main.py", "code/lib/util.py"}


def test_run_sh_by_name_only_and_paths_outside_are_refused(app, tmp_path):
    folder = job_folder(tmp_path)
    outside = tmp_path / "elsewhere.py"
    outside.write_text("x\n")

    by_name = app.cli("auto-approve", "code", "-b", str(folder), "-f", "run.sh")
    out_of_base = app.cli("auto-approve", str(outside), "-b", str(folder))
    meta = app.cli("auto-approve", "config.yaml", "-b", str(folder))
    nothing = app.cli("auto-approve")
    bad_peer = app.cli("auto-approve", "run.sh", "-b", str(folder), "-p", "not an email")

    for result in (by_name, out_of_base, meta, nothing, bad_peer):
        assert result.returncode == 2, result.stdout
    assert "only be trusted by content" in by_name.stderr
    assert "outside BASE_DIR" in out_of_base.stderr
    assert "only run.sh and code/ count" in meta.stderr
    assert rules(app) == {}


def test_list_shows_each_rule_and_why_it_can_or_cannot_approve(app, tmp_path):
    folder = job_folder(tmp_path)
    app.cli("auto-approve", ".", "-b", str(folder), "-n", "live-one", check=True)
    app.cli("auto-approve", "code/main.py", "-b", str(folder), "-n", "no-runsh", check=True)

    listing = app.cli("list-auto-approvals", check=True).stdout
    one = app.cli("list-auto-approvals", "-n", "live-one", check=True).stdout

    assert "live-one  [live]" in listing
    assert "no-runsh  [approves nothing: it does not pin run.sh" in listing
    assert "peers: every accepted peer" in listing
    assert "config warnings:" in listing and "'no-runsh' approves nothing" in listing
    assert "no-runsh  [" not in one
    assert app.cli("list-auto-approvals", "-n", "nope").returncode == 2


def test_remove_auto_approval_removes_files_and_then_the_empty_rule(app, tmp_path):
    folder = job_folder(tmp_path)
    app.cli("auto-approve", ".", "-b", str(folder), "-n", "ana", "-f", "params.json", check=True)

    app.cli("remove-auto-approval", "lib/util.py", "params.json", "-n", "ana", check=True)
    assert set(rules(app)["ana"]["files"]) == {"run.sh", "code/main.py"}
    assert rules(app)["ana"]["name_only"] == []

    unknown = app.cli("remove-auto-approval", "code/other.py", "-n", "ana")
    assert unknown.returncode == 2 and "code/main.py" in unknown.stderr

    out = app.cli("remove-auto-approval", "run.sh", "-n", "ana", check=True).stdout
    assert "no longer pins run.sh" in out
    out = app.cli("remove-auto-approval", "code/main.py", "-n", "ana", check=True).stdout
    assert "was removed" in out
    assert rules(app) == {}


def test_remove_peer_from_one_rule_or_all(app, tmp_path):
    folder = job_folder(tmp_path)
    for name in ("a", "b"):
        app.cli(
            "auto-approve", ".", "-b", str(folder), "-n", name, "-p", ALICE, "-p", BOB, check=True
        )

    app.cli("remove-peer", BOB, "-n", "a", check=True)
    assert rules(app)["a"]["peers"] == [ALICE]
    assert rules(app)["b"]["peers"] == [ALICE, BOB]

    out = app.cli("remove-peer", ALICE, check=True).stdout
    assert "removed alice@uni.edu from rules a, b" in out
    assert "rule 'a' is now disabled" in out
    assert rules(app)["a"]["enabled"] is False and rules(app)["a"]["peers"] == []
    assert rules(app)["b"]["peers"] == [BOB] and rules(app)["b"]["enabled"] is True

    missing = app.cli("remove-peer", "nobody@x.org")
    assert missing.returncode == 2

    # Naming a peer again turns the disabled rule back on, for that peer only.
    app.cli("auto-approve", ".", "-b", str(folder), "-n", "a", "-p", BOB, check=True)
    assert rules(app)["a"]["peers"] == [BOB] and rules(app)["a"]["enabled"] is True


def test_from_job_trusts_exactly_the_job_and_name_only_files(app):
    app.cli("peers", "accept", ALICE, check=True)
    app.submit("ana", files={"main.py": "print(1)\n", "params.json": "{}"}, run_sh="run\n")
    app.set_config(execute={"enabled": False})
    app.run_pass()

    both = app.cli("auto-approve", "x.py", "--from-job", f"{ALICE}/ana")
    not_in_job = app.cli("auto-approve", "--from-job", "ana", "-f", "code/other.json")
    out = app.cli("auto-approve", "--from-job", "ana", "-f", "code/params.json", check=True)

    assert both.returncode == 2 and not_in_job.returncode == 2
    assert "applies to alice@uni.edu (the job's submitter" in out.stdout
    rule = rules(app)["ana"]
    assert rule["files"] == {"run.sh": sha("run\n"), "code/main.py": sha("print(1)\n")}
    assert rule["name_only"] == ["code/params.json"]
    assert rule["peers"] == [ALICE]
    assert app.cli("auto-approve", "--from-job", "nope").returncode == 2
