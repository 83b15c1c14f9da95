"""The command line and the Python API are two faces over the same actions: the same
operation through either makes the same change, and nothing below them imports them."""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import App, wait_until

import syft_bg_app as bg

DS = "alice@uni.edu"
PACKAGE = Path(bg.__file__).parent

# Checkpoint fields that differ between two homes for reasons other than what a
# command did: file identities, modification times, process ids, and the approve
# step's cache of file fingerprints (inode, mtime) with the digests made from it.
MACHINE_FIELDS = {"folder_id", "auto", "auto_note", "supervisor_pid", "supervisor_start"}
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")


def _normal(value: Any, twin: App) -> Any:
    """``value`` with timestamps and the twin's own folder replaced by placeholders."""
    if isinstance(value, dict):
        return {
            k: "<time>" if k.endswith(("_at", "_since")) and v else _normal(v, twin)
            for k, v in value.items()
            if k not in MACHINE_FIELDS and not k.endswith("_mtime_ns")
        }
    if isinstance(value, list):
        return [_normal(v, twin) for v in value]
    if isinstance(value, str):
        return ISO_TIME.sub("<time>", value.replace(str(twin.tmp), "<twin>"))
    return value


def _datasite_files(twin: App) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(twin.datasite.path.rglob("*")):
        if path.is_dir():
            continue
        rel = str(path.relative_to(twin.root))
        if path.name == "state.yaml":
            out[rel] = _normal(yaml.safe_load(path.read_text()), twin)
        else:
            out[rel] = _normal(path.read_text(errors="replace"), twin)
    return out


def _checkpoint(twin: App) -> dict[str, Any]:
    data = json.loads(twin.home.state_file.read_text())
    kept = ("jobs", "peers", "held_jobs", "events", "peer_folders_waiting")
    return _normal({key: data.get(key) for key in kept}, twin)


def _audit(twin: App) -> list[Any]:
    log = twin.home.audit_log
    lines = log.read_text().splitlines() if log.exists() else []
    return [_normal(json.loads(line), twin) for line in lines]


def _config(twin: App) -> str:
    return _normal(twin.home.config_file.read_text(), twin)


def what_changed(twin: App) -> dict[str, Any]:
    """Everything a command may change: the datasite, the checkpoint, the audit log
    and config.yaml, each with timestamps and the twin's folder left out."""
    return {
        "datasite": _datasite_files(twin),
        "checkpoint": _checkpoint(twin),
        "audit": _audit(twin),
        "config": _config(twin),
    }


def _trusted_folder(twin: App) -> Path:
    """A job folder the data owner trusts, as they keep it on their own disk."""
    folder = twin.tmp / "trusted"
    (folder / "code").mkdir(parents=True)
    (folder / "run.sh").write_text("#!/bin/bash\nbash code/script.sh\n")
    (folder / "code" / "script.sh").write_text("echo trusted\n")
    (folder / "code" / "notes.txt").write_text("any text\n")
    return folder


@pytest.fixture
def twins(tmp_path: Path) -> tuple[App, App]:
    """Two app homes over two SyftBox folders holding the same jobs and requests;
    the first is driven through the API, the second through the command line."""
    pair = (App(tmp_path / "api"), App(tmp_path / "cli"))
    for twin in pair:
        twin.init(execute={"enabled": False})
        for name in ("kept", "dropped", "trusted-one"):
            twin.submit(name, ds_email=DS)
        twin.submit(
            "matching",
            ds_email=DS,
            run_sh="#!/bin/bash\nbash code/script.sh\n",
            files={"script.sh": "echo trusted\n", "notes.txt": "other text\n"},
        )
        for requester in ("bob@co.com", "carol@co.com", "mallory@evil.example"):
            twin.request_peer(requester, message=f"{requester} asks")
        twin.run_pass()
    assert_alike(pair)
    return pair


def _same_change(
    twins: tuple[App, App], api_call: Callable[[App], object], *cli_args: str, exit_code: int = 0
) -> object:
    """Make a change through the API in the first twin and through the command line
    in the second, and compare; the API call's result is returned."""
    api, cli = twins
    result = api_call(api)
    command = cli.cli(*cli_args)
    assert command.returncode == exit_code, command.stderr
    assert_alike(twins)
    return result


def assert_alike(twins: tuple[App, App]) -> None:
    api, cli = (json.dumps(what_changed(t), indent=1, sort_keys=True).splitlines() for t in twins)
    assert api == cli, "\n".join(difflib.unified_diff(api, cli, "api", "cli", lineterm=""))


OPERATIONS: list[tuple[str, Callable[[App], object], tuple[str, ...]]] = [
    (
        "approve",
        lambda t: bg.approve("kept", "looks fine", home=t.home.root),
        ("jobs", "approve", "kept", "-r", "looks fine"),
    ),
    (
        "reject",
        lambda t: bg.reject(f"{DS}/dropped", "reads raw rows", home=t.home.root),
        ("jobs", "reject", f"{DS}/dropped", "-r", "reads raw rows"),
    ),
    (
        "auto-approve --from-job",
        lambda t: bg.auto_approve_job("trusted-one", name="one", home=t.home.root),
        ("auto-approve", "--from-job", "trusted-one", "-n", "one"),
    ),
    (
        "accept peer",
        lambda t: bg.accept_peer("bob@co.com", home=t.home.root),
        ("peers", "accept", "bob@co.com"),
    ),
    (
        "reject peer",
        lambda t: bg.reject_peer("carol@co.com", "unknown to us", home=t.home.root),
        ("peers", "reject", "carol@co.com", "-r", "unknown to us"),
    ),
    (
        "block peer",
        lambda t: bg.block_peer("mallory@evil.example", "spam", home=t.home.root),
        ("peers", "block", "mallory@evil.example", "-r", "spam"),
    ),
]


@pytest.mark.parametrize(
    ("api_call", "cli_args"),
    [(call, args) for _, call, args in OPERATIONS],
    ids=[n for n, *_ in OPERATIONS],
)
def test_an_api_call_and_its_command_make_the_same_change(twins, api_call, cli_args):
    _same_change(twins, api_call, *cli_args)


def test_a_life_of_rules_and_peers_is_the_same_through_either_face(twins):
    for _, api_call, cli_args in OPERATIONS:
        _same_change(twins, api_call, *cli_args)
    _same_change(
        twins,
        lambda t: bg.unblock_peer("mallory@evil.example", home=t.home.root),
        "peers",
        "unblock",
        "mallory@evil.example",
    )
    _same_change(
        twins,
        lambda t: bg.auto_approve(
            ["run.sh", "code"],
            base_dir=_trusted_folder(t),
            name="trusted",
            peers=DS,
            name_only="notes.txt",
            home=t.home.root,
        ),
        "auto-approve",
        "run.sh",
        "code",
        "-b",
        str(_trusted_folder(twins[1])),
        "-n",
        "trusted",
        "-p",
        DS,
        "-f",
        "notes.txt",
    )
    # The rule is used alike: the next pass approves the job it matches in both homes.
    for twin in twins:
        twin.run_pass()
    assert_alike(twins)
    assert twins[0].job_state("matching")["approval_method"] == "auto"
    _same_change(
        twins,
        lambda t: bg.remove_auto_approve("trusted", ["code/notes.txt"], home=t.home.root),
        "remove-auto-approval",
        "code/notes.txt",
        "-n",
        "trusted",
    )
    _same_change(
        twins,
        lambda t: bg.remove_auto_approve("trusted", ["run.sh", "code/script.sh"], home=t.home.root),
        "remove-auto-approval",
        "run.sh",
        "code/script.sh",
        "-n",
        "trusted",
    )


def test_switching_services_through_either_face_makes_the_same_change(twins):
    stopped = _same_change(
        twins, lambda t: bg.stop_services("notify", home=t.home.root), "stop", "notify"
    )
    assert stopped.changed == ["notify"]
    assert "enabled: false" in _config(twins[0]).split("notify:")[1]
    # No scheduler here: both faces switch the service on and say passes do not run.
    started = _same_change(
        twins,
        lambda t: bg.start_services("notify", home=t.home.root),
        "start",
        "notify",
        exit_code=1,
    )
    assert started.changed == ["notify"] and started.passes.problem


def test_rerun_through_either_face_makes_the_same_change(tmp_path):
    twins = (App(tmp_path / "api"), App(tmp_path / "cli"))
    for twin in twins:
        twin.init(execute={"timeout": 60})
        twin.submit("again", ds_email=DS)
        twin.run_pass()
        bg.approve("again", home=twin.home.root)
    for twin in twins:
        wait_until(
            lambda t=twin: t.run_pass() and t.job_state("again")["status"] in ("done", "failed"),
            "the job to finish",
        )
        twin.run_pass()  # sends the emails about it, so no event waits
    assert twins[0].job_state("again")["status"] == "done"
    rerun = _same_change(
        twins, lambda t: bg.rerun("again", home=t.home.root), "jobs", "rerun", "again"
    )
    assert rerun.status == "approved"


def test_init_through_either_face_writes_the_same_files(tmp_path):
    api, cli = App(tmp_path / "api"), App(tmp_path / "cli")
    bg.init("Owner@Datasite.org", api.root, create=True, home=api.home.root)
    cli.cli("init", "-e", "Owner@Datasite.org", "-r", str(cli.root), "--create", check=True)
    for twin in (api, cli):
        twin.do_email = "owner@datasite.org"
    assert _config(api) == _config(cli)
    assert _datasite_files(api) == _datasite_files(cli)
    assert _datasite_files(api)  # the permission files are there


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_below_the_faces_imports_them_or_argparse():
    faces = (PACKAGE / "cli", PACKAGE / "api")
    below = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path.is_relative_to(face) for face in faces) and path.name != "__main__.py"
    ]
    assert any(path.is_relative_to(PACKAGE / "actions") for path in below)
    offenders = {}
    for path in below:
        bad = sorted(
            name
            for name in _imported_modules(path)
            if name == "argparse" or name.startswith(("syft_bg_app.cli", "syft_bg_app.api"))
        )
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert offenders == {}
