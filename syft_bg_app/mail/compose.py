"""From events to drafts: who hears about what, with which template and variables.

The table of the design, as code:

============== ============================ ==========================
event          data owner (DO)              data scientist (DS)
============== ============================ ==========================
peer_requested peer_requested_do            peer_requested_ds
peer_accepted  -                            peer_accepted_ds
job_submitted  job_submitted_do (the code)  job_submitted_ds
job_approved   job_approved_do (threaded)   job_approved_ds
job_rejected   job_rejected_do (threaded)   job_rejected_ds
job_finished   job_finished_do (threaded)   job_finished_ds
sandbox_...    sandbox_unavailable_do       -
reply_answer   reply_answer_do (threaded)   -
peer_other_... peer_other_generation_do     -
============== ============================ ==========================

(``sandbox_unavailable``: bubblewrap stopped working and approved jobs wait;
``reply_answer``: what became of the owner's email reply, when it decided nothing;
``peer_other_generation``: a data scientist on Google Drive runs the other
syft-client generation, so the app does not serve them: once per version.)

Every email about one job to one person forms a thread with a fixed subject.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from syft_bg_app.approval.job_needs import job_warnings
from syft_bg_app.context import Context
from syft_bg_app.datasite import datasets as dataset_store
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.errors import UsageError
from syft_bg_app.invocation import command, prefix
from syft_bg_app.mail.code import file_note, kib, read_submission
from syft_bg_app.store.fsutil import last_lines, untrusted_text

DIGEST_ITEMS_SHOWN = 200
STDERR_TAIL_CAP = 8192
STDERR_TAIL_LINES = 60
# Caps for text that others wrote (config.yaml fields, reasons, peer messages).
METADATA_TEXT_CAP = 100
REASON_CAP = 4000
MESSAGE_CAP = 2000

JOB_EVENTS = ("job_submitted", "job_approved", "job_rejected", "job_finished")
PEER_EVENTS = ("peer_requested", "peer_accepted")
TERMINAL_EVENTS = ("job_rejected", "job_finished", "peer_accepted")


@dataclass
class Draft:
    """One email to be queued; ``key`` is its identity, sent at most once ever."""

    key: str
    kind: str
    role: str
    to: str
    template: str
    subject: str
    summary: str
    variables: dict[str, Any] = field(default_factory=dict)
    thread: str | None = None
    terminal: bool = False
    # The job a "job submitted" email to the owner is about (replies decide it).
    job_ref: JobRef | None = None


def common_variables(ctx: Context) -> dict[str, Any]:
    # Commands in emails are pasted far from the shell that ran the pass: they
    # name the program by a path that works anywhere, and this app home.
    return {"do_email": ctx.config.do_email, "app_command": prefix(ctx.home)}


def drafts_for_event(ctx: Context, event: dict[str, Any]) -> list[Draft]:
    kind = event["kind"]
    if kind in JOB_EVENTS:
        return _job_drafts(ctx, event)
    if kind in PEER_EVENTS:
        return _peer_drafts(ctx, event)
    if kind == "sandbox_unavailable":
        return [sandbox_draft(ctx, event)]
    if kind == "reply_answer":
        return [reply_answer_draft(ctx, event)]
    if kind == "peer_other_generation":
        return [other_generation_draft(ctx, event)]
    return []


def sandbox_draft(ctx: Context, event: dict[str, Any]) -> Draft:
    """One email to the data owner when jobs wait for want of a working sandbox."""
    do = ctx.config.do_email
    since = str(event.get("since") or event.get("at") or "")
    return Draft(
        key=f"{do}|sandbox_unavailable|{since}",
        kind="sandbox_unavailable",
        role="do",
        to=do,
        template="sandbox_unavailable_do",
        subject="[syft-bg] approved jobs wait: the sandbox does not work",
        summary="approved jobs wait: bubblewrap does not work",
        variables={
            **common_variables(ctx),
            "since": since,
            "detail": str(event.get("detail") or ""),
            "fix": str(event.get("fix") or ""),
            "waiting": event.get("waiting") or 0,
            "setting": str(event.get("setting") or "auto"),
        },
    )


# The library each syft-client generation is published as.
GENERATION_LIBRARIES = {"0.1": "syft-client", "0.10": "syft"}


def other_generation_draft(ctx: Context, event: dict[str, Any]) -> Draft:
    """One email to the data owner per data scientist and generation that would serve
    them (or none), ever."""
    do = ctx.config.do_email
    ds, version = str(event["ds_email"]), str(event["version"])
    wanted = str(event.get("wanted") or "")
    if wanted not in GENERATION_LIBRARIES:
        wanted = ""  # a version no generation of the app speaks
    generation = str(event.get("generation") or ctx.config.get("drive.generation"))
    return Draft(
        # Per generation that would serve them, not per version: the version is a folder
        # name the data scientist can change every pass.
        key=f"{do}|peer_other_generation|{ds}|{wanted or 'none'}",
        kind="peer_other_generation",
        role="do",
        to=do,
        template="peer_other_generation_do",
        subject=f"[syft-bg] {ds} runs syft-client {version}, which this app does not serve",
        summary=f"{ds} runs syft-client {version}, not served with drive.generation {generation}",
        variables={
            **common_variables(ctx),
            "ds_email": ds,
            "version": version,
            "library": GENERATION_LIBRARIES.get(wanted, "a syft client"),
            "generation": generation,
            "current_library": GENERATION_LIBRARIES.get(generation, "syft-client"),
            "wanted": wanted,
            "peers_served": int(event.get("peers_served") or 0),
            "config_file": str(ctx.home.config_file),
        },
    )


# -- jobs ----------------------------------------------------------------------------


def job_subject(role: str, ds_email: str, job: str, do_email: str) -> str:
    if role == "do":
        return f"[syft-bg] job {job} from {ds_email}"
    return f"[syft-bg] your job {job} on {do_email}"


def _job_ref(ctx: Context, event: dict[str, Any]) -> JobRef:
    ds_email, job = event["ds_email"], event["job"]
    protocol = event.get("protocol")
    if protocol is None:
        # Queued before events named their protocol: the v1 job, else the v0 one.
        only_v0 = ctx.state.job(ds_email, job, "0") and not ctx.state.job(ds_email, job, "1")
        protocol = "0" if only_v0 else "1"
    return JobRef(ds_email, job, str(protocol))


def _job_drafts(ctx: Context, event: dict[str, Any]) -> list[Draft]:
    kind, ds = event["kind"], event["ds_email"]
    do = ctx.config.do_email
    ref = _job_ref(ctx, event)
    # A v0 and a v1 job of the same name are two jobs: "v0/<name>" tells them apart.
    job = ref.display_name
    label = ref.label
    # Job names are chosen by the data scientist (syft-job's default has spaces):
    # every suggested command quotes the label so pasting it runs only syft-bg.
    arg = shlex.quote(label)
    base = {
        **common_variables(ctx),
        "ds_email": ds,
        "job": job,
        "job_label": label,
        "event_at": event.get("at"),
        "show_command": command(f"jobs show {arg}", ctx.home),
    }
    do_vars = dict(base)
    ds_vars = dict(base)
    if kind == "job_submitted":
        do_vars.update(_submission_variables(ctx, ref))
        do_vars["approve_command"] = command(f"jobs approve {arg}", ctx.home)
        do_vars["reject_command"] = command(f'jobs reject {arg} -r "REASON"', ctx.home)
        do_vars["reply_approval"] = _reply_approval(ctx, do_vars["code"])
        summary = f"{label}: new job submitted, waiting for your review"
        ds_summary = f"your job {job} was received by {do}"
    elif kind == "job_approved":
        method = event.get("method") or "manual"
        rule = event.get("rule")
        by = event.get("by")
        for variables in (do_vars, ds_vars):
            variables.update(method=method, rule=rule, by=by)
        do_vars["sandbox_warning"] = _unisolated_warning(ctx)
        do_vars["warnings"] = job_warnings(ctx, ref)
        how = (
            f"automatically (rule {rule})"
            if rule
            else ("automatically" if method == "auto" else "manually")
        )
        summary = f"{label}: approved {how}"
        ds_summary = f"your job {job} was approved by {do}"
    elif kind == "job_rejected":
        reason = untrusted_text(event.get("reason"), REASON_CAP, multiline=True)
        reason = reason or "no reason given"
        do_vars["reason"] = ds_vars["reason"] = reason
        do_vars["by"] = event.get("by")
        summary = f"{label}: rejected ({reason})"
        ds_summary = f"your job {job} was rejected by {do}: {reason}"
    else:
        finished = _finished_variables(ctx, ref, event)
        do_vars.update(finished)
        # The stderr tail and the DO's local paths are for the DO only.
        ds_vars.update(
            {k: v for k, v in finished.items() if k not in ("stderr_tail", "review_dir")}
        )
        ds_vars["results_path"] = _datasite_relative(ctx, ctx.datasite.review_dir(ref))
        ds_vars["share_outputs"] = ctx.config.get("execute.share_outputs")
        ds_vars["share_logs"] = ctx.config.get("execute.share_logs")
        word = "finished" if finished["ok"] else "failed"
        summary = f"{label}: {word} (exit code {finished['return_code']})"
        ds_summary = f"your job {job} {word} on {do}"
    entity = f"job:{label}"
    return [
        Draft(
            key=f"{do}|{kind}|{entity}|{role}|{to}",
            kind=kind,
            role=role,
            to=to,
            template=f"{kind}_{role}",
            subject=job_subject(role, ds, job, do),
            summary=text,
            variables=variables,
            thread=f"{entity}|{role}",
            terminal=kind in TERMINAL_EVENTS,
            job_ref=ref if kind == "job_submitted" and role == "do" else None,
        )
        for role, to, text, variables in (
            ("do", do, summary, do_vars),
            ("ds", ds, ds_summary, ds_vars),
        )
    ]


def _reply_approval(ctx: Context, code: dict[str, Any]) -> str | None:
    """What the owner's email says about deciding by reply: None (replies are not
    read), "yes" (every file shown in full) or "no" (a reply cannot approve)."""
    from syft_bg_app.mail.replies import enabled, shown_hashes

    if not enabled(ctx):
        return None
    return "yes" if shown_hashes(code) is not None else "no"


def reply_answer_draft(ctx: Context, event: dict[str, Any]) -> Draft:
    """The app's answer to the owner's email reply, in the job's thread."""
    do = ctx.config.do_email
    ref = _job_ref(ctx, event)
    entity = f"job:{ref.label}"
    return Draft(
        key=f"{do}|reply_answer|{entity}|{event.get('reply')}",
        kind="reply_answer",
        role="do",
        to=do,
        template="reply_answer_do",
        subject=job_subject("do", ref.ds_email, ref.display_name, do),
        summary=f"{ref.label}: your email reply",
        variables={
            **common_variables(ctx),
            "ds_email": ref.ds_email,
            "job": ref.display_name,
            "job_label": ref.label,
            "text": untrusted_text(event.get("text"), REASON_CAP, multiline=True),
            "show_command": command(f"jobs show {shlex.quote(ref.label)}", ctx.home),
        },
        thread=f"{entity}|do",
    )


def _unisolated_warning(ctx: Context) -> str | None:
    """For the data owner: what a job run without bwrap can read (None under bwrap)."""
    if ctx.config.get("execute.sandbox") != "none":
        return None
    from syft_bg_app.execution.sandbox import none_warning

    return none_warning()


def _datasite_relative(ctx: Context, path: Path) -> str:
    try:
        return path.relative_to(ctx.datasite.path).as_posix()
    except ValueError:
        return str(path)


def _human_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _finished_variables(ctx: Context, ref: JobRef, event: dict[str, Any]) -> dict[str, Any]:
    status = event.get("status") or "done"
    duration = event.get("duration_seconds")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        duration = None
    tail = event.get("stderr_tail")
    if isinstance(tail, str):
        # Thousands of blank lines would push a forged line far below the real ones.
        tail = last_lines(tail[-STDERR_TAIL_CAP:].rstrip("\n"), STDERR_TAIL_LINES) or None
    else:
        tail = None
    return {
        "status": status,
        "ok": status == "done",
        "return_code": event.get("return_code"),
        "duration": _human_duration(duration),
        "stderr_tail": tail,
        "failure_reason": (
            untrusted_text(event.get("reason"), REASON_CAP, multiline=True)
            if status != "done"
            else None
        ),
        "review_dir": str(ctx.datasite.review_dir(ref)),
    }


def _submission_variables(ctx: Context, ref: JobRef) -> dict[str, Any]:
    metadata, code = read_submission(ctx, ref)
    metadata = metadata or {}
    # config.yaml may change after it was checked on receipt: only short text
    # reaches the email, never the repr of whatever shape it has now.
    return {
        "job_type": untrusted_text(metadata.get("type"), METADATA_TEXT_CAP),
        "submitted_at": untrusted_text(metadata.get("submitted_at"), METADATA_TEXT_CAP),
        "datasets": untrusted_text(
            dataset_store.declared_text(metadata, ctx.datasite.email), METADATA_TEXT_CAP
        ),
        # What a reply to this email approves (None: config.yaml could not be read).
        "shown_datasets": _declared_or_none(ctx, metadata),
        "code": code,
    }


def _declared_or_none(ctx: Context, metadata: dict[str, Any]) -> list[str] | None:
    try:
        return dataset_store.declared_datasets(metadata, ctx.datasite.email)
    except UsageError:
        return None


def without_inline_code(draft: Draft) -> Draft | None:
    """``draft`` with its code listed but not shown (an email over the size cap),
    or None when it shows no code."""
    code = draft.variables.get("code")
    if not isinstance(code, dict) or not any(f.get("text") for f in code.get("files", [])):
        return None
    files = [
        {**f, "text": None, "omitted": True, "note": file_note({**f, "omitted": True})}
        if f.get("text") is not None
        else f
        for f in code["files"]
    ]
    variables = {**draft.variables, "code": {**code, "files": files, "shown_bytes": kib(0)}}
    if variables.get("reply_approval"):
        variables["reply_approval"] = "no"
    return replace(draft, variables=variables)


# -- peers ---------------------------------------------------------------------------


def peer_subject(role: str, ds_email: str, do_email: str) -> str:
    if role == "do":
        return f"[syft-bg] peer request from {ds_email}"
    return f"[syft-bg] connecting with {do_email}"


def _peer_drafts(ctx: Context, event: dict[str, Any]) -> list[Draft]:
    kind, ds = event["kind"], event["ds_email"]
    do = ctx.config.do_email
    record = ctx.state.peer(ds) or {}
    requested_at = untrusted_text(record.get("requested_at"), METADATA_TEXT_CAP)
    # One email per request: the sync step numbers the requests it considers (a
    # rewritten request.yaml is not a new one); a checkpoint from before the
    # numbering keys on the request's date, as it did then.
    number = event.get("request") or record.get("request_number")
    entity = f"peer:{ds}:#{number}" if number else f"peer:{ds}:{requested_at or '-'}"
    base = {**common_variables(ctx), "ds_email": ds, "requested_at": requested_at}
    thread = f"peer:{ds}|ds"
    ds_draft = Draft(
        key=f"{do}|{kind}|{entity}|ds|{ds}",
        kind=kind,
        role="ds",
        to=ds,
        template=f"{kind}_ds",
        subject=peer_subject("ds", ds, do),
        summary=(
            f"your request to connect with {do} was received"
            if kind == "peer_requested"
            else f"{do} accepted you as a peer"
        ),
        variables=dict(base),
        thread=thread,
        terminal=kind == "peer_accepted",
    )
    if kind == "peer_accepted":
        return [ds_draft]
    message = untrusted_text(record.get("message"), MESSAGE_CAP, multiline=True)
    do_vars = {
        **base,
        "message": message,
        "accept_command": command(f"peers accept {shlex.quote(ds)}", ctx.home),
        "reject_command": command(f'peers reject {shlex.quote(ds)} -r "REASON"', ctx.home),
    }
    do_draft = Draft(
        key=f"{do}|{kind}|{entity}|do|{do}",
        kind=kind,
        role="do",
        to=do,
        template="peer_requested_do",
        subject=peer_subject("do", ds, do),
        summary=f"{ds} asks to connect",
        variables=do_vars,
    )
    return [do_draft, ds_draft]


# -- digest, heartbeat, test --------------------------------------------------------


def digest_draft(ctx: Context, to: str, drafts: list[Draft], first_event_id: int) -> Draft:
    """One email standing for many: each draft becomes one line."""
    do = ctx.config.do_email
    items = [d.summary for d in drafts]
    keys = ",".join(sorted(d.key for d in drafts))
    role = "do" if to == do and all(d.role == "do" for d in drafts) else "ds"
    return Draft(
        key=f"{do}|digest|{to}|{first_event_id}|{len(drafts)}|{_short_hash(keys)}",
        kind="digest",
        role=role,
        to=to,
        template="digest",
        subject=f"[syft-bg] {len(drafts)} updates from the datasite of {do}",
        summary=f"{len(drafts)} updates",
        variables={
            **common_variables(ctx),
            "recipient": to,
            "for_owner": role == "do",
            "count": len(drafts),
            "items": items[:DIGEST_ITEMS_SHOWN],
            "more": max(0, len(items) - DIGEST_ITEMS_SHOWN),
        },
    )


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def heartbeat_draft(ctx: Context, now_iso: str, queued: int, transport: str) -> Draft:
    do = ctx.config.do_email
    last = ctx.state.data.get("last_pass") or {}
    jobs: dict[str, int] = {}
    for _, _, record in ctx.state.iter_jobs():
        jobs[record["status"]] = jobs.get(record["status"], 0) + 1
    return Draft(
        key=f"{do}|heartbeat|{now_iso}",
        kind="heartbeat",
        role="do",
        to=do,
        template="heartbeat",
        subject=f"[syft-bg] still running on the datasite of {do}",
        summary="syft-bg is running",
        variables={
            **common_variables(ctx),
            "now": now_iso,
            "host": os.uname().nodename,
            "last_pass": last.get("summary"),
            "jobs": ", ".join(f"{n} {s}" for s, n in sorted(jobs.items())) or "none",
            "queued": queued,
            "transport": transport,
            "hours": ctx.config.get("notify.heartbeat_hours"),
        },
    )


def test_draft(ctx: Context, to: str, now_iso: str, transport: str) -> Draft:
    do = ctx.config.do_email
    return Draft(
        key=f"{do}|test|{to}|{now_iso}",
        kind="test",
        role="do" if to == do else "ds",
        to=to,
        template="test",
        subject="[syft-bg] test email",
        summary="test email",
        variables={
            **common_variables(ctx),
            "now": now_iso,
            "host": os.uname().nodename,
            "transport": transport,
        },
    )
