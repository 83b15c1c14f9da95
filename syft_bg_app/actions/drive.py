"""Signing in to Google Drive for ``sync.transport: drive``: an existing token
(``init -t``) or Google's consent for an installed app (``init --drive``).

A token is checked before anything is written: a file that is no authorized-user
token, lacks the Drive scope or signs in as someone other than the data owner is
refused (exit 2, nothing changed). Only a check that cannot reach Google lets the
token in unchecked, saying so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_bg_app.config.load import EMAIL_RE, load_config
from syft_bg_app.config.schema import find_key
from syft_bg_app.errors import UsageError
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import AppHome

# The fields google-auth needs to refresh an authorized-user token on its own.
TOKEN_FIELDS = ("refresh_token", "client_id", "client_secret")
TOKEN_ADVICE = (
    "give the authorized-user token a Google sign-in saved (syft-bg 0.3 keeps it at "
    "~/.syft-bg/token.json), or sign in here with: syft-bg init --drive CREDENTIALS_JSON"
)


@dataclass
class DriveSignIn:
    """A Drive token in place: where, whether it was checked, and what was set."""

    token_path: Path
    config_file: Path
    transport_set: bool
    # The account about.get named, or None when Google could not be reached.
    signed_in_as: str | None
    # Why it could not be checked now (the network), when it could not.
    unchecked: str | None = None
    # Another file the same token was saved to (Gmail's, when it carries both).
    also_saved: Path | None = None


@dataclass
class OwnerSettings:
    """Who the token must sign in as and where it goes, before or after init."""

    do_email: str
    token_path: Path
    api_endpoint: str | None


def owner_settings(home: AppHome, email: str | None, fresh: bool) -> OwnerSettings:
    """``email`` and the schema's defaults for a config init is about to write; else
    the existing config's."""
    if fresh:
        if not email:
            raise UsageError("init: -e/--email is required to sign in before config.yaml exists")
        email = email.strip()
        if not EMAIL_RE.fullmatch(email):
            raise UsageError(f"-e/--email: {email!r} is not an email address")
        token = find_key("drive.token").default
        return OwnerSettings(email.lower(), _resolve(token, home), None)
    config = load_config(home.config_file)
    return OwnerSettings(
        config.do_email,
        _resolve(config.get("drive.token"), home),
        config.get("drive.api_endpoint"),
    )


def _resolve(value: str, home: AppHome) -> Path:
    from syft_bg_app.mail.smtp import resolve_path

    return resolve_path(value, home.root)


def token_problem(info: Any) -> tuple[str, str] | None:
    """What keeps ``info`` from being a Drive token: ("format" or "scope", why), or None."""
    from syft_bg_app.sync.drive.service import DRIVE_SCOPE

    if not isinstance(info, dict):
        return "format", "it is not a token (not a JSON object)"
    if isinstance(info.get("installed"), dict) or isinstance(info.get("web"), dict):
        return "format", "it is an OAuth client file, not a token"
    kind = info.get("type", "authorized_user")
    if kind != "authorized_user":
        return "format", f"it is not an authorized-user token (its type is {kind!r})"
    missing = [name for name in TOKEN_FIELDS if not isinstance(info.get(name), str)]
    if missing:
        return "format", f"it is not an authorized-user token (no {', '.join(missing)})"
    scopes = info.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    if scopes and DRIVE_SCOPE not in scopes:
        return "scope", f"it does not carry the Drive scope ({DRIVE_SCOPE})"
    return None


def read_token_file(source: Path) -> dict[str, Any]:
    """The authorized-user token at ``source``; anything else is refused with what to do.

    Its content is never shown: it holds a refresh token.
    """
    source = source.expanduser()
    try:
        info = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"-t/--token-path: cannot read {source} ({exc.__class__.__name__}); {TOKEN_ADVICE}"
        ) from None
    except ValueError:
        raise UsageError(f"-t/--token-path: {source} is not JSON; {TOKEN_ADVICE}") from None
    problem = token_problem(info)
    if problem is None:
        return info
    kind, why = problem
    if why.startswith("it is an OAuth client"):
        advice = f"sign in with it: syft-bg init --drive {source}"
    elif kind == "scope":
        advice = "sign in again asking for it: syft-bg init --drive CREDENTIALS_JSON"
    else:
        advice = TOKEN_ADVICE
    raise UsageError(f"-t/--token-path: {source}: {why}; {advice} (nothing was changed)")


class StagedToken:
    """A private copy of a token, checked against Drive before it replaces anything."""

    def __init__(self, info: dict[str, Any]) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="syft-bg-token-"))
        self.path = self._folder / "token.json"
        atomic_write_text(self.path, json.dumps(info), mode=0o600)
        self.signed_in_as: str | None = None
        self.unchecked: str | None = None

    def check(self, settings: OwnerSettings) -> None:
        """Ask Drive who this is; refuse another account or a refused sign-in."""
        import httplib2

        from syft_bg_app.sync.drive.service import Drive, DriveAuthError, DriveError

        drive = Drive(self.path, settings.do_email, settings.api_endpoint)
        try:
            self.signed_in_as = drive.about_email()
        except DriveAuthError as exc:
            raise UsageError(f"the Drive token was refused (nothing was changed): {exc}") from None
        except (DriveError, httplib2.HttpLib2Error, OSError) as exc:
            self.unchecked = str(exc) or exc.__class__.__name__
            return
        if self.signed_in_as.lower() != settings.do_email.lower():
            raise UsageError(
                f"the Drive token signs in as {self.signed_in_as}, not as the data owner "
                f"{settings.do_email}; sign in to Google as {settings.do_email} and save "
                "that token (nothing was changed)"
            )

    def text(self) -> str:
        # The check may have refreshed it: keep the newest.
        return self.path.read_text(encoding="utf-8")

    def discard(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def stage_token(source: Path, settings: OwnerSettings) -> StagedToken:
    """Read and check the token at ``source`` without writing anything of the app."""
    staged = StagedToken(read_token_file(source))
    try:
        staged.check(settings)
    except BaseException:
        staged.discard()
        raise
    return staged


def install_token(home: AppHome, staged: StagedToken, settings: OwnerSettings) -> DriveSignIn:
    """Save the checked token where ``drive.token`` points (0600) and sync over Drive."""
    atomic_write_text(settings.token_path, staged.text(), mode=0o600)
    transport_set = _use_drive(home)
    return DriveSignIn(
        settings.token_path,
        home.config_file,
        transport_set,
        staged.signed_in_as,
        staged.unchecked,
    )


def _use_drive(home: AppHome) -> bool:
    """Set sync.transport: drive, changing nothing else of config.yaml."""
    from syft_bg_app.config.editor import set_values
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="sign in to Google Drive"):
        written, _ = set_values(home.config_file, {"sync.transport": "drive"})
    return written


# -- the consent ---------------------------------------------------------------------------


def consent_scopes(home: AppHome, with_gmail: bool) -> list[str]:
    """Drive's scope, and Gmail's when Gmail sends the mail too: one token for both."""
    from syft_bg_app.mail.gmail import gmail_scopes
    from syft_bg_app.sync.drive.service import DRIVE_SCOPE

    config = load_config(home.config_file)
    if not (with_gmail or config.get("notify.transport") == "gmail"):
        return [DRIVE_SCOPE]
    return [DRIVE_SCOPE, *gmail_scopes(config.get("approve.email_replies.enabled"))]


def sign_in_with_consent(
    home: AppHome, credentials: Path, with_gmail: bool = False, port: int = 0
) -> DriveSignIn:
    """Run Google's consent (a URL to open anywhere; the redirect comes back to
    127.0.0.1), save the token where ``drive.token`` points and sync over Drive.

    When Gmail sends the mail (or ``with_gmail``) the token carries Gmail's scopes
    too and is saved where ``notify.gmail.token`` points as well.
    """
    from syft_bg_app.actions.mail import check_gmail_client
    from syft_bg_app.mail.deliver import gmail_paths
    from syft_bg_app.mail.gmail import run_consent
    from syft_bg_app.session import open_view

    source = credentials.expanduser()
    check_gmail_client(source, option="--drive")
    settings = owner_settings(home, None, fresh=False)
    scopes = consent_scopes(home, with_gmail)
    folder = Path(tempfile.mkdtemp(prefix="syft-bg-token-"))
    try:
        consented = folder / "token.json"
        try:
            run_consent(
                source,
                consented,
                scopes,
                allow="read and write your Google Drive files"
                + (" and send email as you" if len(scopes) > 1 else ""),
                service="Google Drive",
                port=port,
            )
        except Exception as exc:
            raise UsageError(f"the Google Drive sign-in did not finish: {exc}") from None
        info = json.loads(consented.read_text(encoding="utf-8"))
        staged = StagedToken(info)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        staged.check(settings)
        result = install_token(home, staged, settings)
        if len(scopes) > 1:
            gmail_token, _ = gmail_paths(open_view(home))
            if gmail_token.resolve() != settings.token_path.resolve():
                atomic_write_text(gmail_token, staged.text(), mode=0o600)
                result.also_saved = gmail_token
    finally:
        staged.discard()
    return result
