"""Interactive review in Jupyter: a job card and a jobs table with buttons.

``bg.review(job)`` shows one job's card: its facts, its files (``run.sh``
first, syntax-highlighted where pygments is installed), what the rules say
about it, and Approve / Reject (with a reason) / Auto-approve buttons;
``bg.review()`` shows the jobs table, filtered by status and text, that
approves or rejects a selection in one go. The buttons call the same actions
as ``syft-bg jobs approve|reject`` and ``syft-bg auto-approve --from-job``.

The widgets need the ``notebook`` extra (ipywidgets) and a Jupyter kernel;
without either, ``review`` returns the static HTML with the exact commands to
run instead. Everything a data scientist chose (names, config.yaml fields,
file names and contents, reasons) is escaped on its way into HTML, with
control and bidi characters shown as text.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from syft_bg_app import invocation
from syft_bg_app.actions import jobs as job_actions
from syft_bg_app.actions import rules as rule_actions
from syft_bg_app.datasite.layout import JOB_STATUSES
from syft_bg_app.errors import SyftBgError
from syft_bg_app.session import open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views import job_render
from syft_bg_app.views import jobs as job_views
from syft_bg_app.views.jobs import JobView
from syft_bg_app.views.render import MONO_STACK, WRAPPER, esc, terminal_text
from syft_bg_app.views.rules import rule_edit_text

# Only these can still be decided: the buttons of any other job are disabled.
DECIDABLE = ("pending", "received")
ALL_STATUSES = "all"
INSTALL_HINT = "pip install 'syft-bg-app[notebook]' (ipywidgets) for buttons"


def widgets_available() -> bool:
    """ipywidgets is installed and this runs in a Jupyter kernel."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# -- the code of a job -------------------------------------------------------------------


def _highlighter() -> Callable[[str, str], str] | None:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_for_filename
        from pygments.lexers.special import TextLexer
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    formatter = HtmlFormatter(noclasses=True, nowrap=True)

    def to_html(path: str, text: str) -> str:
        try:
            lexer = get_lexer_for_filename(path, stripnl=False)
        except ClassNotFound:
            lexer = TextLexer(stripnl=False)
        return highlight(text, lexer, formatter)

    return to_html


def code_html(code: dict[str, Any] | None) -> str:
    """The job's files, ``run.sh`` first: highlighted where pygments is installed,
    else escaped; control and bidi characters are marked before either."""
    if code is None:
        return ""
    if not code["available"]:
        return "<div>code: the job folder is no longer there</div>"
    highlight = _highlighter()
    parts = []
    if code["bidi_files"]:
        named = ", ".join(esc(p) for p in code["bidi_files"])
        parts.append(
            f'<div style="font-weight:600;color:#991b1b">WARNING: {named} '
            f"{esc(job_render.BIDI_WARNING)}</div>"
        )
    parts.extend(f"<div>refused: {esc(problem)}</div>" for problem in code["problems"])
    entries = sorted(code["files"], key=lambda e: (e["path"] != "run.sh", e["path"]))
    for entry in entries:
        path = entry["path"]
        if entry["text"] is None:
            parts.append(f"<div><code>{esc(path)}</code>: {esc(entry['note'])}</div>")
            continue
        # Marked first: what is shown is what runs, whichever way it is coloured.
        marked = terminal_text(entry["text"].rstrip("\n"), multiline=True)
        body = highlight(path, marked) if highlight else html.escape(marked, quote=True)
        cut = job_render._code_cut(entry)
        parts.append(
            f"<details{' open' if path == 'run.sh' else ''}><summary><code>{esc(path)}</code>"
            f'{esc(cut)}</summary><pre style="margin:0;font-family:{MONO_STACK}">{body}'
            "</pre></details>"
        )
    if code["more_files"]:
        parts.append(f"<div>({code['more_files']:,} more files not shown)</div>")
    return "".join(parts)


def card_html(job: JobView) -> str:
    """A job's card without buttons: its page (facts, why pending, files) and its code."""
    code = job.detail.code if job.detail else None
    facts = job_render.job_html(_without_code(job))
    return f"{facts}{WRAPPER}{code_html(code)}</div>"


def _without_code(job: JobView) -> JobView:
    """The page without its code: the card shows the code itself, run.sh first."""
    if job.detail is None:
        return job
    return replace(job, detail=replace(job.detail, code=None))


def commands_html(labels: Iterable[str], home: AppHome) -> str:
    """The commands that decide these jobs, to paste into a terminal."""
    lines = []
    for label in labels:
        quoted = shlex.quote(terminal_text(label))
        lines.append(invocation.command(f"jobs approve {quoted}", home))
        lines.append(invocation.command(f"jobs reject {quoted} -r REASON", home))
        lines.append(invocation.command(f"auto-approve --from-job {quoted}", home))
    if not lines:
        return ""
    shown = esc("\n".join(lines))
    return (
        f'{WRAPPER}<div style="margin:8px 0 4px">To decide (or {esc(INSTALL_HINT)}):</div>'
        f'<pre style="margin:0;font-family:{MONO_STACK}">{shown}</pre></div>'
    )


class StaticReview:
    """What ``review`` shows without ipywidgets or outside Jupyter: HTML and commands."""

    def __init__(self, body_html: str, labels: list[str], home: AppHome, text: str) -> None:
        self.body_html = body_html
        self.labels = labels
        self.home = home
        self.text = text

    def _repr_html_(self) -> str:
        return self.body_html + commands_html(self.labels, self.home)

    def __repr__(self) -> str:
        lines = [self.text, ""]
        for label in self.labels:
            quoted = shlex.quote(terminal_text(label))
            lines.append(invocation.command(f"jobs approve|reject {quoted}", self.home))
        return "\n".join(lines)


# -- deciding ------------------------------------------------------------------------------


def decide(home: AppHome, label: str, action: str, reason: str | None) -> str:
    """Approve, reject or trust one job as its command does; a sentence saying what
    happened (or why nothing did: a job decided meanwhile is left as it is).

    A widget decides only jobs that wait for a decision: a click that reaches a
    job someone decided since it was shown (another click, the command line, a
    pass) changes nothing."""
    reason = reason.strip() if reason and reason.strip() else None
    shown = terminal_text(label)
    try:
        ctx = open_view(home)
        status = job_views.view(ctx, job_views.resolve(ctx, label)).status
        if status not in DECIDABLE:
            return f"{shown} is {terminal_text(status)} already; nothing changed"
        if action == "approve":
            job_actions.approve(home, label, reason)
            return f"approved {shown}; it runs in the next pass"
        if action == "reject":
            job_actions.reject(home, label, reason)
            return f"rejected {shown}" + (
                " (the reason goes to the data scientist)" if reason else ""
            )
        if action == "auto-approve":
            edit = rule_actions.add_rule(home, from_job=label)
            return rule_edit_text(edit)
    except SyftBgError as exc:
        return f"{shown}: {exc}"
    raise ValueError(f"unknown action {action!r}")


def _page(home: AppHome, label: str) -> JobView:
    ctx = open_view(home)
    return job_views.page(ctx, job_views.resolve(ctx, label))


def _views(home: AppHome) -> list[JobView]:
    return job_views.all_views(open_view(home))


def matches(job: JobView, status: str, text: str) -> bool:
    """The jobs table's filter: a status (or all) and text in the job's label,
    description or tags (case-insensitive)."""
    if status != ALL_STATUSES and job.status != status:
        return False
    needle = text.strip().lower()
    if not needle:
        return True
    haystack = [job.label, job.description or "", *job.tags]
    return any(needle in value.lower() for value in haystack)


# -- the widgets ---------------------------------------------------------------------------


class JobCard:
    """One job with Approve / Reject / Auto-approve buttons and a reason box."""

    def __init__(self, home: AppHome, label: str) -> None:
        import ipywidgets as w

        self.home = home
        self.label = label
        self.body = w.HTML()
        self.reason = w.Text(placeholder="reason (sent to the data scientist)")
        self.approve_button = w.Button(description="Approve", button_style="success")
        self.reject_button = w.Button(description="Reject", button_style="danger")
        self.auto_button = w.Button(
            description="Auto-approve", tooltip="trust exactly these files from this peer"
        )
        self.message = w.HTML()
        self.approve_button.on_click(lambda _: self._act("approve"))
        self.reject_button.on_click(lambda _: self._act("reject"))
        self.auto_button.on_click(lambda _: self._act("auto-approve"))
        buttons = w.HBox([self.approve_button, self.reject_button, self.auto_button, self.reason])
        self.widget = w.VBox([self.body, buttons, self.message])
        self.refresh()

    def refresh(self) -> None:
        self.view = _page(self.home, self.label)
        self.body.value = card_html(self.view)
        closed = self.view.status not in DECIDABLE
        for button in (self.approve_button, self.reject_button, self.auto_button):
            button.disabled = closed

    def _act(self, action: str) -> None:
        said = decide(self.home, self.label, action, self.reason.value)
        try:
            self.refresh()
        except SyftBgError as exc:  # the job is gone: say so, keep the last page shown
            said += f"; {exc}"
            for button in (self.approve_button, self.reject_button, self.auto_button):
                button.disabled = True
        self.message.value = f"{WRAPPER}{esc(said)}</div>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class JobsTable:
    """The jobs, filtered by status and text; approve or reject a selection at once."""

    def __init__(self, home: AppHome, status: str = ALL_STATUSES, text: str = "") -> None:
        import ipywidgets as w

        self.home = home
        self.status = w.Dropdown(options=[ALL_STATUSES, *JOB_STATUSES], value=status)
        self.text = w.Text(value=text, placeholder="filter: name, description, tag")
        self.table = w.HTML()
        self.rows = w.SelectMultiple(options=[], rows=8, description="select")
        self.reason = w.Text(placeholder="reason (sent to the data scientist)")
        self.approve_button = w.Button(description="Approve selected", button_style="success")
        self.reject_button = w.Button(description="Reject selected", button_style="danger")
        self.message = w.HTML()
        self.status.observe(lambda _: self.refresh(), names="value")
        self.text.observe(lambda _: self.refresh(), names="value")
        self.approve_button.on_click(lambda _: self._act("approve"))
        self.reject_button.on_click(lambda _: self._act("reject"))
        self.widget = w.VBox(
            [
                w.HBox([self.status, self.text]),
                self.table,
                self.rows,
                w.HBox([self.approve_button, self.reject_button, self.reason]),
                self.message,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        shown = [v for v in _views(self.home) if matches(v, self.status.value, self.text.value)]
        self.shown = shown
        title = job_render.jobs_title(
            None if self.status.value == ALL_STATUSES else self.status.value
        )
        self.table.value = job_render.jobs_html(shown, title)
        kept = [label for label in self.rows.value if label in {v.label for v in shown}]
        # Options show as text, never HTML: the label is escaped for the terminal.
        self.rows.options = [(f"{terminal_text(v.label)} [{v.status}]", v.label) for v in shown]
        self.rows.value = tuple(kept)

    def _act(self, action: str) -> None:
        # One job refused (decided meanwhile, gone) never stops the others.
        # In the table's order, whatever the order of the clicks that selected them.
        chosen = [v.label for v in self.shown if v.label in self.rows.value]
        said = [decide(self.home, label, action, self.reason.value) for label in chosen]
        if not said:
            said = ["select jobs first"]
        self.message.value = f"{WRAPPER}" + "<br>".join(esc(s) for s in said) + "</div>"
        self.rows.value = ()
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def review(home: AppHome, job: str | None = None, interactive: bool | None = None) -> Any:
    """A job's card (``job`` named) or the jobs table: widgets where they work, else
    the static HTML with the commands to run (``interactive`` forces either)."""
    if interactive is None:
        interactive = widgets_available()
    if job is not None:
        label = job_views.resolve(open_view(home), job).label
        if interactive:
            return JobCard(home, label)
        page = _page(home, label)
        return StaticReview(card_html(page), [label], home, job_render.job_text(page))
    if interactive:
        return JobsTable(home)
    views = _views(home)
    waiting = [v.label for v in views if v.status in DECIDABLE]
    return StaticReview(
        job_render.jobs_html(views), waiting, home, job_render.jobs_text(views, "Jobs")
    )
