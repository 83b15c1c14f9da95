"""Every template renders with the variables the code really passes (StrictUndefined),
and every variable a template names is one the code passes."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from conftest import DS_EMAIL, App
from jinja2 import meta

from syft_bg_app.clock import iso
from syft_bg_app.mail import compose
from syft_bg_app.mail.templates import TEMPLATE_NAMES, Templates, builtin_dir
from syft_bg_app.session import open_view

REPO = Path(__file__).resolve().parent.parent


def real_variables(app: App) -> dict[str, list[dict]]:
    """Template name -> every variable set the composer produced for it, for events
    of every kind, with optional fields present and absent."""
    app.set_config(execute={"enabled": False})
    app.request_peer(DS_EMAIL, message="hello")
    app.request_peer("quiet@lab.org")
    app.submit("analysis", files={"main.py": "print(1)\n", "data.bin": b"\0\1\2"})
    app.run_pass()
    ctx = open_view(app.home)
    events = [
        {"id": 1, "kind": "peer_requested", "ds_email": DS_EMAIL},
        {"id": 2, "kind": "peer_requested", "ds_email": "quiet@lab.org"},
        {"id": 3, "kind": "peer_accepted", "ds_email": DS_EMAIL, "method": "auto"},
        {"id": 4, "kind": "job_submitted", "ds_email": DS_EMAIL, "job": "analysis"},
        {"id": 5, "kind": "job_submitted", "ds_email": DS_EMAIL, "job": "vanished"},
        {
            "id": 6,
            "kind": "job_approved",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "method": "auto",
            "rule": "nightly",
        },
        {
            "id": 7,
            "kind": "job_approved",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "method": "manual",
            "by": "another tool",
        },
        {
            "id": 8,
            "kind": "job_rejected",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "reason": "reads raw rows",
        },
        {"id": 9, "kind": "job_rejected", "ds_email": DS_EMAIL, "job": "analysis"},
        {
            "id": 10,
            "kind": "job_finished",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "status": "done",
            "return_code": 0,
        },
        {
            "id": 11,
            "kind": "job_finished",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "status": "failed",
            "return_code": 2,
            "duration_seconds": 3725,
            "stderr_tail": "boom\n",
            "reason": "timed out",
        },
        {
            "id": 12,
            "kind": "sandbox_unavailable",
            "since": "2026-11-20T10:00:00Z",
            "detail": "bwrap is not installed (package: bubblewrap)",
            "fix": "sudo apt-get install bubblewrap",
            "waiting": 2,
            "setting": "auto",
        },
        {
            "id": 13,
            "kind": "reply_answer",
            "ds_email": DS_EMAIL,
            "job": "analysis",
            "text": "A reply cannot approve this job.",
            "reply": "0123abcd",
        },
        {
            "id": 14,
            "kind": "peer_other_generation",
            "ds_email": "bob@uni.edu",
            "version": "0.1.117",
            "generation": "0.10",
            "wanted": "0.1",
            "peers_served": 3,
        },
        {
            "id": 15,
            "kind": "peer_other_generation",
            "ds_email": "carol@uni.edu",
            "version": "9.9.1",
            "generation": "0.10",
            "wanted": "9.9",
            "peers_served": 0,
        },
    ]
    found: dict[str, list[dict]] = {}
    drafts = []
    for event in events:
        drafts.extend(compose.drafts_for_event(ctx, event))
    drafts.append(compose.digest_draft(ctx, ctx.config.do_email, drafts[:3], 1))
    drafts.append(compose.digest_draft(ctx, DS_EMAIL, drafts[:2], 1))
    drafts.append(compose.heartbeat_draft(ctx, iso(), 0, "outbox"))
    drafts.append(compose.test_draft(ctx, ctx.config.do_email, iso(), "smtp"))
    for draft in drafts:
        found.setdefault(draft.template, []).append(draft.variables)
    return found


def referenced_closure(env: jinja2.Environment, name: str) -> list[str]:
    """``name`` and every template it includes or extends, recursively."""
    seen: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        source = env.loader.get_source(env, current)[0]
        todo.extend(t for t in meta.find_referenced_templates(env.parse(source)) if t)
    return seen


def test_every_template_renders_with_the_variables_really_passed(app: App) -> None:
    variables = real_variables(app)
    assert sorted(variables) == sorted(TEMPLATE_NAMES)
    templates = Templates()
    for name, sets in variables.items():
        for values in sets:
            text, html = templates.render(name, values)
            assert text.strip() and "<html>" in html, name


def test_every_variable_a_template_names_is_passed(app: App) -> None:
    variables = real_variables(app)
    templates = Templates()
    env = templates.env
    for name, sets in variables.items():
        passed = set.intersection(*(set(v) for v in sets))
        for part in ("txt", "html"):
            for filename in referenced_closure(env, f"{name}.{part}.j2"):
                source = env.loader.get_source(env, filename)[0]
                used = meta.find_undeclared_variables(env.parse(source))
                assert used <= passed, f"{filename} (via {name}) uses {used - passed}"


def test_every_template_file_is_used() -> None:
    templates = Templates()
    used: set[str] = set()
    for name in TEMPLATE_NAMES:
        for part in ("txt", "html"):
            used.update(referenced_closure(templates.env, f"{name}.{part}.j2"))
    on_disk = {p.name for p in (REPO / "templates").glob("*.j2")}
    assert on_disk == used


def test_the_templates_are_found_from_the_source_tree() -> None:
    assert builtin_dir() == REPO / "templates"


def test_a_missing_variable_is_an_error_not_a_gap(tmp_path: Path) -> None:
    (tmp_path / "test.txt.j2").write_text("{{ now }} {{ not_passed }}\n")
    with pytest.raises(Exception) as err:
        Templates(tmp_path).render(
            "test", {"now": "x", "host": "h", "transport": "t", "do_email": "a@b.org"}
        )
    assert "not_passed" in str(err.value) and "test.txt.j2" in str(err.value)
