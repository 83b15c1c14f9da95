"""setup-status checks of the Google Drive sign-in (``sync.transport: drive``): the
token file, its scopes, and that Drive's about.get names the data owner."""

from __future__ import annotations

import json
import stat

from syft_bg_app.actions.setup_checks import Check
from syft_bg_app.config.load import Config
from syft_bg_app.store.home import AppHome

SIGN_IN_FIX = (
    "sign in to Google as {email}, then either give the token it saved:\n"
    "syft-bg init -t TOKEN_JSON\n"
    "or sign in here with the OAuth client file (Desktop app) from the Google Cloud console:\n"
    "syft-bg init --drive CREDENTIALS_JSON"
)


def drive_checks(home: AppHome, config: Config) -> list[Check]:
    """One line for the token file (present, private, a token with the Drive scope) and,
    when it is, one for what Drive says about it."""
    from syft_bg_app.actions.drive import token_problem
    from syft_bg_app.mail.smtp import resolve_path

    token = resolve_path(config.get("drive.token"), home.root)
    fix = SIGN_IN_FIX.format(email=config.do_email)
    try:
        mode = stat.S_IMODE(token.stat().st_mode)
        info = json.loads(token.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [Check(False, "Drive token", f"no token at {token}", fix)]
    except (OSError, ValueError) as exc:
        why = f"{token} cannot be read as JSON ({exc.__class__.__name__})"
        return [Check(False, "Drive token", why, fix)]
    if mode & 0o077:
        why = f"{token} can be read by other users (mode {mode:o})"
        return [Check(False, "Drive token", why, f"chmod 600 {token}")]
    problem = token_problem(info)
    if problem is not None:
        kind, why = problem
        label = "Drive scope" if kind == "scope" else "Drive token"
        return [Check(False, label, f"{token}: {why}", fix)]
    scopes = info.get("scopes")
    granted = "with the Drive scope" if scopes else "(its scopes are not recorded in it)"
    found = Check(True, "Drive token", f"{token}: private (0600), {granted}")
    return [found, _sign_in(token, config)]


def _sign_in(token, config: Config) -> Check:
    import httplib2

    from syft_bg_app.sync.drive.service import Drive, DriveAuthError, DriveError

    do_email = config.do_email
    fix = SIGN_IN_FIX.format(email=do_email)
    try:
        signed_in = Drive(token, do_email, config.get("drive.api_endpoint")).about_email()
    except DriveAuthError as exc:
        return Check(False, "Drive sign-in", str(exc), fix)
    except (DriveError, httplib2.HttpLib2Error, OSError) as exc:
        why = f"could not ask Google Drive now: {exc or exc.__class__.__name__}"
        return Check(False, "Drive sign-in", why, "check the network, then: syft-bg setup-status")
    if signed_in.lower() != do_email.lower():
        why = f"the token signs in as {signed_in}, not as do_email {do_email}"
        return Check(False, "Drive sign-in", why, fix)
    return Check(True, "Drive sign-in", f"Google Drive names {signed_in}, as do_email says")
