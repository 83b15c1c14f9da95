"""The SMTP transport: STARTTLS or implicit TLS, login, password from env or a 0600 file."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

from syft_bg_app.mail.errors import MailError, PermanentMailError, TransientMailError
from syft_bg_app.mail.retry import Deadline

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


def resolve_path(value: str, home_root: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else home_root / path


def read_password(settings: dict[str, Any], home_root: Path) -> str | None:
    """The SMTP password from ``password_env`` or ``password_file`` (never logged)."""
    env_name = settings.get("password_env")
    file_value = settings.get("password_file")
    if env_name:
        value = os.environ.get(env_name)
        if value:
            return value
        if not file_value:
            raise PermanentMailError(
                f"the environment variable {env_name} (notify.smtp.password_env) is not set "
                f"for the pass",
                advice=(
                    "cron and systemd timers do not read your shell profile: put the password "
                    "in a file only you can read (chmod 600) and set notify.smtp.password_file"
                ),
            )
    if file_value:
        path = resolve_path(file_value, home_root)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PermanentMailError(
                f"the SMTP password file {path} does not exist",
                advice=f"write the password into {path} and run: chmod 600 {path}",
            ) from None
        except OSError as exc:
            raise PermanentMailError(f"cannot read {path}: {exc.strerror}") from None
        if st.st_mode & 0o077:
            raise PermanentMailError(
                f"the SMTP password file {path} can be read by other users "
                f"(mode {stat.S_IMODE(st.st_mode):o}); it is not used",
                advice=f"run: chmod 600 {path}",
            )
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
        if not password:
            raise PermanentMailError(f"the SMTP password file {path} is empty")
        return password
    if settings.get("username"):
        raise PermanentMailError(
            "notify.smtp.username is set but there is no password",
            advice="set notify.smtp.password_env or notify.smtp.password_file",
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpTransport:
    name = "smtp"
    resend_replaces = False

    def __init__(self, settings: dict[str, Any], home_root: Path, from_address: str) -> None:
        if not settings.get("host"):
            raise PermanentMailError(
                "notify.transport is smtp but notify.smtp.host is not set",
                advice="set notify.smtp.host (and port, security, username, password) in "
                "config.yaml, or go back to notify.transport: outbox",
            )
        self.host = settings["host"]
        self.security = settings["security"]
        self.port = settings.get("port") or DEFAULT_PORTS[self.security]
        self.username = settings.get("username")
        self.timeout = settings["timeout"]
        self.ca_file = (
            resolve_path(settings["ca_file"], home_root) if settings.get("ca_file") else None
        )
        self.from_address = from_address
        self.password = read_password(settings, home_root)
        if self.username and self.security == "none" and not _is_loopback(self.host):
            raise PermanentMailError(
                f"notify.smtp.security is none: the password would cross the network to "
                f"{self.host} unencrypted",
                advice="use security starttls (port 587) or ssl (port 465)",
            )
        self._conn = None

    def describe(self) -> str:
        login = f", login {self.username}" if self.username else ""
        return f"smtp ({self.host}:{self.port}, {self.security}{login})"

    def _connect(self, deadline: Deadline):
        import smtplib
        import ssl

        timeout = max(1.0, min(float(self.timeout), deadline.remaining() or 1.0))
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=str(self.ca_file))
        if self.security == "ssl":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=timeout)
        try:
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def send(
        self, entry: dict[str, Any], raw: bytes, thread_id: str | None, deadline: Deadline
    ) -> str | None:
        try:
            if self._conn is None:
                self._conn = self._connect(deadline)
            self._conn.sendmail(self.from_address, [entry["to"]], raw)
        except Exception as exc:
            import smtplib

            error = self._classify(exc)
            # After a refusal the server answered, the connection is still in step
            # (smtplib reset the transaction); after anything else it may not be.
            in_step = (
                isinstance(exc, smtplib.SMTPException) and getattr(error, "scope", "") == "message"
            )
            if isinstance(error, TransientMailError) or not in_step:
                self.close()
            raise error from None
        return None

    def _classify(self, exc: Exception) -> MailError:
        import smtplib
        import ssl

        where = f"{self.host}:{self.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentMailError(
                f"the certificate of {where} is not trusted ({exc.verify_message})",
                advice="if this is your own mail server, set notify.smtp.ca_file to its CA "
                "certificate; otherwise check notify.smtp.host",
            )
        if isinstance(exc, ssl.SSLError):
            return PermanentMailError(
                f"TLS with {where} failed ({exc.reason or exc})",
                advice="check notify.smtp.security and port: 587 is usually starttls, 465 is ssl",
            )
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            if 400 <= exc.smtp_code < 500:
                return TransientMailError(
                    f"{where} could not check the login now ({exc.smtp_code})"
                )
            return PermanentMailError(
                f"{where} refused the login of {self.username} ({exc.smtp_code} "
                f"{_text(exc.smtp_error)})",
                advice="check notify.smtp.username and the password; some providers "
                "(Gmail, Outlook) need an app password here",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentMailError(
                f"{where} does not support what the configuration asks: {exc}",
                advice="check notify.smtp.security (starttls, ssl or none) and port",
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            if 400 <= exc.smtp_code < 500:
                return TransientMailError(f"{where} deferred the sender ({exc.smtp_code})")
            if refuses_this_message(exc.smtp_code, _text(exc.smtp_error)):
                # MAIL FROM carries the message's SIZE=: this refusal is about
                # this email, not the sender; the others still go.
                return PermanentMailError(
                    f"{where} refused the email ({exc.smtp_code} {_text(exc.smtp_error)})",
                    advice="the email stays queued (syft-bg mail list); lower "
                    "notify.max_email_kb or notify.code_total_cap, then run syft-bg mail retry",
                    scope="message",
                )
            return PermanentMailError(
                f"{where} does not accept {self.from_address} as the sender ({exc.smtp_code} "
                f"{_text(exc.smtp_error)})",
                advice="set notify.from_address to an address your SMTP account may send as",
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, message = next(iter(exc.recipients.values()))
            if 400 <= code < 500:
                return TransientMailError(
                    f"{where} deferred the recipient ({code} {_text(message)})"
                )
            return PermanentMailError(
                f"{where} refused the recipient ({code} {_text(message)})",
                advice="check the address; the email stays queued (syft-bg mail list)",
                scope="message",
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            if 400 <= exc.smtp_code < 500:
                return TransientMailError(
                    f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
                )
            return PermanentMailError(
                f"{where} refused the email ({exc.smtp_code} {_text(exc.smtp_error)})",
                advice="the email stays queued (syft-bg mail list); run syft-bg mail retry "
                "once the cause is fixed",
                scope="message",
            )
        if isinstance(exc, (smtplib.SMTPException, OSError)):
            return TransientMailError(f"cannot reach {where}: {exc or type(exc).__name__}")
        # Anything else (a message the library cannot encode, ...) is about this
        # email: it is held, the others still go.
        return PermanentMailError(f"sending through {where} failed: {exc!r}", scope="message")

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except Exception:
                _quietly_close(conn)


# Enhanced status codes (RFC 3463) that are about one message: too big for the
# system (5.3.4), over an administrative size limit (5.2.3), a mailbox full (5.2.2).
MESSAGE_STATUS_CODES = ("5.3.4", "5.2.3", "5.2.2")
SIZE_WORDS = ("size", "too large", "too big", "too long", "exceeds")


def refuses_this_message(code: int, text: str) -> bool:
    """Whether a 5xx answer to MAIL FROM refuses this email (its SIZE) rather than
    the sender: 552 is "exceeded storage allocation" (RFC 5321, RFC 1870), and a
    554 or 550 counts when it says so."""
    if code == 552:
        return True
    lowered = text.lower()
    return any(c in lowered for c in MESSAGE_STATUS_CODES) or any(
        word in lowered for word in SIZE_WORDS
    )


def _quietly_close(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
