"""Deciding on peers: accept, reject, block, unblock; and who they are."""

from __future__ import annotations

from dataclasses import dataclass, field

from syft_bg_app.approval import decisions
from syft_bg_app.session import changing, open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views.peers import PeerView


@dataclass
class PeerChange:
    """What became of a data scientist. ``changed`` is False when nothing had to."""

    email: str
    status: str
    changed: bool = True
    notes: list[str] = field(default_factory=list)


def accept(home: AppHome, email: str) -> PeerChange:
    """Accept a peer: creates their inbox (write) and review (read) folders."""
    with changing(home, "peers accept") as ctx:
        key = decisions.peer_key(ctx, email)
        decisions.accept_peer(ctx, key, "manual", "accepted by the data owner")
    return PeerChange(key, "accepted")


def reject(home: AppHome, email: str, reason: str | None = None) -> PeerChange:
    """Reject a peer request; a new one counts after approve.peers.rerequest_after_days."""
    with changing(home, "peers reject") as ctx:
        key = decisions.peer_key(ctx, email)
        decisions.reject_peer(ctx, key, reason)
    return PeerChange(key, "rejected")


def block(home: AppHome, email: str, reason: str | None = None) -> PeerChange:
    """Ignore a data scientist for good (requests and jobs)."""
    with changing(home, "peers block") as ctx:
        key = decisions.peer_key(ctx, email)
        changed = decisions.block_peer(ctx, key, reason)
    return PeerChange(key, "blocked", changed)


def unblock(home: AppHome, email: str) -> PeerChange:
    """Undo ``block``: the data scientist is what they were before."""
    with changing(home, "peers unblock") as ctx:
        key = decisions.peer_key(ctx, email)
        status = decisions.unblock_peer(ctx, key)
    return PeerChange(key, status)


def known_peers(home: AppHome) -> list[PeerView]:
    """Peers and requesters by email, then those who only have jobs waiting."""
    ctx = open_view(home)
    held = ctx.state.data["held_jobs"]
    emails = sorted(ctx.state.data["peers"])
    emails += sorted(email for email in held if ctx.state.peer(email) is None)
    rows = []
    for email in emails:
        record = ctx.state.peer(email) or {"status": "unknown"}
        waiting = held.get(email) or {}
        rows.append(
            PeerView(
                email=email,
                status=record["status"],
                since=record.get("decided_at") or record.get("requested_at"),
                message=record.get("message"),
                problem=record.get("problem"),
                jobs_waiting=waiting.get("jobs", 0),
                waiting_reason=waiting.get("reason"),
                asked_again=bool(record.get("asked_again")),
            )
        )
    from syft_bg_app.sync.drive.owner import other_generation_notes

    for email, note in other_generation_notes(ctx).items():
        rows.append(PeerView(email=email, status="other-version", problem=note))
    return rows
