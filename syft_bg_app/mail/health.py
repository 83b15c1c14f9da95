"""What ``status`` says about mail: the transport, the queue, and what to do."""

from __future__ import annotations

from syft_bg_app.context import Context
from syft_bg_app.mail.queue import peek
from syft_bg_app.views.render import terminal_text


def status_lines(ctx: Context) -> list[str]:
    mail = peek(ctx.state)
    transport = ctx.config.get("notify.transport")
    queue = mail["queue"]
    sent = mail["sent_total"]
    last = f", last at {mail['last_sent_at']}" if mail["last_sent_at"] else ""
    lines = [f"mail: via {_describe(ctx, transport)}; {len(queue)} queued, {sent} sent{last}"]
    problem = mail.get("problem")
    if problem:
        if problem["kind"] == "permanent":
            lines.append(
                f"  MAIL PROBLEM since {problem['since']}: "
                f"{terminal_text(_sentence(problem['error']))}"
            )
            if problem.get("advice"):
                lines.append(f"  What to do: {_sentence(problem['advice'])}")
            lines.append(
                f"  {len(queue)} emails are kept and sent once this is fixed "
                f"(retried automatically after a change to the config or the token or "
                f"password file, or now with: syft-bg mail retry)."
            )
        else:
            lines.append(
                f"  mail could not be delivered at {problem['at']}: "
                f"{terminal_text(_sentence(problem['error']))} This looks temporary; each pass "
                f"tries again."
            )
    held = [
        e
        for e in queue
        if (e.get("error_kind") == "permanent" and e.get("not_before"))
        or e.get("error_kind") == "set_aside"
    ]
    for entry in held[:5]:
        word = "set aside" if entry.get("error_kind") == "set_aside" else "held"
        advice = f" {_sentence(entry['advice'])}" if entry.get("advice") else ""
        lines.append(
            terminal_text(
                f"  {word}: {entry['kind']} to {entry['to']}: {_sentence(entry['error'])}{advice}"
            )
        )
    if len(held) > 5:
        lines.append(f"  ... and {len(held) - 5} more held (syft-bg mail list)")
    set_aside = mail.get("set_aside") or []
    if set_aside:
        from syft_bg_app.mail.enqueue import describe_set_aside

        lines.append(
            f"  {len(set_aside)} events set aside (their emails cannot be composed; tried "
            f"again when the templates or notify settings change, or with: syft-bg mail retry):"
        )
        lines.extend(f"    {describe_set_aside(record)}" for record in set_aside[:5])
        if len(set_aside) > 5:
            lines.append(f"    ... and {len(set_aside) - 5} more")
    if queue and not problem and not held:
        lines.append(f"  oldest queued email from {queue[0]['created_at']} (syft-bg mail list)")
    if transport == "outbox" and sent:
        lines.append(f"  emails are written to {ctx.home.outbox_dir}, not sent (notify.transport)")
    return lines


def _describe(ctx: Context, transport: str) -> str:
    if transport == "smtp":
        smtp = ctx.config.get("notify.smtp")
        host = smtp.get("host") or "(no notify.smtp.host)"
        return f"smtp {host} ({smtp['security']})"
    if transport == "gmail":
        from syft_bg_app.mail.deliver import gmail_paths

        token, _ = gmail_paths(ctx)
        return f"gmail (token {token}{'' if token.exists() else ', MISSING'})"
    return f"outbox {ctx.home.outbox_dir}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", ")")) and text.rstrip(")").endswith(".") else text + "."
