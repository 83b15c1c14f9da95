"""SMTP delivery against a real SMTP server (aiosmtpd) on 127.0.0.1, with STARTTLS
or implicit TLS and a login, through real passes."""

from __future__ import annotations

import email
import shutil
import socket
import ssl
import subprocess
from email import policy
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, App

from syft_bg_app.datasite.layout import JobRef

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

USER, PASSWORD = "owner-login", "correct horse battery"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cryptography, or the openssl tool)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if not shutil.which("openssl"):
            pytest.skip(
                "neither the cryptography package nor openssl is here to make a certificate"
            )
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """What the SMTP server received, and who logged in."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt": list(envelope.rcpt_tos),
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
                "message": email.message_from_bytes(
                    envelope.original_content, policy=policy.default
                ),
            }
        )
        return "250 OK"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == PASSWORD
        )
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def start_server(certificate, implicit_tls: bool = False):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    inbox = Inbox()
    options = dict(
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticator,
        auth_required=True,
    )
    if implicit_tls:
        # aiosmtpd offers AUTH only after STARTTLS unless told the whole
        # connection is already encrypted, as it is here.
        options.update(ssl_context=context, server_hostname="127.0.0.1", auth_require_tls=False)
    else:
        options.update(tls_context=context, require_starttls=True)
    controller = aiosmtpd_controller.Controller(inbox, **options)
    controller.start()
    return controller, inbox


@pytest.fixture
def smtp_server(certificate):
    controller, inbox = start_server(certificate)
    yield controller, inbox
    controller.stop()


def use_smtp(app: App, port: int, cert: Path, security: str = "starttls", **extra) -> Path:
    secret = app.home.root / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username": USER,
        "password_file": str(secret),
        "ca_file": str(cert),
        "timeout": 10,
    }
    settings.update(extra)
    app.set_config(
        notify={"transport": "smtp", "smtp": settings, "from_address": "bot@datasite.org"},
        execute={"enabled": False},
    )
    return secret


def by(inbox: Inbox, to: str, kind: str):
    found = [
        m for m in inbox.messages if m["rcpt"] == [to] and m["message"]["X-Syft-BG-Event"] == kind
    ]
    assert len(found) == 1, [(m["rcpt"], m["message"]["X-Syft-BG-Event"]) for m in inbox.messages]
    return found[0]


def test_a_job_life_over_smtp_with_starttls_and_login(app: App, smtp_server, certificate) -> None:
    controller, inbox = smtp_server
    use_smtp(app, controller.port, certificate[0])
    app.submit("analysis")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS_EMAIL}/analysis", check=True)
    assert app.run_pass().exit_code == 0
    app.datasite.write_job_state(JobRef(DS_EMAIL, "analysis"), status="done", return_code=0)
    result = app.run_pass()
    assert result.exit_code == 0 and result.counts["sent"] == 2

    assert len(inbox.messages) == 6
    assert all(m["tls"] and m["authenticated"] for m in inbox.messages)
    assert all(m["mail_from"] == "bot@datasite.org" for m in inbox.messages)
    assert inbox.logins and all(login == (USER, True) for login in inbox.logins)
    thread = [
        by(inbox, DO_EMAIL, k)["message"] for k in ("job_submitted", "job_approved", "job_finished")
    ]
    subjects = {m["Subject"] for m in thread}
    assert subjects == {f"[syft-bg] job analysis from {DS_EMAIL}"}
    assert thread[1]["In-Reply-To"] == thread[0]["Message-ID"]
    assert thread[2]["In-Reply-To"] == thread[1]["Message-ID"]
    assert thread[2]["References"].split() == [thread[0]["Message-ID"], thread[1]["Message-ID"]]
    for m in inbox.messages:
        message = m["message"]
        assert message["To"] == m["rcpt"][0]
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "analysis" in plain and "analysis" in html and "<html>" in html
    ds_subjects = {
        by(inbox, DS_EMAIL, k)["message"]["Subject"]
        for k in ("job_submitted", "job_approved", "job_finished")
    }
    assert ds_subjects == {f"[syft-bg] your job analysis on {DO_EMAIL}"}

    for _ in range(2):
        assert app.run_pass().counts.get("sent", 0) == 0
    assert len(inbox.messages) == 6


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_and_a_password_from_the_environment(
    app: App, certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, inbox = start_server(certificate, implicit_tls=True)
    try:
        use_smtp(
            app,
            controller.port,
            certificate[0],
            security="ssl",
            password_file=None,
            password_env="MY_SMTP_PASSWORD",
        )
        monkeypatch.setenv("MY_SMTP_PASSWORD", PASSWORD)
        app.submit("analysis")
        assert app.run_pass().counts["sent"] == 2
        assert sorted(m["rcpt"][0] for m in inbox.messages) == sorted([DO_EMAIL, DS_EMAIL])
        assert all(m["authenticated"] for m in inbox.messages)
        assert inbox.logins and all(login == (USER, True) for login in inbox.logins)
    finally:
        controller.stop()


def test_a_password_file_others_can_read_is_refused(app: App, smtp_server, certificate) -> None:
    controller, inbox = smtp_server
    secret = use_smtp(app, controller.port, certificate[0])
    secret.chmod(0o640)
    app.submit("analysis")
    app.run_pass()
    assert inbox.messages == [] and inbox.logins == []
    status = app.cli("status", check=True).stdout
    assert "can be read by other users" in status
    assert f"chmod 600 {secret}" in status
    assert "2 emails are kept" in status
    secret.chmod(0o600)
    assert app.run_pass().counts["sent"] == 2
    assert "MAIL PROBLEM" not in app.cli("status", check=True).stdout


def test_a_wrong_password_keeps_the_mail_and_says_what_to_do(
    app: App, smtp_server, certificate
) -> None:
    controller, inbox = smtp_server
    secret = use_smtp(app, controller.port, certificate[0])
    secret.write_text("wrong\n")
    app.submit("analysis")
    app.run_pass()
    attempts = list(inbox.logins)
    assert attempts and all(login == (USER, False) for login in attempts)
    # Nothing changed: the next pass does not knock again (no account lockout).
    app.run_pass()
    assert inbox.logins == attempts
    status = app.cli("status", check=True).stdout
    assert "refused the login of owner-login" in status
    assert "check notify.smtp.username and the password" in status
    secret.write_text(PASSWORD)
    assert app.run_pass().counts["sent"] == 2


def test_an_untrusted_certificate_is_a_plain_problem(app: App, smtp_server, certificate) -> None:
    controller, inbox = smtp_server
    use_smtp(app, controller.port, certificate[0], ca_file=None)
    app.submit("analysis")
    app.run_pass()
    assert inbox.messages == []
    status = app.cli("status", check=True).stdout
    assert "is not trusted" in status and "notify.smtp.ca_file" in status


def test_a_server_that_is_down_is_temporary(app: App, certificate, monkeypatch) -> None:
    from syft_bg_app.mail import retry

    waits: list[float] = []
    monkeypatch.setattr(retry, "SLEEP", waits.append)
    use_smtp(app, free_port(), certificate[0])
    app.set_config(notify={"retry_budget": 5})
    app.submit("analysis")
    app.run_pass()
    assert waits and all(w <= retry.MAX_WAIT for w in waits)
    status = app.cli("status", check=True).stdout
    assert "looks temporary" in status and "2 queued" in status
