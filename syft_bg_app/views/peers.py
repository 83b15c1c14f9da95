"""A data scientist as the data owner sees them: one view model, rendered to text
(``peers list``), HTML (notebooks) and JSON-ready dicts (``bg.peers()``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syft_bg_app.views.render import badge_html, table_html, table_text

PEER_HEADERS = ("peer", "status", "since", "")


@dataclass
class PeerView:
    """A peer, a requester, or someone with jobs waiting (status ``unknown``)."""

    email: str
    status: str
    since: str | None = None
    message: str | None = None
    problem: str | None = None
    jobs_waiting: int = 0
    waiting_reason: str | None = None
    asked_again: bool = False

    @property
    def note(self) -> str:
        """What else there is to know, in one line (the request's words are the
        requester's: renderers escape them)."""
        notes = [self.problem or self.message or ""]
        if self.waiting_reason is not None:
            notes.append(f"[{self.jobs_waiting} job(s) {self.waiting_reason}]")
        if self.asked_again:
            notes.append("[asked again; considered after approve.peers.rerequest_after_days]")
        return " ".join(n for n in notes if n)

    def row(self) -> list[str]:
        return [self.email, self.status, self.since or "-", self.note]


def peers_text(peers: Sequence[PeerView]) -> str:
    if not peers:
        return "no peers or peer requests yet"
    return table_text(PEER_HEADERS, [peer.row() for peer in peers])


def peers_html(peers: Sequence[PeerView]) -> str:
    rows = []
    for peer in peers:
        row = peer.row()
        row[1] = badge_html(peer.status)
        rows.append(row)
    return table_html(f"Peers: {len(peers)}", ("peer", "status", "since", "note"), rows, (1,))


def peers_json(peers: Sequence[PeerView]) -> dict[str, dict[str, Any]]:
    """``{email: {"status", "since", "message", "problem", "jobs_waiting"}}``."""
    return {
        peer.email: {
            "status": peer.status,
            "since": peer.since,
            "message": peer.message,
            "problem": peer.problem,
            "jobs_waiting": peer.jobs_waiting,
        }
        for peer in sorted(peers, key=lambda peer: peer.email)
    }
