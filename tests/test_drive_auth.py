"""Signing in to Google Drive from ``init`` (-t/--token-path, --drive), the Drive lines
of ``setup-status``, and the owner's email about a data scientist of the other
syft-client generation.

The app talks to tests/fake_drive.py (a Drive v3 server on 127.0.0.1) through
``drive.api_endpoint``, and to tests/fake_google.py for Google's consent and token
exchange; the real google-auth, google-auth-oauthlib and google-api-python-client
run on the app's side.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_google import GMAIL_SCOPE, FakeGoogle, browser_comes_back

from tests.conftest import DO_EMAIL, PATIENCE, App, outbox, text_of
from tests.fake_drive import DRIVE_SCOPE, FakeDrive


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


def drive_endpoint(app: App, drive: FakeDrive) -> None:
    app.set_config(drive={"api_endpoint": drive.url})


def secrets_in(info: dict) -> list[str]:
    return [info[k] for k in ("token", "refresh_token", "client_secret") if info.get(k)]


# -- init -t --------------------------------------------------------------------------------


def test_init_token_path_copies_the_token_private_and_syncs_over_drive(
    app: App, drive: FakeDrive
) -> None:
    drive_endpoint(app, drive)
    before = app.home.config_file.read_text()
    source = drive.write_token(app.tmp / "from-syft-bg-0.3" / "token.json", DO_EMAIL)
    source.chmod(0o644)  # as a copy made by hand often is
    result = app.cli("init", "-t", str(source))
    assert result.returncode == 0, result.stderr
    saved = app.home.root / "drive_token.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text()) == json.loads(source.read_text())
    assert f"signs in to Google Drive as {DO_EMAIL}" in result.stdout
    assert "set sync.transport: drive" in result.stdout
    for secret in secrets_in(json.loads(source.read_text())):
        assert secret not in result.stdout + result.stderr
    # Only that line of config.yaml changed.
    after = app.home.config_file.read_text()
    assert len(before.splitlines()) == len(after.splitlines())
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)
    assert [(a, b) for a, b in pairs if a != b] == [("  transport: local", "  transport: drive")]
    # A pass signs in with it.
    assert app.run_pass().exit_code == 0
    assert drive.count(DO_EMAIL) > 1


def _not_json(tmp: Path, drive: FakeDrive) -> Path:
    path = tmp / "notes.txt"
    path.write_text("refresh=secret-value-1\n")
    return path


def _client_file(tmp: Path, drive: FakeDrive) -> Path:
    path = tmp / "client_secret.json"
    client = {"client_id": "c.apps.example", "client_secret": "secret-value-1"}
    path.write_text(json.dumps({"installed": client}))
    return path


def _service_account(tmp: Path, drive: FakeDrive) -> Path:
    path = tmp / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": "secret-value-1"}))
    return path


def _no_refresh_token(tmp: Path, drive: FakeDrive) -> Path:
    path = drive.write_token(tmp / "token.json", DO_EMAIL)
    info = json.loads(path.read_text())
    del info["refresh_token"]
    info["client_secret"] = "secret-value-1"
    path.write_text(json.dumps(info))
    return path


def _gmail_only(tmp: Path, drive: FakeDrive) -> Path:
    path = drive.write_token(tmp / "token.json", DO_EMAIL)
    info = json.loads(path.read_text())
    info["scopes"] = [GMAIL_SCOPE]
    info["client_secret"] = "secret-value-1"
    path.write_text(json.dumps(info))
    return path


def _someone_else(tmp: Path, drive: FakeDrive) -> Path:
    path = drive.write_token(tmp / "token.json", "someone@else.org")
    info = json.loads(path.read_text())
    info["client_secret"] = "secret-value-1"
    path.write_text(json.dumps(info))
    return path


def _revoked(tmp: Path, drive: FakeDrive) -> Path:
    path = _someone_else(tmp, drive)
    drive.tokens.clear()
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (_not_json, "is not JSON"),
        (
            _client_file,
            "is an OAuth client file, not a token; sign in with it: ",
        ),
        (_service_account, "not an authorized-user token (its type is 'service_account')"),
        (_no_refresh_token, "not an authorized-user token (no refresh_token)"),
        (_gmail_only, "does not carry the Drive scope"),
        (_someone_else, f"signs in as someone@else.org, not as the data owner {DO_EMAIL}"),
        (_revoked, "the Drive token was refused"),
    ],
)
def test_init_token_path_refuses_what_is_no_drive_token_of_the_owner(
    app: App, drive: FakeDrive, make, says: str
) -> None:
    drive_endpoint(app, drive)
    before = app.home.config_file.read_bytes()
    result = app.cli("init", "-t", str(make(app.tmp, drive)))
    assert result.returncode == 2, result.stdout
    assert says in result.stderr
    assert "secret-value-1" not in result.stdout + result.stderr
    assert app.home.config_file.read_bytes() == before
    assert not (app.home.root / "drive_token.json").exists()


def test_init_token_path_refused_before_a_fresh_config_is_written(
    bare_app: App, drive: FakeDrive
) -> None:
    app = bare_app
    result = app.cli(
        "init",
        "-e",
        DO_EMAIL,
        "-r",
        str(app.root),
        "--create",
        "-t",
        str(_gmail_only(app.tmp, drive)),
    )
    assert result.returncode == 2
    assert not app.home.config_file.exists()
    assert not app.root.exists()


def _init_redirected(app: App, drive: FakeDrive, *args: str) -> subprocess.CompletedProcess:
    """``init ...`` whose calls to Google reach the fake Drive (a fresh config names no
    ``drive.api_endpoint``)."""
    redirect = drive.client_redirect(app.tmp / "redirect")
    env = dict(app.env, PYTHONPATH=str(redirect))
    return subprocess.run(
        [sys.executable, "-m", "syft_bg_app", "init", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
    )


def test_init_token_path_creates_the_syftbox_folder_a_drive_user_has_no_client_for(
    bare_app: App, drive: FakeDrive
) -> None:
    app = bare_app
    token = drive.write_token(app.tmp / "token.json", DO_EMAIL)
    result = _init_redirected(app, drive, "-e", DO_EMAIL, "-r", str(app.root), "-t", str(token))
    assert result.returncode == 0, result.stderr
    assert app.datasite.inbox.is_dir()
    assert f"created the SyftBox folder {app.root}" in result.stdout
    assert f"signs in to Google Drive as {DO_EMAIL}" in result.stdout
    assert app.config.get("sync.transport") == "drive"
    generation = app.config.get("drive.generation")
    assert f"speaking drive.generation '{generation}'" in result.stdout
    assert "set drive.generation:" in result.stdout


def test_init_token_path_checks_everything_local_before_asking_google(
    bare_app: App, drive: FakeDrive
) -> None:
    app = bare_app
    token = drive.write_token(app.tmp / "token.json", DO_EMAIL)
    not_a_folder = app.tmp / "SyftBox-file"
    not_a_folder.write_text("")
    result = _init_redirected(app, drive, "-e", DO_EMAIL, "-r", str(not_a_folder), "-t", str(token))
    assert result.returncode == 2
    assert f"{not_a_folder} is not a folder" in result.stderr
    assert drive.count(DO_EMAIL) == 0
    assert not app.home.config_file.exists()


# -- init --drive -----------------------------------------------------------------------------


def run_consent_cli(app: App, google: FakeGoogle, *args: str) -> tuple[str, list[str]]:
    """Run ``init ...``, play the browser: open the printed address, come back with a
    code; returns the output and the scopes asked for."""
    env = dict(app.env, PYTHONUNBUFFERED="1", OAUTHLIB_INSECURE_TRANSPORT="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app", "init", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        url, printed = None, []
        deadline = time.monotonic() + PATIENCE
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/auth\?\S+)", line)
            url = found.group(1) if found else None
        assert url, process.stderr.read()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert query["access_type"] == ["offline"]
        assert b"signed in to Google Drive" in browser_comes_back(query, PATIENCE)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    return "".join(printed) + out, query["scope"][0].split()


@pytest.mark.parametrize("with_gmail", [False, True])
def test_init_drive_signs_in_with_a_printed_address(
    app: App, drive: FakeDrive, google: FakeGoogle, with_gmail: bool
) -> None:
    drive_endpoint(app, drive)
    secrets = app.tmp / "client_secret.json"
    google.write_client_secrets(secrets)
    google.codes.add("code-from-google")
    scopes = [DRIVE_SCOPE, GMAIL_SCOPE] if with_gmail else [DRIVE_SCOPE]
    google.code_scopes["code-from-google"] = scopes
    # The fake Google and the fake Drive keep separate books: the access tokens the
    # first issues are the owner's on the second.
    for n in range(1, 20):
        drive.tokens[f"access-{n}"] = DO_EMAIL
    args = ["--drive", str(secrets)] + (["--gmail", str(secrets)] if with_gmail else [])
    out, asked = run_consent_cli(app, google, *args)
    assert asked == scopes
    exchange = google.token_requests()[-1].form()
    assert exchange["grant_type"] == "authorization_code" and exchange.get("code_verifier")
    token = app.home.root / "drive_token.json"
    assert token.stat().st_mode & 0o777 == 0o600
    info = json.loads(token.read_text())
    assert info["refresh_token"] == "refresh-from-code" and info["scopes"] == scopes
    assert "refresh-from-code" not in out
    assert f"signs in to Google Drive as {DO_EMAIL}" in out
    assert app.config.get("sync.transport") == "drive"
    gmail_token = app.home.root / "gmail_token.json"
    if with_gmail:
        # One sign-in, one token for both, as syft-bg 0.3 keeps it.
        assert json.loads(gmail_token.read_text()) == info
        assert gmail_token.stat().st_mode & 0o777 == 0o600
        assert app.config.get("notify.transport") == "gmail"
    else:
        assert not gmail_token.exists()
        assert app.config.get("notify.transport") == "outbox"
    assert app.run_pass().exit_code == 0


def test_init_drive_refuses_a_file_that_is_no_oauth_client(app: App, drive: FakeDrive) -> None:
    token = drive.write_token(app.tmp / "token.json", DO_EMAIL)
    before = app.home.config_file.read_bytes()
    result = app.cli("init", "--drive", str(token))
    assert result.returncode == 2
    assert "--drive:" in result.stderr and "not an OAuth client file" in result.stderr
    assert app.home.config_file.read_bytes() == before


# -- setup-status -----------------------------------------------------------------------------


def setup_status(app: App) -> str:
    return app.cli("setup-status").stdout


def test_setup_status_checks_the_drive_token_its_scope_and_the_account(
    app: App, drive: FakeDrive
) -> None:
    token = app.home.root / "drive_token.json"
    app.set_config(sync={"transport": "drive"}, drive={"api_endpoint": drive.url})

    out = setup_status(app)
    assert f"✗ Drive token: no token at {token}" in out
    assert app.command("init -t TOKEN_JSON") in out
    assert app.command("init --drive CREDENTIALS_JSON") in out

    info = json.loads(drive.write_token(token, DO_EMAIL).read_text())
    info["scopes"] = [GMAIL_SCOPE]
    token.write_text(json.dumps(info))
    out = setup_status(app)
    assert "✗ Drive scope:" in out and "does not carry the Drive scope" in out
    assert app.command("init --drive CREDENTIALS_JSON") in out

    drive.write_token(token, "someone@else.org")
    out = setup_status(app)
    assert "✓ Drive token:" in out
    assert (
        f"✗ Drive sign-in: the token signs in as someone@else.org, not as do_email {DO_EMAIL}"
        in out
    )
    assert f"sign in to Google as {DO_EMAIL}" in out

    drive.write_token(token, DO_EMAIL)
    out = setup_status(app)
    assert "✓ Drive token:" in out and "with the Drive scope" in out
    assert f"✓ Drive sign-in: Google Drive names {DO_EMAIL}" in out


# -- the other generation ----------------------------------------------------------------------


def test_owner_gets_one_email_about_a_data_scientist_of_the_other_generation(
    app: App, drive: FakeDrive
) -> None:
    token = drive.write_token(app.tmp / "do_drive_token.json", DO_EMAIL)
    app.set_config(
        sync={"transport": "drive"},
        drive={"generation": "0.10", "api_endpoint": drive.url, "token": str(token)},
    )
    drive.add_peer_folders("bob@uni.edu", DO_EMAIL, "0.1.117")

    def about_bob() -> list:
        return [m for m in outbox(app) if "bob@uni.edu runs syft-client 0.1.117" in m["Subject"]]

    for _ in range(3):
        assert app.run_pass().exit_code == 0
    emails = about_bob()
    assert len(emails) == 1
    message = emails[0]
    assert message["To"] == DO_EMAIL
    body = text_of(message)
    assert "syft-client 0.1.117" in body and "syft 0.10.x" in body
    assert "generation: '0.1'" in body and str(app.home.config_file) in body
    html = message.get_body(("html",)).get_content()
    assert "generation: &#39;0.1&#39;" in html or "generation: '0.1'" in html

    # Another data scientist on that version gets their own email; bob's stays one.
    drive.add_peer_folders("carol@uni.edu", DO_EMAIL, "0.1.117")
    app.run_pass()
    app.run_pass()
    assert len(about_bob()) == 1
    assert len([m for m in outbox(app) if "carol@uni.edu" in m["Subject"]]) == 1
