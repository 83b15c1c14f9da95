"""``syft-bg status``: the last pass, each step, and what is waiting."""

from __future__ import annotations

from collections import Counter

from syft_bg_app.config.load import load_config
from syft_bg_app.context import Context
from syft_bg_app.errors import ConfigError
from syft_bg_app.steps import STEPS
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.lock import PassLock
from syft_bg_app.views.render import terminal_text


def render_status(home: AppHome) -> str:
    """What ``syft-bg status`` prints; the commands in it are spelled as they run here."""
    from syft_bg_app.invocation import localize

    return localize(_status_text(home), home)


def _status_text(home: AppHome) -> str:
    lines = [f"app home: {home.root}"]
    try:
        config = load_config(home.config_file)
    except ConfigError as exc:
        return "\n".join(lines + [f"config: PROBLEM\n{exc}"])
    ctx = Context.open(home, config)
    state = ctx.state.data
    lines.append(f"config: {home.config_file}")
    lines.append(f"datasite: {ctx.datasite.path} (layout ROOT/{ctx.datasite.layout})")
    lock = PassLock(home)
    if lock.is_held():
        lines.append(f"a pass is running now ({lock.owner()})")
    lines.extend(f"config warning: {warning}" for warning in config.warnings)
    last = state.get("last_pass")
    if last:
        lines.append(f"last pass: {last['finished_at']} - {last['summary']}")
    else:
        lines.append("last pass: none yet (run ./run.sh)")
    from syft_bg_app.actions import services as ops

    lines.extend(ops.schedule_lines(home, config, state))
    lines.append("services (the steps of each pass; syft-bg start|stop SERVICE):")
    for step in STEPS:
        enabled = "enabled" if config.step_enabled(step) else "disabled"
        info = state["steps"].get(step)
        if info is None:
            result = "not run yet"
        elif info["ok"]:
            result = f"ok at {info['at']}"
        else:
            result = f"FAILED at {info['at']}: {info['error']} (details: logs/syft-bg.log)"
        lines.append(f"  {step:<8} {enabled:<9} {result}")
    by_status = Counter(record["status"] for _, _, record in ctx.state.iter_jobs())
    jobs_line = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"
    lines.append(f"jobs: {jobs_line}")
    from syft_bg_app.execution.status import status_lines as execute_status_lines

    lines.extend(execute_status_lines(ctx))
    peers = Counter(r["status"] for r in state["peers"].values())
    lines.append(f"peers: {', '.join(f'{n} {s}' for s, n in sorted(peers.items())) or 'none'}")
    from syft_bg_app.sync.drive.owner import other_generation_notes

    lines.extend(f"Drive peer {ds} {note}" for ds, note in other_generation_notes(ctx).items())
    held = state["held_jobs"]
    if held:
        count = sum(entry["jobs"] for entry in held.values())
        lines.append(
            f"jobs waiting for peer acceptance: {count} from {len(held)} data scientist(s) "
            "(syft-bg peers list)"
        )
    lines.append(f"events waiting for notify: {len(state['events'])}")
    from syft_bg_app.mail.health import status_lines as mail_status_lines

    lines.extend(mail_status_lines(ctx))
    waiting = [
        f"  {ds}/{name}: {rec.get('waiting_reason', 'arriving')}"
        for ds, name, rec in ctx.state.iter_jobs()
        if rec["status"] == "received"
    ]
    if waiting:
        lines.append("job folders still arriving:")
        lines.extend(waiting)
    lines.extend(ops.tail_lines(home, state))
    # Each line may quote what others wrote (job names, reasons, errors about
    # them): one line each, control characters escaped.
    return "\n".join(terminal_text(line) for line in lines)
