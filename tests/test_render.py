"""Jobs as HTML (Jupyter) and text (terminal), without a notebook.

Job names, reasons and rule names come from other people; the HTML must stay
well-formed with them in it, and show them as text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from conftest import REPO

import syft_bg_app as bg
from syft_bg_app.actions import ds
from syft_bg_app.actions import peers as peer_actions
from syft_bg_app.views import job_render, render
from syft_bg_app.views import peers as peer_views
from syft_bg_app.views import rules as rule_views

DS = "alice@uni.edu"
VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr"})
NASTY_REASON = '</td></tr></table><script>alert("reason")</script> & more'


class TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.data.append(data)

    @property
    def text(self) -> str:
        return "".join(self.data)


def check(markup: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(markup)
    checker.close()
    assert checker.problems == []
    assert checker.open == [], f"unclosed: {checker.open}"
    assert "script" not in checker.seen and "img" not in checker.seen
    return checker


def _hostile_jobs(app) -> None:
    app.submit("<script>", files={"<b>bold</b>.py": "print(1)\n"})
    app.submit("plain-job")
    app.submit("ansi\x1b[2Jclear")
    app.run_pass()
    bg.reject(f"{DS}/plain-job", NASTY_REASON)


def test_a_job_list_is_a_well_formed_table_with_user_strings_as_text(app):
    _hostile_jobs(app)
    jobs = bg.jobs()

    checker = check(jobs._repr_html_())

    assert "<script>" in checker.text  # the job name, shown as text
    assert NASTY_REASON in checker.text
    assert {"table", "thead", "tbody", "tr", "th", "td", "span"} <= set(checker.seen)
    markup = jobs._repr_html_()
    assert markup.count("<tr>") == 1 + len(jobs)  # header + one row per job
    assert "syft-bg-pending" in markup and "syft-bg-rejected" in markup


def test_one_job_renders_its_fields_files_and_badge(app):
    _hostile_jobs(app)
    job = bg.jobs()["<script>"]

    checker = check(job._repr_html_())

    assert f"{DS}/<script>" in checker.text
    assert "code/<b>bold</b>.py" in checker.text
    assert "pending" in checker.text
    rejected = check(bg.jobs()["plain-job"]._repr_html_())
    assert NASTY_REASON in rejected.text


def test_the_terminal_form_is_aligned_and_free_of_control_characters(app):
    _hostile_jobs(app)
    text = repr(bg.jobs())

    assert "\x1b" not in text
    assert "ansi\\x1b[2Jclear" in text
    lines = text.splitlines()
    assert lines[0] == "Jobs: 3 jobs (2 pending, 1 rejected)"
    header = lines[1]
    assert header.split() == ["JOB", "STATUS", "TYPE", "RECEIVED", "NOTE"]
    status_at = header.index("STATUS")
    assert all(line[status_at:].split()[0] in ("pending", "rejected") for line in lines[2:])
    assert "<script>" in text  # a terminal shows the name as it is
    assert "\x1b" not in str(bg.jobs()["ansi\x1b[2Jclear"])


def test_my_jobs_render_with_results_and_escaping(app, tmp_path):
    script = tmp_path / "x.sh"
    script.write_text("echo x\n")
    ident = ds.Identity(DS, app.root)
    app.cli("peers", "accept", DS, check=True)
    ds.submit(ident, app.do_email, script, name="<img src=x onerror=alert(1)>")
    ds.submit(ident, app.do_email, script, name="fine")
    app.run_pass()
    bg.reject(f"{DS}/fine", "<i>no</i>")

    mine = bg.my_jobs(as_email=DS)
    checker = check(mine._repr_html_())

    assert "<img src=x onerror=alert(1)>" in checker.text
    assert "<i>no</i>" in checker.text
    assert "rejected" in repr(mine) and "pending" in repr(mine)


def test_rules_render_as_a_table(app):
    app.submit("base", files={"main.py": "print(1)\n"})
    app.run_pass()
    bg.auto_approve_job(f"{DS}/base", name="<b>rule</b>")

    rules = bg.list_auto_approvals()
    checker = check(rules._repr_html_())

    assert "<b>rule</b>" in checker.text
    assert "live" in checker.text
    assert "<b>rule</b>" in repr(rules) and "live" in repr(rules)


def test_a_peer_renders_from_one_view_as_text_html_and_json(app):
    app.request_peer("mallory@evil.example", NASTY_REASON + "\x1b[2J")
    app.submit("waiting", ds_email="stranger@x.org", as_peer=False)
    app.run_pass()
    known = peer_actions.known_peers(app.home)

    checker = check(peer_views.peers_html(known))
    assert NASTY_REASON in checker.text and "unknown" in checker.text
    text = peer_views.peers_text(known)
    assert "\x1b" not in text and NASTY_REASON in text and "1 job(s)" in text
    assert text == app.cli("peers", "list", check=True).stdout.rstrip("\n")
    assert peer_views.peers_json(known) == bg.peers()
    assert bg.peers()["stranger@x.org"]["jobs_waiting"] == 1


def test_empty_lists_and_every_badge():
    for status in ("received", "pending", "approved", "running", "done", "failed", "rejected"):
        badge = check(render.badge_html(status))
        assert badge.text == status
    assert check(job_render.jobs_html([])).text == "Jobs: no jobs"
    assert job_render.jobs_text([]) == "Jobs: no jobs"
    assert check(render.my_jobs_html([])).text == "My jobs: no jobs"
    assert check(rule_views.rules_html([], ["<warn>"])).text.endswith("<warn>")
    assert check(render.pre_html("a < b", "<t>")).text == "<t>a < b"


def test_every_view_and_email_uses_one_font_stack(app):
    _hostile_jobs(app)
    views = [
        bg.jobs()._repr_html_(),
        bg.jobs("done")._repr_html_(),
        bg.jobs()["plain-job"]._repr_html_(),
        bg.status()._repr_html_(),
        bg.list_auto_approvals()._repr_html_(),
        rule_views.rules_html([]),
        render.pre_html("text", "title"),
    ]
    layout = (REPO / "templates" / "_layout.html.j2").read_text()
    code = (REPO / "templates" / "_code.html.j2").read_text()
    for markup in views:
        check(markup)
        # Every view starts with the one wrapper that sets the font.
        assert markup.startswith(f'<div class="syft-bg" style="font-family:{render.FONT_STACK};')
        fonts = set(re.findall(r"font-family:([^;\"]+)", markup))
        assert fonts <= {render.FONT_STACK, render.MONO_STACK, "inherit"}, fonts
    # The emails use the same two stacks.
    assert set(re.findall(r"font-family:([^;\"]+)", layout)) == {render.FONT_STACK}
    assert set(re.findall(r"font-family:([^;\"]+)", code)) == {render.MONO_STACK}
