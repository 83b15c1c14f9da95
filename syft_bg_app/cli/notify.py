"""Commands of the notify area: ``init --gmail`` and ``mail list|retry|test``.

Only argparse is imported at module level; everything else inside the
command functions, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add this area's commands. ``commands`` holds the init parser and the
    jobs/peers sub-command groups, for options and actions that belong there."""
    init = commands["init"]
    init.add_argument(
        "--gmail",
        metavar="CREDENTIALS_JSON",
        help="sign in to Gmail with this OAuth client file (Desktop app, from the Google "
        "Cloud console) and send notifications through Gmail; with an existing "
        "config.yaml only the sign-in is done",
    )
    init.add_argument(
        "--gmail-port",
        type=int,
        default=0,
        metavar="PORT",
        help="local port for Google's redirect during the sign-in (default: a free one)",
    )
    base_init = init.get_default("handler")
    init.set_defaults(handler=lambda args: cmd_init_gmail(args, base_init))

    p = add(
        subparsers,
        "mail",
        None,
        "Show, retry and test email delivery.",
        "syft-bg mail list",
    )
    mail_sub = p.add_subparsers(title="mail commands", metavar="ACTION", required=True)
    add(
        mail_sub,
        "list",
        cmd_mail_list,
        "List the emails waiting to be sent and any delivery problem.",
        "syft-bg mail list",
    )
    add(
        mail_sub,
        "retry",
        cmd_mail_retry,
        "Forget past delivery failures and try to send the queued emails now.",
        "syft-bg mail retry",
    )
    q = add(
        mail_sub,
        "test",
        cmd_mail_test,
        "Send a test email now through the configured transport.",
        "syft-bg mail test -t you@example.org",
    )
    q.add_argument("-t", "--to", help="recipient (default: do_email)")


def _home(args: argparse.Namespace):
    from syft_bg_app.store.home import AppHome

    return AppHome.resolve(args.home)


# -- init --gmail --------------------------------------------------------------------


def cmd_init_gmail(args: argparse.Namespace, base_init: Handler) -> int:
    import json
    import os
    import shutil
    from pathlib import Path

    from syft_bg_app.config.load import load_config
    from syft_bg_app.errors import UsageError
    from syft_bg_app.invocation import command
    from syft_bg_app.mail.deliver import gmail_paths
    from syft_bg_app.mail.gmail import run_consent
    from syft_bg_app.session import open_view

    if not args.gmail:
        return base_init(args)
    source = Path(args.gmail).expanduser()
    try:
        client = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--gmail: cannot read {source} as JSON ({exc}); download the OAuth client "
            f"(type Desktop app) from Google Cloud console > APIs & Services > Credentials"
        ) from None
    if not isinstance(client, dict) or not any(
        isinstance(client.get(kind), dict) and client[kind].get("client_id")
        for kind in ("installed", "web")
    ):
        raise UsageError(
            f"--gmail: {source} is not an OAuth client file (it has no 'installed' client); "
            f"create an OAuth client of type Desktop app and download its JSON"
        )
    home = _home(args)
    if not home.config_file.exists() or args.force:
        code = base_init(args)
        if code:
            return code
    ctx = open_view(home)
    token_path, credentials_path = gmail_paths(ctx)
    credentials_path.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != credentials_path.resolve():
        shutil.copyfile(source, credentials_path)
    os.chmod(credentials_path, 0o600)
    try:
        run_consent(
            credentials_path,
            token_path,
            port=args.gmail_port,
            read=ctx.config.get("approve.email_replies.enabled"),
        )
    except Exception as exc:
        raise UsageError(f"the Gmail sign-in did not finish: {exc}") from None
    print(f"saved the Gmail token to {token_path} (readable only by you)")
    if load_config(home.config_file).get("notify.transport") != "gmail":
        from syft_bg_app.config.editor import set_values

        set_values(home.config_file, {"notify.transport": "gmail"})
        print(f"set notify.transport: gmail in {home.config_file}")
    print(f"check it with: {command('mail test', home)}")
    if not ctx.config.get("approve.email_replies.enabled"):
        print(
            "to approve or deny jobs by replying to their email: set "
            "approve.email_replies.enabled: true, then sign in again with this command"
        )
    return 0


def _print_queue(ctx) -> None:
    from syft_bg_app.mail.health import status_lines
    from syft_bg_app.mail.queue import peek

    for line in status_lines(ctx):
        print(line)
    from syft_bg_app.views.render import terminal_text

    queue = peek(ctx.state)["queue"]
    if not queue:
        return
    print()
    print("CREATED               KIND            TO                             TRIES  STATE")
    for entry in queue:
        state = entry.get("error") or entry.get("status", "queued")
        if entry.get("status") == "set aside":
            state = f"set aside: {state}"
        print(
            f"{terminal_text(entry['created_at'][:19]):<21} {terminal_text(entry['kind']):<15} "
            f"{terminal_text(entry['to']):<30} {entry.get('attempts', 0):<6} "
            f"{terminal_text(state)}"
        )


def cmd_mail_list(args: argparse.Namespace) -> int:
    from syft_bg_app.session import open_view

    _print_queue(open_view(_home(args)))
    return 0


def _deliver_now(ctx) -> None:
    from syft_bg_app.mail.deliver import deliver
    from syft_bg_app.mail.retry import Deadline

    deliver(ctx, Deadline(ctx.config.get("notify.retry_budget")))


def cmd_mail_retry(args: argparse.Namespace) -> int:
    from syft_bg_app.mail.enqueue import retry_set_aside
    from syft_bg_app.mail.queue import mail_state
    from syft_bg_app.session import changing

    with changing(_home(args), "mail retry") as ctx:
        mail = mail_state(ctx.state)
        mail["problem"] = None
        for entry in mail["queue"]:
            for key in ("not_before", "error", "error_kind", "advice"):
                entry.pop(key, None)
            if entry.get("status") == "set aside":
                entry["status"] = "queued"
        events_back = retry_set_aside(ctx, force=True)
        waiting = len(mail["queue"])
        _deliver_now(ctx)
        sent = ctx.counts["sent"]
    print(f"sent {sent} of {waiting} queued emails")
    if events_back:
        print(f"{events_back} set-aside events are composed again by the next pass")
    _print_queue(ctx)
    return 0 if sent == waiting else 1


def cmd_mail_test(args: argparse.Namespace) -> int:
    from syft_bg_app.clock import iso
    from syft_bg_app.config.load import EMAIL_RE
    from syft_bg_app.errors import UsageError
    from syft_bg_app.mail.compose import test_draft
    from syft_bg_app.mail.enqueue import queue_draft
    from syft_bg_app.mail.queue import mail_state
    from syft_bg_app.session import changing

    with changing(_home(args), "mail test") as ctx:
        to = (args.to or ctx.config.do_email).strip()
        if not EMAIL_RE.fullmatch(to):
            raise UsageError(f"-t/--to: {to!r} is not an email address")
        transport = ctx.config.get("notify.transport")
        entry = queue_draft(ctx, test_draft(ctx, to, iso(), transport))
        ctx.state.save()
        _deliver_now(ctx)
        mail = mail_state(ctx.state)
        delivered = all(e["id"] != entry["id"] for e in mail["queue"])
        if not delivered:
            # A test that failed is not worth sending later: drop it.
            _drop(ctx, mail, entry)
    if delivered:
        where = f" into {ctx.home.outbox_dir}" if transport == "outbox" else ""
        print(f"sent a test email to {to} via {transport}{where}")
        return 0
    print(f"the test email to {to} could not be sent (it is not kept):")
    _print_queue(ctx)
    return 1


def _drop(ctx, mail, entry) -> None:
    from syft_bg_app.mail.queue import message_file

    mail["queue"] = [e for e in mail["queue"] if e["id"] != entry["id"]]
    message_file(ctx.home, entry["id"]).unlink(missing_ok=True)
