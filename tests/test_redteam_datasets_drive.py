"""A hostile data scientist against the newest features: the owner's email about a data
scientist of the other syft-client generation (its version comes from the name of a
Drive folder the data scientist owns), the datasets a job declares in its
``config.yaml``, rules made ``--from-job``, and what a job finds when it walks its
sandbox. Each test is an attack; what it asserts is what the data owner relies on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import DO_EMAIL, App, outbox, text_of
from tests.fake_drive import FakeDrive

DS = "alice@uni.edu"
EVE = "eve@evil.org"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    fake = FakeDrive().start()
    yield fake
    fake.stop()


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


def test_thousands_of_folders_of_one_data_scientist_make_one_email_and_the_pass_ends(
    app: App, drive: FakeDrive
) -> None:
    drive_app(app, drive)
    for n in range(2000):
        drive.add_peer_folders(EVE, DO_EMAIL, f"0.1.{n}")

    for _ in range(2):
        assert app.run_pass().exit_code == 0

    assert len(about(app, EVE)) == 1
