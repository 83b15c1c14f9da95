"""Sync over Google Drive, with the real syft-client 0.1.117 as the data scientist.

The data scientist is the published client from PyPI, in its own cached virtual
environment, talking to a local Drive v3 server (tests/fake_drive.py) through a
``sitecustomize.py`` that sends its Google calls there; the app talks to the
same server through ``drive.api_endpoint``. Nothing on either side is mocked.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.client_venvs import SYFT_0_10, client_venv
from tests.conftest import DS_EMAIL, PATIENCE, App, job_user_alone, outbox, wait_until
from tests.fake_drive import FOLDER, FakeDrive


class RealClient:
    """The real syft client, logged in (as a data scientist by default), one process per call."""

    def __init__(
        self,
        python: Path,
        drive: FakeDrive,
        home: Path,
        email: str = DS_EMAIL,
        module: str = "syft_client",
        login: str = "login_ds",
    ):
        self.python = python
        self.module = module
        self.login = login
        self.email = email
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.token = drive.write_token(home / "token.json", email)
        self.redirect = drive.client_redirect(home / "redirect")

    @property
    def syftbox(self) -> Path:
        return self.home / f"SyftBox_{self.email}"

    def run(self, code: str) -> str:
        script = (
            f"import json, {self.module} as sc\n"
            f"c = sc.{self.login}(email={self.email!r}, token_path={str(self.token)!r})\n"
            + textwrap.dedent(code)
        )
        env = dict(os.environ, HOME=str(self.home), PYTHONPATH=str(self.redirect))
        env.pop("SYFT_BG_HOME", None)
        result = subprocess.run(
            [str(self.python), "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        return result.stdout

    def result_file(self, do_email: str, job: str, name: str) -> Path:
        return self.syftbox / do_email / "app_data/job/review" / self.email / job / name


def drive_app(app: App, drive: FakeDrive, generation: str = "0.1", **config: object) -> App:
    token = drive.write_token(app.tmp / "do_drive_token.json", app.do_email)
    app.set_config(
        sync={"transport": "drive"},
        drive={"generation": generation, "api_endpoint": drive.url, "token": str(token)},
        **config,
    )
    return app


def connected_peer(
    app: App, drive: FakeDrive, python: Path, generation: str = "0.1", module: str = "syft_client"
) -> RealClient:
    """A data scientist whose add_peer the app accepted by domain, on Drive too."""
    drive_app(app, drive, generation, approve={"peers": {"approved_domains": ["uni.edu"]}})
    ds = RealClient(python, drive, app.tmp / "ds", module=module)
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()  # the request is read and accepted by its domain
    app.run_pass()  # accepted on Drive: the mirror folders and the version file
    return ds


def killed_passes(app: App, rounds: int, rng: random.Random, longest: float) -> None:
    """``rounds`` passes, each killed (SIGKILL) after a random time up to ``longest`` s."""
    for _ in range(rounds):
        process = subprocess.Popen(
            [sys.executable, "-m", "syft_bg_app", "run", "--once"],
            env=app.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, longest))
        process.kill()
        process.wait()


def run_until(app: App, condition, what: str) -> None:
    def one_pass():
        app.run_pass()
        return condition()

    wait_until(one_pass, what)


def trust_submitted(app: App, ds: RealClient, names: list[str]) -> None:
    """Rules trusting exactly the files of each job, made from the client's own copy."""
    for name in names:
        submitted = ds.syftbox / app.do_email / "app_data/job/inbox" / DS_EMAIL / name
        app.cli(
            "auto-approve",
            "run.sh",
            "code",
            "-b",
            str(submitted),
            "-p",
            DS_EMAIL,
            "-n",
            name,
            check=True,
        )


def test_drive_peer_job_and_result_with_the_real_client(
    app: App, drive: FakeDrive, syft_client_python: Path, tmp_path: Path
) -> None:
    import functools
    import http.server
    import threading

    from tests.test_python_jobs_syft_job import CLIENT, SYSTEM_VERSION, build_wheel

    # The client library a python job installs, from an index on 127.0.0.1 (no traffic
    # leaves this machine); the job reaches it under execute.network: host.
    build_wheel(tmp_path / "index", CLIENT, "ds_client_stub", 'NAME = "client stub"\n')
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "index")
    )
    index = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=index.serve_forever, daemon=True).start()
    drive_app(
        app,
        drive,
        approve={"peers": {"approved_domains": ["uni.edu"]}},
        execute={
            "network": "host",
            "package_index_url": f"http://127.0.0.1:{index.server_address[1]}/simple/",
            "timeout": int(PATIENCE),
        },
    )
    ds = RealClient(syft_client_python, drive, app.tmp / "ds")
    ds.run(f"c.add_peer({app.do_email!r})")

    app.run_pass()  # the request is read and accepted by its domain
    assert app.cli("peers", "list", check=True).stdout.count(DS_EMAIL) == 1
    app.run_pass()  # accepted on Drive: the mirror folders and the version file
    out = ds.run(
        f"""
        peer = [p for p in c.peers if p.email == {app.do_email!r}][0]
        print("STATE", peer.state.value)
        """
    )
    assert "STATE accepted" in out
    owned = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    assert json.loads(owned[0].content) == {DS_EMAIL: {"state": "accepted"}}

    script = tmp_path / "analysis.py"
    script.write_text(
        "import os\nimport ds_client_stub\n"
        "os.makedirs('outputs', exist_ok=True)\n"
        "open('outputs/mean.txt', 'w').write('mean 2.5\\n')\n"
        "print('python over drive with', ds_client_stub.NAME)\n"
    )
    ds.run(
        f"""
        import os
        import syft_job.client
        # The owner's index serves the client library; this machine has no Python 3.12.
        os.environ["SYFT_CLIENT_INSTALL_SOURCE"] = {CLIENT!r}
        syft_job.client.RUN_SCRIPT_PYTHON_VERSION = {SYSTEM_VERSION!r}
        c.submit_bash_job({app.do_email!r}, "echo hello over drive; mkdir -p code/outputs;"
                          " echo 42 > code/outputs/answer.txt", job_name="hello")
        c.submit_python_job({app.do_email!r}, {str(script)!r}, job_name="py")
        """
    )
    # The owner trusts exactly these files (as agreed with the data scientist): a rule
    # made from the client's own copy of each job, before the app has received them.
    trust_submitted(app, ds, ["hello", "py"])

    def finished(name: str) -> bool:
        if not (app.datasite.review / DS_EMAIL / name / "state.yaml").exists():
            return False
        return app.job_state(name, protocol="0").get("status") in ("done", "failed")

    with job_user_alone():
        run_until(app, lambda: finished("hello") and finished("py"), "both jobs to finish")
    for name in ("hello", "py"):
        state = app.job_state(name, protocol="0")
        stderr = app.datasite.review / DS_EMAIL / name / "stderr.txt"
        assert state["status"] == "done", stderr.read_text()
        assert state["approval_method"] == "auto"
    app.run_pass()  # the results travel to the data scientist's outbox

    # The data scientist's own view of its jobs, through the client's job list.
    listing = """
        for j in c.jobs:
            outputs = {p.name: p.read_text() for p in j.output_paths}
            print("JOB", json.dumps([j.name, j.status, str(j.stdout), outputs]))
        """

    def listed(output: str) -> dict[str, list]:
        rows = [json.loads(line[4:]) for line in output.splitlines() if line.startswith("JOB ")]
        return {row[0]: row[1:] for row in rows}

    jobs = listed(ds.run(listing))
    assert jobs["hello"][0] == "done" and "hello over drive" in jobs["hello"][1]
    assert jobs["hello"][2] == {"answer.txt": "42\n"}
    assert jobs["py"][0] == "done" and "python over drive with client stub" in jobs["py"][1]
    assert jobs["py"][2] == {"mean.txt": "mean 2.5\n"}
    # Only this data scientist's own folder travelled, never another's or the owner's.
    received = {
        p.relative_to(ds.syftbox / app.do_email)
        for p in (ds.syftbox / app.do_email).rglob("*")
        if p.is_file()
    }
    assert all(
        str(p).startswith(("app_data/job/review/alice@uni.edu", "app_data/job/inbox/alice@uni.edu"))
        for p in received
    ), received
    # The owner's own notebook (the real client's login_do) sees the same peer, the
    # same jobs and their results.
    notebook = RealClient(
        syft_client_python, drive, app.tmp / "do-notebook", app.do_email, login="login_do"
    )
    out = notebook.run(
        "print('PEERS', json.dumps({p.email: p.state.value for p in c.peers}))\n"
        + textwrap.dedent(listing)
    )
    assert f'PEERS {{"{DS_EMAIL}": "accepted"}}' in out, out
    assert listed(out) == jobs, out


def test_drive_the_client_gets_shared_outputs_and_nothing_it_may_not_read(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    bob_email = "bob@uni.edu"
    drive_app(
        app,
        drive,
        approve={"peers": {"approved_domains": ["uni.edu"]}},
        execute={"share_outputs": True, "share_logs": False},
    )
    alice = RealClient(syft_client_python, drive, app.tmp / "alice")
    bob = RealClient(syft_client_python, drive, app.tmp / "bob", email=bob_email)
    for ds in (alice, bob):
        ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()  # both requests are read and accepted by their domain
    app.run_pass()  # accepted on Drive
    # Both submit a job of the same name: two jobs, each with results of its own.
    for ds in (alice, bob):
        who = ds.email.split("@")[0]
        ds.run(
            f"""
            c.submit_bash_job({app.do_email!r}, "echo {who} log line; echo {who} error >&2;"
                              " mkdir -p code/outputs; echo {who} result >"
                              " code/outputs/answer.txt", job_name="same")
            """
        )
    run_until(
        app,
        lambda: all(
            (app.datasite.review / email / "same" / "state.yaml").exists()
            for email in (DS_EMAIL, bob_email)
        ),
        "both jobs",
    )
    for email in (DS_EMAIL, bob_email):
        app.cli("jobs", "approve", f"{email}/same", check=True)

    def finished() -> bool:
        return all(
            app.job_state("same", email, protocol="0").get("status") in ("done", "failed")
            for email in (DS_EMAIL, bob_email)
        )

    run_until(app, finished, "both jobs to finish")
    review = app.datasite.review / DS_EMAIL / "same"
    assert app.job_state("same", protocol="0")["status"] == "done"
    assert "alice log line" in (review / "stdout.txt").read_text()
    # A note of the owner's beside the results: no rule lets the data scientist read it.
    (review / "owner-notes.txt").write_text("alice asked twice\n")
    app.run_pass()  # the results travel to each data scientist's outbox
    for ds in (alice, bob):
        ds.run("c.sync()")

    mine = alice.syftbox / app.do_email / "app_data/job/review" / DS_EMAIL / "same"
    assert (mine / "outputs" / "answer.txt").read_text() == "alice result\n"
    assert yaml.safe_load((mine / "state.yaml").read_text())["status"] == "done"
    theirs = bob.syftbox / app.do_email / "app_data/job/review" / bob_email / "same"
    assert (theirs / "outputs" / "answer.txt").read_text() == "bob result\n"
    # Logs are not shared (execute.share_logs: false), the owner's note never is, and
    # neither data scientist receives a byte of the other's results.
    for ds, other in ((alice, "bob"), (bob, "alice")):
        received = {
            p.relative_to(ds.syftbox / app.do_email): p.read_bytes()
            for p in (ds.syftbox / app.do_email).rglob("*")
            if p.is_file()
        }
        names = {p.name for p in received}
        assert not names & {"stdout.txt", "stderr.txt", "returncode.txt", "owner-notes.txt"}
        assert not [p for p in received if other in str(p)], sorted(received)
        assert not [p for p, data in received.items() if other.encode() in data], sorted(received)
        results = {p: data for p, data in received.items() if "job/review" in str(p)}
        assert not [p for p, data in results.items() if b"log line" in data or b"error" in data]


def test_drive_reads_permission_files_as_the_clients_do(tmp_path: Path) -> None:
    from syft_permissions import AccessLevel, ACLRequest, ACLService, User

    from syft_bg_app.datasite.layout import Datasite
    from syft_bg_app.execution.publish import write_result_permissions
    from syft_bg_app.sync.drive.permissions import Permissions

    datasite = Datasite(tmp_path, "owner@datasite.org")
    # What accepting a peer and publishing a job write: the peer's folders, and a
    # terminal grant in the job's review folder (outputs shared, logs not).
    Datasite.write_permissions(datasite.inbox / DS_EMAIL, write=[DS_EMAIL])
    Datasite.write_permissions(datasite.review / DS_EMAIL, read=[DS_EMAIL])
    job = datasite.review / DS_EMAIL / "job"
    job.mkdir()
    write_result_permissions(job, DS_EMAIL, share_outputs=True, share_logs=False)
    paths = [
        "app_data/job/review/alice@uni.edu/job/state.yaml",
        "app_data/job/review/alice@uni.edu/job/outputs/deep/result.csv",
        "app_data/job/review/alice@uni.edu/job/stdout.txt",
        "app_data/job/review/alice@uni.edu/job/notes-of-the-owner.txt",
        "app_data/job/review/alice@uni.edu/a-note.txt",
        "app_data/job/inbox/alice@uni.edu/job/run.sh",
        "app_data/job/inbox/bob@uni.edu/job/run.sh",
        "private/secret.csv",
    ]
    ours = Permissions(datasite.path)
    clients = ACLService(owner=datasite.email)
    clients.load_permissions_from_filesystem(datasite.path)
    decisions = {}
    for email in (DS_EMAIL, "bob@uni.edu"):
        for path in paths:
            for access, level in (("read", AccessLevel.READ), ("write", AccessLevel.WRITE)):
                theirs = clients.can_access(ACLRequest(path, level, User(email)))
                assert ours.allows(email, path, access) == theirs, (email, path, access)
                decisions[email, path, access] = theirs
    readable = sorted(
        p for (e, p, a), ok in decisions.items() if ok and a == "read" and e == DS_EMAIL
    )
    assert readable == sorted(paths[i] for i in (0, 1, 4, 5))
    assert not any(ok for (e, _, _), ok in decisions.items() if e == "bob@uni.edu")
    # A results folder whose permission file cannot be read shares nothing; what the
    # data scientist's review folder grants above it does not step in.
    (job / "syft.pub.yaml").write_text("rules: [{pattern: '**'\n")
    assert not Permissions(datasite.path).allows(DS_EMAIL, paths[0], "read")


def test_drive_refuses_changes_the_data_scientist_may_not_make(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    secret = app.datasite.path / "private" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("owner only\n")
    review_state = app.datasite.review / DS_EMAIL / "forged" / "state.yaml"
    # The real client's own proposal path: any file under the owner's folder.
    ds.run(
        f"""
        from pathlib import Path
        do = {app.do_email!r}
        root = Path(c.syftbox_folder) / do
        forged = {{
            "private/secret.txt": "overwritten\\n",
            "app_data/job/review/{DS_EMAIL}/forged/state.yaml": "status: done\\n",
            "app_data/job/inbox/{DS_EMAIL}/syft.pub.yaml": "rules: []\\n",
            "app_data/job/inbox/someone@else.org/x/run.sh": "echo x\\n",
        }}
        for rel, text in forged.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            c.datasite_watcher_syncer.on_file_change(Path(do) / rel, process_now=False)
        c.datasite_watcher_syncer.process_file_changes_queue()
        """
    )
    app.run_pass()
    assert secret.read_text() == "owner only\n"
    assert not review_state.exists()
    assert not (app.datasite.inbox / "someone@else.org").exists()
    grant = yaml.safe_load((app.datasite.inbox / DS_EMAIL / "syft.pub.yaml").read_text())
    assert grant["rules"], "the data scientist rewrote their own permission file"
    # Looked at once, refused, and moved out of the inbox: never read again.
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not [f for f in drive.children(inbox.id) if f.name.startswith("msgv2_")]
    archive = drive.named(f"syft_{DS_EMAIL}_to_{app.do_email}_archive")
    assert archive and drive.children(archive[0].id)
    refused = json.loads(app.home.state_file.read_text())["drive"]["ds"][DS_EMAIL]["refused"]
    reasons = " | ".join(r["why"] for r in refused)
    assert "private" in reasons and "permission file" in reasons, reasons
    assert reasons.count("do not let them write") == 2, reasons


def test_drive_pass_killed_before_archiving_receives_the_job_once(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo once', job_name='once')")

    # The move to the archive fails: the job is applied but its message stays.
    drive.refuse = lambda user, method, path, query: (
        (503, "backendError") if "addParents" in query else None
    )
    result = app.run_pass()
    assert result.exit_code == 1
    drive.refuse = None
    app.run_pass()
    app.run_pass()
    subjects = [m["Subject"] for m in outbox(app) if m["To"] == app.do_email]
    assert len([s for s in subjects if "once" in s]) == 1, subjects
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not drive.children(inbox.id)
    assert app.job_state("once", protocol="0")["status"] == "pending"


def test_drive_idle_pass_makes_few_requests(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    connected_peer(app, drive, syft_client_python)
    app.run_pass()
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_peer_of_the_other_generation_is_named(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive)
    drive.add_peer_folders("bob@uni.edu", app.do_email, "0.10.0")
    assert app.run_pass().exit_code == 0
    state = json.loads(app.home.state_file.read_text())
    assert state["drive"]["other_generation"] == {"bob@uni.edu": "0.10.0"}
    assert not app.datasite.peer_request_file("bob@uni.edu").exists()
    status = app.cli("status", check=True).stdout
    assert "Drive peer bob@uni.edu runs syft-client 0.10.0" in status
    assert "set drive.generation: '0.10'" in status
    peers = app.cli("peers", "list", check=True).stdout
    assert "bob@uni.edu" in peers and "other-version" in peers


def test_drive_passes_killed_at_random_instants_receive_each_job_once(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    from syft_bg_app.datasite.layout import JobRef

    ds = connected_peer(app, drive, syft_client_python)
    # One job at a time: the three runs span many passes, and so many kills.
    app.set_config(execute={"max_concurrent": 1})
    names = [f"killed{i}" for i in range(3)]
    # Each run draws a value of its own: a job run twice could not show one value both
    # in the owner's review folder and in the data scientist's copy.
    script = (
        "v=$(od -An -N8 -tx8 /dev/urandom | tr -d ' '); sleep 2; echo result of {n} $v;"
        " mkdir -p code/outputs; echo $v > code/outputs/value.txt"
    )
    ds.run(
        "\n".join(
            f"c.submit_bash_job({app.do_email!r}, {script.format(n=n)!r}, job_name={n!r})"
            for n in names
        )
    )
    # The rules are there before the first pass: the kills land while jobs are
    # received, approved, started, running and published.
    trust_submitted(app, ds, names)

    def received(name: str) -> bool:
        return (app.datasite.review / DS_EMAIL / name / "state.yaml").exists()

    def finished() -> bool:
        states = [app.job_state(n, protocol="0") if received(n) else {} for n in names]
        return all(state.get("status") in ("done", "failed") for state in states)

    # Killed passes go on until every job has finished, and a few more while their
    # results travel: at least 20 kills, whatever the speed of the machine.
    rng = random.Random(15)
    kills = after = 0
    while kills < 20 or after < 5:
        killed_passes(app, 1, rng, 3.0)
        kills += 1
        after = after + 1 if finished() else 0
        assert kills < 200, "the jobs never finished under killed passes"
    app.run_pass()  # the last results travel to the data scientist's outbox
    listing = ds.run(
        """
        for j in c.jobs:
            outputs = {p.name: p.read_text() for p in j.output_paths}
            print("JOB", json.dumps([j.name, j.status, str(j.stdout), outputs]))
        """
    )
    seen = {
        row[0]: row[1:]
        for row in (
            json.loads(line[4:]) for line in listing.splitlines() if line.startswith("JOB ")
        )
    }
    runs = [p for p in app.home.runs_dir.iterdir() if p.is_dir()]
    for name in names:
        state = app.job_state(name, protocol="0")
        review = app.datasite.review / DS_EMAIL / name
        assert state["status"] == "done", (review / "stderr.txt").read_text()
        assert state["approval_method"] == "auto"
        value = (review / "outputs" / "value.txt").read_text()
        assert len(value.strip()) == 16, value
        # The client's view of the job: done, its stdout and its output, with the value
        # of the one run the owner published.
        status, stdout, outputs = seen[name]
        assert status == "done"
        assert stdout.strip() == f"result of {name} {value.strip()}"
        assert outputs == {"value.txt": value}
        # One run of the job wrote output: no pass started it twice.
        digest = JobRef(DS_EMAIL, name, "0").digest[:10]
        ran = [
            run
            for run in runs
            if f"-{digest}-" in run.name
            and (run / "stdout.txt").exists()
            and (run / "stdout.txt").read_text().strip()
        ]
        assert len(ran) == 1, [run.name for run in runs]
        assert (ran[0] / "stdout.txt").read_text() == stdout
        kinds = [
            m["X-Syft-BG-Event"]
            for m in outbox(app)
            if m["To"] == app.do_email and name in m["Subject"]
        ]
        assert sorted(kinds) == sorted(set(kinds)), kinds
        assert "job_submitted" in kinds
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    assert not drive.children(inbox.id)


def test_drive_outbox_of_20_messages_is_merged_and_the_client_still_reads_it_all(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    notes = app.datasite.review / DS_EMAIL / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    for i in range(25):
        (notes / f"n{i}.txt").write_text(f"note {i}\n")
        app.run_pass()
        if i == 10:
            ds.run("c.sync()")  # it has read some of the messages that get merged
    outbox_folder = [f for f in drive.files.values() if f.name.endswith(f"#outbox#{DS_EMAIL}")]
    messages = drive.children(outbox_folder[0].id)
    assert 1 <= len(messages) < 20, [m.name for m in messages]
    ds.run("c.sync()")
    received = ds.syftbox / app.do_email / "app_data/job/review" / DS_EMAIL / "notes"
    assert sorted(p.name for p in received.iterdir()) == sorted(f"n{i}.txt" for i in range(25))
    assert (received / "n7.txt").read_text() == "note 7\n"


def test_drive_generation_0_10_with_the_real_syft_0_10(app: App, drive: FakeDrive) -> None:
    python = client_venv(SYFT_0_10)
    drive_app(app, drive, generation="0.10", approve={"peers": {"approved_emails": [DS_EMAIL]}})
    ds = RealClient(python, drive, app.tmp / "ds10", module="syft")
    ds.run(f"c.add_peer({app.do_email!r})")
    app.run_pass()
    app.run_pass()
    version = json.loads(
        [f for f in drive.named("SYFT_version.json") if f.owner == app.do_email][0].content
    )
    assert version["syft_client_version"] == "0.10.0"
    ds.run(
        f"""
        from pathlib import Path
        job = Path(c.syftbox_folder) / {app.do_email!r} / "app_data/job/inbox"
        job = job / {DS_EMAIL!r} / "v1" / "hello10"
        (job / "code").mkdir(parents=True)
        (job / "code" / "script.sh").write_text("echo hello from syft 0.10\\n")
        (job / "run.sh").write_text("#!/bin/bash\\nbash code/script.sh\\n")
        (job / "config.yaml").write_text(
            "name: hello10\\ntype: bash\\nsubmitted_at: '2026-11-20T10:00:00Z'\\n"
            "files: [script.sh]\\ndependencies: []\\njob_type: local\\n"
            "canonical_name: JobSubmissionMetadata\\nversion: '1'\\n"
        )
        c.push_job_files(job)
        """
    )
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/hello10").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/hello10", check=True)
    run_until(app, lambda: app.job_state("hello10").get("status") in ("done", "failed"), "the job")
    assert app.job_state("hello10")["status"] == "done"
    app.run_pass()
    ds.run("c.sync()")
    folder = ds.syftbox / app.do_email / "app_data/job/review" / DS_EMAIL / "v1" / "hello10"
    assert "hello from syft 0.10" in (folder / "stdout.txt").read_text()
    assert yaml.safe_load((folder / "state.yaml").read_text())["status"] == "done"


def test_setup_status_checks_the_drive_sign_in(app: App, drive: FakeDrive) -> None:
    from syft_bg_app.actions.setup_check import run_checks

    def drive_check():
        drive_lines = [c for c in run_checks(app.home) if c.label.startswith("Drive")]
        return next((c for c in drive_lines if not c.ok), drive_lines[-1])

    drive_app(app, drive)
    assert drive_check().ok
    token = app.tmp / "do_drive_token.json"
    token.chmod(0o644)
    check = drive_check()
    assert not check.ok and check.fix == f"chmod 600 {token}"
    drive.write_token(token, "someone@else.org")
    check = drive_check()
    assert not check.ok and "signs in as someone@else.org" in check.detail
    token.unlink()
    check = drive_check()
    assert not check.ok and f"no token at {token}" in check.detail


def test_drive_bad_messages_are_archived_with_a_reason_and_the_next_one_is_applied(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    from syft_bg_app.sync.drive import protocol

    ds = connected_peer(app, drive, syft_client_python)
    inbox = [f for f in drive.files.values() if f.name.endswith(f"#inbox#{DS_EMAIL}")][0]
    impostor = json.dumps(
        {
            "sender_email": "mallory@uni.edu",
            "proposed_file_changes": [
                {
                    "path_in_datasite": f"app_data/job/inbox/{DS_EMAIL}/x/run.sh",
                    "content": "echo x\n",
                    "content_type": "text",
                    "datasite_email": app.do_email,
                }
            ],
        }
    ).encode()
    for name, data in (
        ("msgv2_1000.5_garbage.tar.gz", b"not a tar at all"),
        ("msgv2_1000.6_impostor.tar.gz", protocol.compress(impostor)),
    ):
        drive._create(DS_EMAIL, {"name": name, "parents": [inbox.id]}, data)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo fine', job_name='fine')")
    app.run_pass()
    assert app.job_state("fine", protocol="0")["status"] == "pending"
    assert not (app.datasite.inbox / DS_EMAIL / "x").exists()
    assert not drive.children(inbox.id)
    refused = json.loads(app.home.state_file.read_text())["drive"]["ds"][DS_EMAIL]["refused"]
    assert [r["message"] for r in refused] == [
        "msgv2_1000.5_garbage.tar.gz",
        "msgv2_1000.6_impostor.tar.gz",
    ]
    assert "not a message archive" in refused[0]["why"]
    assert "sent as 'mallory@uni.edu'" in refused[1]["why"]


def test_drive_a_revoked_sign_in_fails_the_sync_step_plainly_and_the_pass_goes_on(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    drive.tokens.clear()  # revoked: every request is refused
    result = app.run_pass()
    assert result.failed_steps == ["sync"]
    state = json.loads(app.home.state_file.with_name("last_pass.json").read_text())
    error = state["steps"]["sync"]["error"]
    assert "Drive refused the request (401" in error and "sign in to Google Drive again" in error
    assert all(state["steps"][step]["ok"] for step in ("notify", "approve", "execute"))


def test_drive_a_rejection_reaches_the_client_with_its_reason(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo no', job_name='nope')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/nope").returncode == 0, "job")
    app.cli("jobs", "reject", f"{DS_EMAIL}/nope", "-r", "uses too much data", check=True)
    app.run_pass()
    ds.run("c.sync()")
    state = yaml.safe_load(ds.result_file(app.do_email, "nope", "state.yaml").read_text())
    assert state["status"] == "rejected"
    assert state["review_reason"] == "uses too much data"


def test_drive_a_job_changed_by_the_client_after_approval_never_runs(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(f"c.submit_bash_job({app.do_email!r}, 'echo as approved', job_name='swap')")
    run_until(app, lambda: app.cli("jobs", "show", f"{DS_EMAIL}/swap").returncode == 0, "job")
    app.cli("jobs", "approve", f"{DS_EMAIL}/swap", check=True)
    # The client proposes a new run.sh; its old_hash is right, so it is applied.
    ds.run(
        f"""
        from pathlib import Path
        rel = Path({app.do_email!r}) / "app_data/job/inbox" / {DS_EMAIL!r} / "swap/run.sh"
        (Path(c.syftbox_folder) / rel).write_text("#!/bin/bash\\necho changed after approval\\n")
        c.datasite_watcher_syncer.on_file_change(rel)
        """
    )
    run_until(
        app,
        lambda: app.job_state("swap", protocol="0").get("status") in ("done", "failed"),
        "the job to finish",
    )
    run_sh = app.datasite.inbox / DS_EMAIL / "swap" / "run.sh"
    assert "changed after approval" in run_sh.read_text()
    app.run_pass()
    ds.run("c.sync()")
    stdout = ds.result_file(app.do_email, "swap", "stdout.txt").read_text()
    assert "as approved" in stdout and "changed after approval" not in stdout


def test_drive_folders_named_for_someone_else_are_no_request(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    for peer in (DS_EMAIL, "../../escape"):
        drive.add_peer_folders("mallory@evil.org", app.do_email, "0.1.117", peer=peer)
    assert app.run_pass().exit_code == 0
    assert not app.datasite.peer_request_file(DS_EMAIL).exists()
    assert not (app.datasite.peers.parent.parent / "escape").exists()
    assert json.loads(app.home.state_file.read_text())["peers"] == {}


def test_drive_idle_pass_at_60_peers_makes_as_few_requests(app: App, drive: FakeDrive) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    for i in range(60):
        drive.add_peer_folders(f"ds{i}@uni.edu", app.do_email, "0.1.117")
    for _ in range(3):
        assert app.run_pass().exit_code == 0
    mirrors = [f for f in drive.files.values() if f.owner == app.do_email and "#inbox#" in f.name]
    assert len(mirrors) == 60
    before = drive.count(app.do_email)
    assert app.run_pass().exit_code == 0
    assert drive.count(app.do_email) - before <= 3


def test_drive_a_job_with_a_refused_file_is_rejected_and_the_client_learns_why(
    app: App, drive: FakeDrive, syft_client_python: Path
) -> None:
    ds = connected_peer(app, drive, syft_client_python)
    ds.run(
        f"""
        from pathlib import Path
        rel = Path({app.do_email!r}) / "app_data/job/inbox" / {DS_EMAIL!r} / "sneaky"
        job = Path(c.syftbox_folder) / rel
        (job / "code" / ".git").mkdir(parents=True)
        (job / "code" / ".git" / "config").write_text("[core]\\n")
        (job / "code" / "script.sh").write_text("echo sneaky\\n")
        (job / "run.sh").write_text("#!/bin/bash\\nbash code/script.sh\\n")
        (job / "config.yaml").write_text("name: sneaky\\ntype: bash\\nfiles: [script.sh]\\n")
        c.push_job_files(job)
        """
    )
    app.run_pass()
    state = app.job_state("sneaky", protocol="0")
    assert state["status"] == "rejected"
    assert "not accepted over Google Drive" in state["review_reason"]
    assert ".git/config" in state["review_reason"]
    app.run_pass()
    ds.run("c.sync()")
    seen = yaml.safe_load(ds.result_file(app.do_email, "sneaky", "state.yaml").read_text())
    assert seen["status"] == "rejected" and ".git/config" in seen["review_reason"]


def test_drive_peers_file_of_the_owners_notebook_keeps_its_entries(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive, approve={"peers": {"approved_domains": ["uni.edu"]}})
    root = drive._create(app.do_email, {"name": "SyftBox", "mimeType": FOLDER}, b"")
    earlier = {"carol@lab.org": {"state": "accepted"}}
    meta = {"name": "SYFT_peers.json", "parents": [root.id]}
    drive._create(app.do_email, meta, json.dumps(earlier).encode())
    drive.add_peer_folders(DS_EMAIL, app.do_email, "0.1.117")
    app.run_pass()
    app.run_pass()
    files = [f for f in drive.named("SYFT_peers.json") if f.owner == app.do_email]
    assert len(files) == 1
    assert json.loads(files[0].content) == {**earlier, DS_EMAIL: {"state": "accepted"}}


def _archive(members: list[tuple[str, bytes]]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_drive_a_message_of_countless_or_huge_members_is_refused_without_unpacking_it() -> None:
    from syft_bg_app.sync.drive import protocol

    body = b'{"proposed_file_changes": [], "sender_email": "a@b.c"}'
    padding = [(f"pad{i}", b"") for i in range(200_000)]
    # The clients' form: the JSON first; whatever follows is never read.
    assert protocol.uncompress(_archive([(protocol.MESSAGE_MEMBER, body), *padding]), 4096) == body
    refused = [
        [*padding, (protocol.MESSAGE_MEMBER, body)],  # the JSON after 200,000 empty members
        [("big", b"\0" * 100_000), (protocol.MESSAGE_MEMBER, body)],  # after one over the cap
        [(protocol.MESSAGE_MEMBER, b" " * 5000)],  # the JSON itself over the cap
    ]
    for members in refused:
        with pytest.raises(protocol.MessageError):
            protocol.uncompress(_archive(members), 4096)
