"""Deciding on jobs: approve, reject, rerun."""

from __future__ import annotations

from dataclasses import dataclass, field

from syft_bg_app.approval import decisions
from syft_bg_app.approval.job_needs import job_warnings
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.session import changing
from syft_bg_app.store.home import AppHome
from syft_bg_app.views import jobs as job_views


@dataclass
class JobDecision:
    """A job whose state a person changed, and what they should know about it."""

    ref: JobRef
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def approve(home: AppHome, spec: str, reason: str | None = None) -> JobDecision:
    """Approve a pending job; the next pass runs the snapshot taken now."""
    with changing(home, "jobs approve") as ctx:
        ref = job_views.resolve(ctx, spec)
        decisions.approve_job(ctx, ref, "manual", reason=reason)
        warnings = job_warnings(ctx, ref)
    return JobDecision(ref, reason, warnings)


def reject(home: AppHome, spec: str, reason: str | None = None) -> JobDecision:
    """Reject a job; the reason, if any, is sent to the data scientist."""
    with changing(home, "jobs reject") as ctx:
        ref = job_views.resolve(ctx, spec)
        decisions.reject_job(ctx, ref, reason)
    return JobDecision(ref, reason)


def rerun(home: AppHome, spec: str, fresh_snapshot: bool = False) -> JobDecision:
    """Set a done or failed job back to approved; the next pass runs it again."""
    from syft_bg_app.execution.rerun import rerun as rerun_job

    with changing(home, "jobs rerun") as ctx:
        ref = job_views.resolve(ctx, spec)
        rerun_job(ctx, ref, fresh_snapshot=fresh_snapshot)
    return JobDecision(ref)
