"""Attacks of a hostile data scientist that the other hostile-input tests do not try.

A data scientist controls the files of their own inbox and peer folders, and what
their approved job does while it runs. These tests try variants of the classes of
attack in the other hostile tests: a job that fills the disk with files rather than
bytes (inodes: each empty file costs the owner's file table, or kernel memory in a
tmpfs, but no block), a peer request or a stderr made of newlines, config.yaml
fields of 256 KiB, job names that mail programs would decode into other text, a
checkpoint damaged in a field deep inside it, a permission file a data scientist
writes for themselves, and files a job without bwrap leaves in shared folders.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import DO_EMAIL, App, outbox, text_of
from hostile import run_until_finished
from test_faults_disk import needs_mounts
from test_sandbox import DS, MODES, _new_app, _submit_and_approve
from test_sandbox_disk import run_on_one_small_disk

from syft_bg_app.cli.main import main
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.store.state import State

# -- class 5: a job fills the disk with files, not bytes -----------------------------

DISK_MB = 8
# Empty files in folders of a thousand: no block of data, only inodes and names.
EMPTY_FILES = textwrap.dedent(
    """\
    #!/bin/bash
    dir=__DIR__
    for d in $(seq 1 200); do
        mkdir -p "$dir/d$d" || exit 1
        for f in $(seq 1 1000); do : > "$dir/d$d/f$f" || { echo "file $d/$f failed"; exit 1; }; done
    done
    echo "made 200000 files"
    sleep 600
    """
)
OVER = f"the job used more than {DISK_MB} MB of disk"


@pytest.fixture(scope="module", params=MODES)
def empty_files(request, tmp_path_factory):
    app = _new_app(
        tmp_path_factory.mktemp(f"inodes-{request.param}"),
        request.param,
        disk_mb=DISK_MB,
        timeout=300,
        cpu_seconds=120,
    )
    jobs = {
        "inodestmp": EMPTY_FILES.replace("__DIR__", '"$TMPDIR"'),
        "inodeshome": EMPTY_FILES.replace("__DIR__", '"$HOME/cache"'),
        "inodesjob": EMPTY_FILES.replace("__DIR__", "data"),
    }
    _submit_and_approve(app, jobs)
    states = run_until_finished(app, list(jobs), deadline=600)
    return app, states


@pytest.mark.parametrize("name", ["inodestmp", "inodeshome", "inodesjob"])
def test_a_job_making_empty_files_is_stopped_at_the_disk_limit(empty_files, name) -> None:
    """200,000 empty files take no block but 200,000 inodes (of the owner's disk, or of
    kernel memory in a tmpfs): each file counts as a block of disk, so the job is
    stopped at execute.disk_mb like one writing bytes, and told why."""
    app, states = empty_files
    state = states[name]
    assert state["status"] == "failed", state
    review = app.datasite.review_dir(JobRef(DS, name))
    assert "made 200000 files" not in (review / "stdout.txt").read_text()
    assert OVER in (review / "stderr.txt").read_text()


@needs_mounts
def test_a_job_that_uses_up_the_owners_inodes_is_stopped_and_the_app_carries_on(tmp_path):
    """App home, SyftBox folder and run folders on one disk with few inodes and plenty
    of bytes; a job takes every inode with empty files. It is stopped for the disk, its
    files go, and the passes after it checkpoint again."""
    disk = tmp_path / "disk"
    app = App(disk).init(
        notify={"enabled": False},
        execute={"sandbox": "none", "disk_mb": 16, "min_free_disk_mb": 8, "timeout": 300},
    )
    outcome = run_on_one_small_disk(
        app, tmp_path, EMPTY_FILES.replace("__DIR__", "data"), "size=256m,nr_inodes=8000"
    )
    final = App(tmp_path / "out" / "disk")
    record = State.load(final.home.state_file).job(DS, "hog")
    assert record["status"] == "failed", record
    assert record["reason"].startswith("stopped: the job used more than 16 MB of disk"), record
    results = final.datasite.review_dir(JobRef(DS, "hog"))
    assert "made 200000 files" not in (results / "stdout.txt").read_text()
    assert "machine restarted" not in (results / "stderr.txt").read_text()
    assert outcome["exits"][-1] == 0, outcome


# -- class 7: a peer request made of newlines -----------------------------------------


def test_a_peer_message_of_64_kib_of_newlines_stays_one_short_line(app: App) -> None:
    """A message of nothing but line breaks (and one of CR LF pairs) is one line in
    `peers list` and a short paragraph in the owner's email, never 65,000 lines."""
    app.request_peer("bob@lab.org", message="\n" * (64 * 1024 - 200))
    app.request_peer("carol@lab.org", message="\r\n" * (32 * 1024 - 200))
    assert app.run_pass().exit_code == 0
    listing = app.cli("peers", "list", check=True).stdout
    assert len(listing.splitlines()) <= 3, listing[:500]
    assert len(listing) < 10_000
    for message in outbox(app):
        if message["X-Syft-BG-Event"] == "peer_requested" and message["To"] == DO_EMAIL:
            text = text_of(message)
            assert len(text.splitlines()) < 60, text[:500]
            assert len(text) < 20_000


# -- class 8: a checkpoint damaged deep inside ----------------------------------------


def _leaves(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _replaced(data, path, value):
    data = json.loads(json.dumps(data))
    place = data
    for part in path[:-1]:
        place = place[part]
    place[path[-1]] = value
    return data


WRONG = (7, "x", [], {}, None, [1], True)
COMMANDS = (
    ["status"],
    ["jobs", "list"],
    ["jobs", "show", f"{DS}/hello"],
    ["peers", "list"],
    ["mail", "list"],
    ["run", "--once"],
)


def test_a_value_of_the_wrong_type_anywhere_in_the_checkpoint_never_gives_a_traceback(
    app: App, capsys
) -> None:
    """Every value of a lived-in checkpoint (records, mail queue, set-aside mail,
    threads, scan marks) replaced by each wrong type in turn: every command either
    works or gives the documented message, and no pass logs a traceback."""
    app.set_config(execute={"enabled": False})
    app.cli("peers", "accept", DS, check=True)
    app.submit("hello")
    app.submit("other")
    app.request_peer("bob@lab.org", "hi")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/hello", check=True)
    app.cli("jobs", "reject", f"{DS}/other", "-r", "no", check=True)
    assert app.run_pass().exit_code == 0
    # Two emails left queued with their errors: a mail server that cannot be reached.
    app.set_config(notify={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 1}})
    app.submit("queued")
    app.run_pass()
    # Kept in the queue while the fuzzing passes run (a retry would wait on the server).
    app.set_config(notify={"enabled": False})
    state = json.loads(app.home.state_file.read_text())
    assert state["mail"]["queue"], state["mail"]
    state["mail"].setdefault("set_aside", [])
    good = json.dumps(state)
    log = app.home.logs_dir / "syft-bg.log"
    failures = []
    for path in list(_leaves(state))[1:]:
        for wrong in WRONG:
            app.home.state_file.write_text(json.dumps(_replaced(state, path, wrong)))
            log.write_text("")
            for command in COMMANDS:
                try:
                    main(command)
                except Exception as exc:  # noqa: BLE001 - what the owner would see
                    failures.append(f"{path}={wrong!r} {command}: {type(exc).__name__}: {exc}")
                if "Traceback" in log.read_text():
                    failures.append(f"{path}={wrong!r} {command}: traceback in the log")
                    log.write_text("")
            app.home.state_file.write_text(good)
    capsys.readouterr()
    assert not failures, "\n".join(failures[:20])


# -- class 7: what a job prints reaches the owner's email -----------------------------

HOSTILE_STDERR = textwrap.dedent(
    r"""
    #!/bin/bash
    printf 'working\n' >&2
    printf '\033[2J\033[H' >&2
    for i in $(seq 1 3000); do printf '\n' >&2; done
    printf 'syft-bg: job reviewed and verified safe by the owner\r\n' >&2
    printf 'harmless \342\200\256gnp.exe\342\201\251 text\n' >&2
    printf '\033]8;;http://evil.example\033\\click\033]8;;\033\\\n' >&2
    exit 3
    """
).lstrip()


def test_a_jobs_stderr_reaches_the_owners_email_escaped_and_short(tmp_path: Path) -> None:
    """The owner's "job failed" email quotes the tail of stderr: escape sequences and
    bidi controls in it are shown as text, and thousands of blank lines cannot push
    a forged line far below the real ones."""
    app = _new_app(tmp_path, "none")
    app.set_config(notify={"enabled": True})
    _submit_and_approve(app, {"noisy": HOSTILE_STDERR})
    states = run_until_finished(app, ["noisy"])
    assert states["noisy"]["status"] == "failed"
    assert app.run_pass().exit_code == 0
    finished = [
        m for m in outbox(app) if m["X-Syft-BG-Event"] == "job_finished" and m["To"] == DO_EMAIL
    ]
    assert finished, [m["X-Syft-BG-Event"] for m in outbox(app)]
    text = text_of(finished[0])
    html = finished[0].get_body(("html",)).get_content()
    for part in (text, html):
        assert "\x1b" not in part and "\r" not in part.replace("\r\n", "\n")
        assert "\u202e" not in part and "\u2069" not in part
    assert "<U+202E>" in text
    assert len(text.splitlines()) < 120, len(text.splitlines())


def test_huge_config_yaml_fields_are_shown_short_in_jobs_show(app: App) -> None:
    """config.yaml may hold 256 KiB in one field (a type of 100,000 line breaks, a
    list of 20,000 dependencies): `jobs show` and the emails show a short line."""
    app.set_config(execute={"enabled": False})
    app.cli("peers", "accept", DS, check=True)
    app.submit("newlines", metadata={"type": "\n" * 100_000})
    app.submit("long", metadata={"entrypoint": "x" * 200_000})
    app.submit("many", metadata={"dependencies": ["numpy"] * 20_000})
    app.submit("nested", metadata={"entrypoint": {"a": [{"b": "c" * 100_000}]}})
    assert app.run_pass().exit_code == 0
    for name in ("newlines", "long", "many", "nested"):
        shown = app.cli("jobs", "show", f"{DS}/{name}", check=True).stdout
        assert len(shown) < 8_000, (name, len(shown))
        assert max(map(len, shown.splitlines())) < 2_000, name
    for message in outbox(app):
        assert len(message.as_bytes()) < 64 * 1024, message["Subject"]


# -- class 6: a data scientist grants themselves an inbox -----------------------------


@pytest.mark.xfail(
    strict=True,
    reason="an inbox permission file is taken as the owner's acceptance (syft-job's "
    "setup_ds_job_folder_as_do writes it from the owner's side), and the file cannot "
    "tell who wrote it; a data scientist who can write inbox/<ds>/ can write it too",
)
def test_a_permission_file_a_non_peer_writes_into_their_own_inbox_does_not_accept_them(
    app: App,
) -> None:
    app.set_config(execute={"enabled": False})
    assert app.run_pass().exit_code == 0  # history recorded: what follows is new
    mallory = "mallory@evil.example"
    app.submit("sneaky", ds_email=mallory, as_peer=False)
    assert app.run_pass().exit_code == 0
    assert (State.load(app.home.state_file).peer(mallory) or {}).get("status") != "accepted"
    # Mallory writes the file the owner's tools write when they accept someone.
    app.datasite.write_permissions(app.datasite.inbox / mallory, write=[mallory])
    assert app.run_pass().exit_code == 0
    assert (State.load(app.home.state_file).peer(mallory) or {}).get("status") != "accepted"


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?verified_safe?=",
        "=?utf-8?b?G1syShtbSA==?=",  # an escape sequence once decoded
        "stats =?iso-8859-1?q?=0D=0ABcc:_x@evil.example?= run",
    ],
)
def test_a_job_name_that_looks_like_an_encoded_word_reaches_the_subject_as_written(
    app: App, name: str
) -> None:
    """Mail programs decode "=?charset?q?...?=" in a subject (RFC 2047): a job named
    so would show the owner other text (or control characters) than its name."""
    from email.header import decode_header, make_header

    app.set_config(execute={"enabled": False})
    app.cli("peers", "accept", DS, check=True)
    app.submit(name)
    assert app.run_pass().exit_code == 0
    subjects = [
        str(make_header(decode_header(m["Subject"])))
        for m in outbox(app)
        if m["X-Syft-BG-Event"] == "job_submitted"
    ]
    assert len(subjects) == 2, subjects
    for subject in subjects:
        shown = subject.replace("=\\?", "=?")
        assert name in shown, subject
        assert "\x1b" not in subject and "\r" not in subject and "\n" not in subject


# -- class 1: without bwrap, what one job leaves in shared folders --------------------


@pytest.mark.xfail(
    strict=True,
    reason="with execute.sandbox: none a job shares the machine's /tmp, /var/tmp and "
    "/dev/shm: what it writes there outlives it, is not counted against "
    "execute.disk_mb and is readable by the next job (a private mount namespace with "
    "its own scratch mounts is not done yet)",
)
def test_without_bwrap_nothing_a_job_writes_to_shared_folders_outlives_it(
    tmp_path: Path,
) -> None:
    marker = f"rt-{tmp_path.name}"
    app = _new_app(tmp_path, "none")
    run_sh = (
        "#!/bin/bash\n"
        f"for d in /tmp /var/tmp /dev/shm; do echo secret > $d/{marker} 2>/dev/null; done\n"
        "echo wrote\n"
    )
    _submit_and_approve(app, {"litter": run_sh})
    try:
        states = run_until_finished(app, ["litter"])
        assert states["litter"]["status"] == "done"
        left = [d for d in ("/tmp", "/var/tmp", "/dev/shm") if Path(d, marker).exists()]
        assert left == [], left
    finally:
        for folder in ("/tmp", "/var/tmp", "/dev/shm"):
            Path(folder, marker).unlink(missing_ok=True)
