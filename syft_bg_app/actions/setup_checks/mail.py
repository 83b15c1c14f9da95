"""setup-status checks of mail: the transport's settings and credentials (an SMTP
password file, a Gmail token, refreshed when due) and a delivery failure the
last pass recorded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from syft_bg_app.actions.setup_checks import Check
from syft_bg_app.config.load import Config
from syft_bg_app.store.home import AppHome


def _mode_problem(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{path} can be read by other users (mode {mode:o})"
    return None


def mail_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.store.state import StateError

    try:
        return _mail_checks(home, config)
    except StateError:
        # The mail state lives in the checkpoint; its own line says what is wrong.
        why = "not checked: the checkpoint is damaged"
        return [Check(False, "mail", why, "see the checkpoint line", True)]


def _mail_checks(home: AppHome, config: Config) -> list[Check]:
    transport = config.get("notify.transport")
    if not config.step_enabled("notify"):
        return [Check(True, "mail", "the notify service is stopped; no email is sent")]
    if transport == "smtp":
        checks = _smtp_checks(home, config)
    elif transport == "gmail":
        checks = _gmail_checks(home, config)
    else:
        checks = [
            Check(
                True,
                "mail",
                f"outbox: emails are written to {home.outbox_dir} as .eml files, not sent "
                f"(set notify.transport to smtp or gmail to send them)",
            )
        ]
    if all(c.ok for c in checks):
        checks.extend(_delivery_problem(home, config))
    return checks


def _smtp_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.mail.errors import PermanentMailError
    from syft_bg_app.mail.smtp import read_password

    settings = config.get("notify.smtp")
    where = config.path or "config.yaml"
    if not settings.get("host"):
        return [
            Check(
                False,
                "mail (smtp)",
                "notify.smtp.host is not set",
                f"set notify.smtp.host (and port, username, password_file) in {where}",
            )
        ]
    host = f"{settings['host']} ({settings['security']})"
    try:
        password = read_password(settings, home.root)
    except PermanentMailError as exc:
        return [Check(False, "mail (smtp)", f"{host}: {exc.message}", exc.advice or None)]
    if password is None:
        return [Check(True, "mail (smtp)", f"{host}, no login")]
    env_name = settings.get("password_env")
    if env_name and os.environ.get(env_name) and not settings.get("password_file"):
        return [
            Check(
                False,
                "mail (smtp)",
                f"{host}: the password comes only from ${env_name}, which passes started by "
                f"cron or a systemd timer do not see",
                "put the password in a file only you can read (chmod 600 FILE) and set "
                "notify.smtp.password_file to it",
            )
        ]
    return [Check(True, "mail (smtp)", f"{host}, password file present and private (0600)")]


def _gmail_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.context import Context
    from syft_bg_app.mail.deliver import gmail_paths
    from syft_bg_app.mail.errors import PermanentMailError, TransientMailError
    from syft_bg_app.mail.gmail import GmailTransport, load_credentials, token_due_for_refresh
    from syft_bg_app.mail.retry import Deadline

    token, credentials = gmail_paths(Context.open(home, config))
    # The sign-in command of the notify area (init --gmail only signs in when a config exists).
    relogin = f"syft-bg init -e {config.do_email} --gmail {credentials}"
    if not credentials.exists():
        relogin = (
            f"download the OAuth client file (Desktop app) from the Google Cloud console to "
            f"{credentials}, then:\n{relogin}"
        )
    if not token.exists():
        return [Check(False, "Gmail token", f"no token at {token}", relogin)]
    bad_mode = _mode_problem(token)
    if bad_mode:
        return [Check(False, "Gmail token", bad_mode, f"chmod 600 {token}")]
    try:
        creds = load_credentials(token, config.do_email, credentials)
    except PermanentMailError as exc:
        return [Check(False, "Gmail token", exc.message, relogin)]
    if not creds.refresh_token:
        return [
            Check(
                False,
                "Gmail token",
                f"{token} has no refresh token, so it stops working within an hour",
                relogin,
            )
        ]
    if token_due_for_refresh(token):
        # Expired or about to: refresh it now, as the next pass would.
        transport = GmailTransport(
            token, credentials, config.do_email, config.get("notify.gmail.api_endpoint")
        )
        try:
            transport.refresh_if_needed(Deadline(20))
        except PermanentMailError as exc:
            return [Check(False, "Gmail token", exc.message, relogin)]
        except TransientMailError as exc:
            return [
                Check(
                    False,
                    "Gmail token",
                    f"could not be refreshed now: {exc.message}",
                    "check the network connection, then: syft-bg setup-status",
                )
            ]
        return [Check(True, "Gmail token", f"{token}: refreshed just now (private, 0600)")]
    return [Check(True, "Gmail token", f"{token}: valid, refreshable, private (0600)")]


def _delivery_problem(home: AppHome, config: Config) -> list[Check]:
    """A permanent failure the last pass recorded and nothing has changed since."""
    from syft_bg_app.context import Context
    from syft_bg_app.mail.deliver import fingerprint
    from syft_bg_app.mail.queue import peek

    ctx = Context.open(home, config)
    mail = peek(ctx.state)
    problem = mail.get("problem")
    queued = len(mail["queue"])
    if not problem or problem.get("kind") != "permanent":
        return []
    if problem.get("fingerprint") != fingerprint(ctx):
        return [
            Check(
                True,
                "mail delivery",
                f"failed at {problem['at']}, but the settings changed since; the next pass "
                f"tries the {queued} queued email(s) again",
            )
        ]
    return [
        Check(
            False,
            "mail delivery",
            f"failing since {problem['since']}: {problem['error']} ({queued} email(s) queued)",
            (problem.get("advice") or "fix the cause") + "\nthen: syft-bg mail retry",
        )
    ]


def reply_check(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.context import Context
    from syft_bg_app.mail.replies import setup_status
    from syft_bg_app.store.state import StateError

    try:
        found = setup_status(Context.open(home, config))
    except StateError:
        return []  # the checkpoint's own line says what is wrong
    return [Check(found[0], "email replies", found[1], found[2])] if found else []
