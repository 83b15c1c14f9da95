"""``syft-bg jobs rerun``: a done or failed job is approved again and runs in the next pass."""

from __future__ import annotations

from syft_bg_app.approval import audit, decisions, snapshot
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.errors import NotFoundError, SyftBgError
from syft_bg_app.execution.publish import clear_results


class RerunError(SyftBgError):
    exit_code = 1


def rerun(ctx: Context, ref: JobRef, fresh_snapshot: bool = False) -> None:
    """Set a done or failed job back to approved; the next pass runs it again."""
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None:
        raise NotFoundError(f"no job {ref.label}")
    if record["status"] not in ("done", "failed"):
        raise decisions.wrong_state(ref, record, "rerun", "only done or failed jobs can be rerun")
    try:
        if fresh_snapshot:
            hashes = decisions.snapshot_current_files(ctx, ref, record)
        else:
            _, hashes = snapshot.verified(ctx.home.snapshots_dir, ref)
    except snapshot.SnapshotError as exc:
        hint = "" if fresh_snapshot else "; review the job's files and add --fresh-snapshot"
        raise RerunError(f"cannot rerun: {exc}{hint}") from None
    clear_results(ctx.datasite.review_dir(ref))
    reruns = record.get("reruns", 0) + 1
    decisions.set_approved(
        ctx, ref, record, {"completed_at": None, "return_code": None}, reruns=reruns
    )
    ctx.log("execute").info("%s set to run again (rerun %d)", ref.label, reruns)
    audit.record(
        ctx.home.audit_log,
        ref.label,
        "rerun",
        "the data owner asked to run it again"
        + (" with its current files" if fresh_snapshot else ""),
        method="manual",
        hashes=hashes,
    )
