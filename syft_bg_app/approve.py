"""Approve step: accept peers and approve jobs that match the data owner's rules."""

from __future__ import annotations

from .context import Context
from .decisions import accept_peer


def run(ctx: Context) -> None:
    for email, record in sorted(ctx.state.data["peers"].items()):
        if record["status"] != "requested":
            continue
        why = peer_rule(ctx, email)
        if why:
            accept_peer(ctx, email, "auto", why)


def peer_rule(ctx: Context, email: str) -> str | None:
    """Why ``email`` is accepted automatically, or None."""
    approved = ctx.config.get("approve.peers")
    local, at, domain = email.strip().lower().rpartition("@")
    if email.lower() in approved["approved_emails"]:
        return "email listed in approve.peers.approved_emails"
    if at and local and domain in approved["approved_domains"]:
        return f"domain {domain} listed in approve.peers.approved_domains"
    return None
