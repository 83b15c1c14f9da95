"""A hostile data scientist against the newest features: the owner's email about a data
scientist of the other syft-client generation (its version comes from the name of a
Drive folder the data scientist owns), the datasets a job declares in its
``config.yaml``, rules made ``--from-job``, and what a job finds when it walks its
sandbox. Each test is an attack; what it asserts is what the data owner relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE
from hostile import run_until_finished

from tests.conftest import DO_EMAIL, App, outbox, text_of
from tests.fake_drive import FakeDrive

DS = "alice@uni.edu"
EVE = "eve@evil.org"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def drive_app(app: App, drive: FakeDrive, **config: object) -> App:
    token = drive.write_token(app.tmp / "do_drive_token.json", DO_EMAIL)
    app.set_config(
        sync={"transport": "drive"},
        drive={"generation": "0.10", "api_endpoint": drive.url, "token": str(token)},
        **config,
    )
    return app


def rename_versions(drive: FakeDrive, owner: str, version: str) -> None:
    """The data scientist renames their folders for this datasite to another version."""
    for f in drive.files.values():
        if f.owner == owner and f.name.startswith("syft_datasite#"):
            parts = f.name.split("#")
            parts[1] = version
            f.name = "#".join(parts)


def about(app: App, ds: str) -> list:
    return [m for m in outbox(app) if ds in m["Subject"]]


# -- the other generation: a version string the data scientist writes --------------------


@pytest.mark.parametrize(
    "version", ["².1", "1" * 5000 + ".1", "0.٣"], ids=["superscript", "5000-digits", "arabic"]
)
def test_a_version_that_is_no_number_stops_no_pass_and_others_are_still_served(
    app: App, drive: FakeDrive, version: str
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    drive.add_peer_folders(EVE, DO_EMAIL, version)
    drive.add_peer_folders(DS, DO_EMAIL, "0.10.0")

    result = app.run_pass()

    assert result.exit_code == 0, (result.summary, result.failed_steps)
    assert app.datasite.peer_request_file(DS).exists()
    assert not app.datasite.peer_request_file(EVE).exists()
    peers = app.cli("peers", "list", check=True).stdout
    assert EVE in peers and "other-version" in peers


HOSTILE_VERSION = (
    "0.1.117\r\nBcc: victim@evil.org\r\nX-Evil: 1\n\x1b[2J\x1b[31m"
    "<script>alert(1)</script><a href='http://evil.org'>update here</a>" + "A" * 20000
)


def test_a_hostile_version_reaches_the_owner_as_short_plain_text(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    drive.add_peer_folders(EVE, DO_EMAIL, HOSTILE_VERSION)

    assert app.run_pass().exit_code == 0
    assert app.run_pass().exit_code == 0

    (message,) = about(app, EVE)
    assert message["Bcc"] is None and message["X-Evil"] is None
    subject = str(message["Subject"])
    assert "\r" not in subject and "\n" not in subject and "\x1b" not in subject
    assert len(subject) < 300
    body = text_of(message)
    assert "\x1b" not in body and "A" * 200 not in body
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "<a href='http://evil.org'>" not in html
    # What to set is still said: the version starts like syft-client 0.1.
    assert "generation: '0.1'" in body
    for command in (("status",), ("peers", "list")):
        out = app.cli(*command, check=True).stdout
        assert EVE in out
        assert "\x1b" not in out and "\r" not in out and "Bcc:" not in out.replace("Bcc: ", "")
        assert "A" * 200 not in out
    state = json.loads(app.home.state_file.read_text())
    assert len(json.dumps(state["drive"]["other_generation"])) < 1000
    log = "".join(p.read_text(errors="replace") for p in app.home.logs_dir.glob("*.log*"))
    assert "\x1b" not in log and "\nBcc: victim" not in log and "\rBcc" not in log


def test_a_data_scientist_who_keeps_changing_version_gets_the_owner_one_email(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    drive.add_peer_folders(EVE, DO_EMAIL, "0.1.100")
    assert app.run_pass().exit_code == 0
    for patch in range(101, 106):
        rename_versions(drive, EVE, f"0.1.{patch}")
        assert app.run_pass().exit_code == 0
    for version in ("7.7.7", "0.1.x", "0.1.100"):
        rename_versions(drive, EVE, version)
        assert app.run_pass().exit_code == 0

    # One email per generation that would serve them, ever: 0.1, and none.
    bodies = sorted(text_of(m) for m in about(app, EVE))
    assert len(bodies) == 2
    assert "generation: '0.1'" in bodies[0] + bodies[1]
    assert any("No generation of this app speaks that version" in b for b in bodies)
    peers = app.cli("peers", "list", check=True).stdout
    assert "0.1.100" in peers  # what they run now


def test_a_blocked_data_scientist_gets_no_email_to_the_owner_by_changing_version(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    app.cli("peers", "block", EVE, check=True)
    drive.add_peer_folders(EVE, DO_EMAIL, "0.1.117")
    assert app.run_pass().exit_code == 0
    for version in ("0.1.118", "9.9.9"):
        rename_versions(drive, EVE, version)
        assert app.run_pass().exit_code == 0

    assert [m["Subject"] for m in about(app, EVE) if "syft-client" in m["Subject"]] == []
    assert "other-version" not in app.cli("peers", "list", check=True).stdout


def test_thousands_of_folders_of_one_data_scientist_make_one_email_and_the_pass_ends(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    for n in range(2000):
        drive.add_peer_folders(EVE, DO_EMAIL, f"0.1.{n}")

    for _ in range(2):
        assert app.run_pass().exit_code == 0

    assert len(about(app, EVE)) == 1


def test_three_hundred_accounts_of_the_other_generation_make_one_digest(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    for n in range(300):
        drive.add_peer_folders(f"ds{n}@evil.org", DO_EMAIL, "0.1.117")

    for _ in range(2):
        assert app.run_pass().exit_code == 0

    (digest,) = outbox(app)
    assert "300 updates" in str(digest["Subject"])
    assert "ds299@evil.org" in app.cli("peers", "list", check=True).stdout


# -- the datasets a job declares ---------------------------------------------------------

PRIVATE_CSV = "age\n31\n45\n52\n"
READER = """#!/bin/bash
base="$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/syft_datasets"
awk -F, 'NR > 1 { s += $1 } END { print "sum:", s }' "$base/census/ages.csv"
ls -A "$base" 2>&1
"""
SCRIPT = "echo hello\n"


@pytest.fixture
def data_app(app: App, tmp_path: Path) -> App:
    """census and other shared with alice, secret with bob only; a rule trusting READER
    with the dataset census."""
    app.cli("peers", "accept", DS, check=True)
    app.set_config(notify={"enabled": False}, execute={"timeout": int(PATIENCE)})
    for name, shared in (("census", DS), ("other", DS), ("secret", "bob@other.org")):
        folder = tmp_path / "data" / name
        (folder / "mock").mkdir(parents=True)
        (folder / "mock" / "ages.csv").write_text("age\n1\n")
        (folder / "private").mkdir()
        (folder / "private" / "ages.csv").write_text(PRIVATE_CSV if name == "census" else "9\n")
        app.cli("datasets", "create", name, "--mock", str(folder / "mock"), "--private",
                str(folder / "private"), "--share", shared, check=True)  # fmt: skip
    return app


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _trust_reader(app: App, datasets: list[str]) -> None:
    rule = {
        "name": "census-sum",
        "peers": [DS],
        "files": {"run.sh": _sha(READER), "code/script.sh": _sha(SCRIPT)},
        "datasets": datasets,
    }
    app.set_config(approve={"auto_approvals": [rule]})


def _declaring(app: App, name: str, datasets: object) -> Path:
    return app.submit(name, ds_email=DS, run_sh=READER, metadata={"datasets": datasets})


def _stdout(app: App, name: str) -> str:
    return (app.datasite.review / DS / "v1" / name / "stdout.txt").read_text()


def _record(app: App, name: str) -> dict:
    from syft_bg_app.store.state import State

    return State.load(app.home.state_file).job(DS, name)


@needs_bwrap
def test_hostile_dataset_fields_mount_nothing_and_hold_up_no_other_job(data_app: App) -> None:
    app = data_app
    _trust_reader(app, ["census"])
    hostile = {
        "dotdot": {DO_EMAIL: ["../census"]},
        "absolute": {DO_EMAIL: ["/etc"]},
        "through": {DO_EMAIL: ["census/../secret"]},
        "dot": [".", "census"],
        "newline": {DO_EMAIL: ["census\n"]},
        "not-strings": {DO_EMAIL: [1, None, ["census"]]},
        "nested": {DO_EMAIL: {"census": True}},
        "scalar": {DO_EMAIL: "census"},
        "number": 7,
    }
    for name, datasets in hostile.items():
        _declaring(app, name, datasets)
    _declaring(app, "other-ds", {DO_EMAIL: ["census", "secret"]})
    _declaring(app, "good", {DO_EMAIL: ["census"]})
    _declaring(app, "twice", {DO_EMAIL: ["census", "census", "census"], "x@y.org": ["secret"]})

    states = run_until_finished(app, ["good", "twice"])

    for name in ("good", "twice"):
        assert states[name]["status"] == "done", states
        assert _stdout(app, name).splitlines() == ["sum: 128", "census"]
    for name in hostile:
        assert app.job_state(name)["status"] == "pending", name
        shown = app.cli("jobs", "show", f"{DS}/{name}", check=True).stdout
        why = shown.split("why pending: ")[1].split("\n")[0]
        assert "dataset" in why and "the next pass approves it" not in why, (name, why)
        assert not (app.datasite.review / DS / "v1" / name / "stdout.txt").exists()
    # A job asking for a dataset not shared with its author is rejected saying so.
    rejected = app.job_state("other-ds")
    assert rejected["status"] == "rejected"
    assert "'secret'" in rejected["review_reason"]
    assert not (app.datasite.review / DS / "v1" / "other-ds" / "stdout.txt").exists()


def test_a_huge_dataset_list_is_refused_with_a_reason_and_costs_nothing_to_keep(
    data_app: App,
) -> None:
    app = data_app
    _trust_reader(app, ["census"])
    folder = app.submit("huge", ds_email=DS, run_sh=READER)
    # In flow style, to fit 30,000 names in what a job's config.yaml may hold (256 KiB).
    names = ",".join(f"d{n}" for n in range(30000))
    with (folder / "config.yaml").open("a") as config:
        config.write(f"datasets: {{{DO_EMAIL}: [{names}]}}\n")
    app.submit("neighbour", ds_email=DS)
    _declaring(app, "long-name", {DO_EMAIL: ["census", "x" * 200_000]})

    assert app.run_pass().exit_code == 0

    assert app.job_state("huge")["status"] == "pending"
    assert app.job_state("neighbour")["status"] == "pending"
    shown = app.cli("jobs", "show", f"{DS}/huge", check=True).stdout
    assert "it cannot be approved as it is: config.yaml 'datasets' names 30000 datasets" in shown
    assert "d29999" not in shown
    assert len(app.home.state_file.read_bytes()) < 100_000
    assert app.cli("jobs", "approve", f"{DS}/huge").returncode != 0
    assert app.job_state("huge")["status"] == "pending"
    shown = app.cli("jobs", "show", f"{DS}/long-name", check=True).stdout
    assert "is not allowed" in shown and len(shown) < 20_000
    refused = app.cli("jobs", "approve", f"{DS}/long-name")
    assert refused.returncode != 0 and len(refused.stdout + refused.stderr) < 2_000


def test_datasets_unreadable_at_receipt_are_never_approved_unseen_once_named(
    data_app: App,
) -> None:
    app = data_app
    folder = _declaring(app, "sneaky", {DO_EMAIL: "census"})  # not a list: unreadable
    assert app.run_pass().exit_code == 0
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    meta["datasets"] = {DO_EMAIL: ["census"]}
    (folder / "config.yaml").write_text(yaml.safe_dump(meta))

    first = app.cli("jobs", "approve", f"{DS}/sneaky")

    assert first.returncode != 0
    assert "changed since it was received" in first.stdout + first.stderr
    assert app.job_state("sneaky")["status"] == "pending"
    # Reviewed again, approving again approves them as they are now.
    app.cli("jobs", "approve", f"{DS}/sneaky", check=True)
    assert _record(app, "sneaky")["datasets"] == ["census"]


def test_a_rule_made_from_a_job_whose_datasets_changed_since_it_was_shown_is_refused(
    data_app: App,
) -> None:
    app = data_app
    folder = _declaring(app, "grow", {DO_EMAIL: ["census"]})
    assert app.run_pass().exit_code == 0  # the owner is shown: census
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    meta["datasets"] = {DO_EMAIL: ["census", "other"]}
    (folder / "config.yaml").write_text(yaml.safe_dump(meta))
    before = app.home.config_file.read_text()

    made = app.cli("auto-approve", "--from-job", f"{DS}/grow")

    assert made.returncode == 2
    assert "changed since it was received" in made.stdout + made.stderr
    assert app.home.config_file.read_text() == before
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    assert app.job_state("grow")["status"] == "pending"
    # Made again after a look, the rule takes the datasets as they are now.
    app.cli("auto-approve", "--from-job", f"{DS}/grow", check=True)
    rules = yaml.safe_load(app.home.config_file.read_text())["approve"]["auto_approvals"]
    assert [r.get("datasets") for r in rules] == [["census", "other"]]


def test_a_rule_made_from_a_job_whose_code_changed_since_it_was_shown_is_refused(
    data_app: App,
) -> None:
    app = data_app
    folder = _declaring(app, "swap", {DO_EMAIL: ["census"]})
    assert app.run_pass().exit_code == 0  # the owner is shown READER
    (folder / "run.sh").write_text(READER + 'cat "$base"/*/ages.csv\n')
    before = app.home.config_file.read_text()

    made = app.cli("auto-approve", "--from-job", f"{DS}/swap")

    assert made.returncode == 2
    assert "changed since it was received" in made.stdout + made.stderr
    assert "run.sh" in made.stdout + made.stderr
    assert app.home.config_file.read_text() == before


# -- what a job finds when it walks its sandbox --------------------------------------------

WALKER = r"""#!/bin/bash
echo "== mounts"; cat /proc/self/mountinfo
echo "== tree"; find /sandbox /tmp /etc /home /root /var /opt /mnt /srv /run -maxdepth 9 2>/dev/null
echo "== grep"; grep -rs "PRIVATE-OF" /sandbox /tmp /home /root /var /opt /mnt /srv /run
echo "== env"; env
echo "== end"
"""


@needs_bwrap
def test_a_job_walking_its_sandbox_finds_only_its_declared_dataset_and_no_owner_path(
    data_app: App, tmp_path: Path
) -> None:
    app = data_app
    for name in ("census", "other", "secret"):
        private = app.home.root / "datasets" / name / "private"
        os.chmod(private / "ages.csv", 0o600)
        (private / "marker.txt").write_text(f"PRIVATE-OF-{name}\n")
        os.chmod(private / "marker.txt", 0o600)
    app.submit("walker", ds_email=DS, run_sh=WALKER, metadata={"datasets": {DO_EMAIL: ["census"]}})
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/walker", check=True)

    state = run_until_finished(app, "walker")["walker"]

    assert state["status"] == "done", state
    out = _stdout(app, "walker")
    assert "== end" in out
    assert "PRIVATE-OF-census" in out
    assert "PRIVATE-OF-other" not in out and "PRIVATE-OF-secret" not in out
    tree = out.split("== tree")[1].split("== grep")[0]
    assert "syft_datasets/census" in tree
    assert "other" not in tree and "secret" not in tree
    for place in (app.home.root, app.root, app.tmp / "data"):
        assert str(place) not in out, place


@needs_bwrap
def test_a_read_only_path_that_does_not_exist_fails_no_job(data_app: App, tmp_path: Path) -> None:
    app = data_app
    shown = tmp_path / "owner-env" / "lib"
    shown.mkdir(parents=True)
    (shown / "tool.txt").write_text("from the owner's environment\n")
    gone = ["/usr/share/syft-bg-gone/env", "/lib/syft-bg-gone", "/etc/ssl/syft-bg-gone/x"]
    app.set_config(execute={"ro_paths": [*gone, str(shown)], "timeout": int(PATIENCE)})
    app.submit(
        "reads-env",
        ds_email=DS,
        run_sh=f"#!/bin/bash\ncat {shown}/tool.txt\n",
        metadata={"datasets": {DO_EMAIL: ["census"]}},
    )
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/reads-env", check=True)

    state = run_until_finished(app, "reads-env")["reads-env"]

    assert state["status"] == "done", state
    assert _stdout(app, "reads-env") == "from the owner's environment\n"


# -- rules made by email reply -------------------------------------------------------------


def test_an_auto_approve_reply_makes_a_rule_with_exactly_the_datasets_its_email_showed(
    data_app: App,
) -> None:
    from syft_bg_app.mail import replies
    from syft_bg_app.session import changing

    app = data_app
    app.set_config(notify={"enabled": True}, approve={"email_replies": {"enabled": True}})
    _declaring(app, "shown", {DO_EMAIL: ["census"]})
    assert app.run_pass().exit_code == 0
    (email,) = [
        m
        for m in outbox(app)
        if "shown" in str(m["Subject"]) and str(m["To"]).lower() == DO_EMAIL.lower()
    ]
    reply = (
        f"From: {DO_EMAIL}\nTo: {DO_EMAIL}\nSubject: Re: job\n"
        f"Message-ID: <reply-1@owner>\nIn-Reply-To: {email['Message-ID']}\n\nauto-approve\n"
    ).encode()

    with changing(app.home, "test") as ctx:
        outcome = replies.handle_reply(ctx, reply, "test")

    assert outcome.startswith("approved; rule"), outcome
    rules = yaml.safe_load(app.home.config_file.read_text())["approve"]["auto_approvals"]
    assert [rule.get("datasets") for rule in rules] == [["census"]]
    _declaring(app, "again", {DO_EMAIL: ["census"]})
    _declaring(app, "wider", {DO_EMAIL: ["census", "other"]})
    states = run_until_finished(app, ["shown", "again"])
    assert states["again"]["approval_method"] == "auto", states
    assert _stdout(app, "again").splitlines()[0] == "sum: 128"
    assert app.job_state("wider")["status"] == "pending"


@needs_bwrap
def test_a_read_only_path_above_the_app_home_shows_jobs_nothing_of_it(
    data_app: App, tmp_path: Path
) -> None:
    """An owner who shows jobs a folder that holds the app home and the SyftBox folder
    (their home, say, for a Python environment in it) shows them neither: not the
    tokens, not the private datasets, not another data scientist's jobs or results."""
    app = data_app
    shutil.rmtree(tmp_path / "data")  # the owner's own copies: theirs to show or not
    (app.home.root / "token.json").write_text('{"refresh_token": "TOKEN-OF-THE-OWNER"}')
    app.submit("other-ds-job", ds_email="bob@other.org", files={"secret.py": "BOB-CODE\n"})
    env = tmp_path / "owner-env"
    env.mkdir()
    (env / "tool.txt").write_text("from the owner's environment\n")
    assert app.home.root.parent == tmp_path and app.root.parent == tmp_path
    # A home others may walk and read, as many systems make them.
    for folder in (tmp_path.parent, tmp_path):
        os.chmod(folder, 0o755)
    app.set_config(execute={"ro_paths": [str(tmp_path)], "timeout": int(PATIENCE)})
    app.submit(
        "looks-around",
        ds_email=DS,
        run_sh=(
            f"#!/bin/bash\ncat {env}/tool.txt\necho == tree; find {tmp_path} 2>&1\n"
            f"echo == grep; grep -rs 'TOKEN-OF\\|PRIVATE\\|BOB-CODE\\|^31$' {tmp_path}\n"
            "echo == end\n"
        ),
    )
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/looks-around", check=True)

    state = run_until_finished(app, "looks-around")["looks-around"]

    assert state["status"] == "done", state
    out = _stdout(app, "looks-around")
    assert out.startswith("from the owner's environment\n") and "== end" in out
    tree = out.split("== tree")[1].split("== grep")[0]
    assert f"{env}/tool.txt" in tree
    for hidden in ("token.json", "record.yaml", "ages.csv", "other-ds-job", "state"):
        assert hidden not in tree, hidden
    grep = out.split("== grep")[1].split("== end")[0]
    assert grep.strip() == ""


def test_a_dataset_shared_with_an_address_in_other_case_is_read_by_that_peer(
    app: App, tmp_path: Path
) -> None:
    app.cli("peers", "accept", DS, check=True)
    app.set_config(notify={"enabled": False})
    folder = tmp_path / "data"
    (folder / "mock").mkdir(parents=True)
    (folder / "mock" / "ages.csv").write_text("age\n1\n")
    (folder / "private").mkdir()
    (folder / "private" / "ages.csv").write_text("age\n1\n")
    app.cli("datasets", "create", "census", "--mock", str(folder / "mock"), "--private",
            str(folder / "private"), "--share", DS.title(), check=True)  # fmt: skip
    _declaring(app, "cased", {DO_EMAIL: ["census"]})
    assert app.run_pass().exit_code == 0
    assert app.job_state("cased")["status"] == "pending"
    assert "census" in app.cli("datasets", "show", "census", check=True).stdout
    assert DS in app.cli("datasets", "show", "census", check=True).stdout
