"""Jobs as HTML (Jupyter) and text (terminal), without a notebook.

Job names, reasons and rule names come from other people; the HTML must stay
well-formed with them in it, and show them as text.
"""

from __future__ import annotations

import hashlib
import json
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


# -- one job, one view model: text, HTML and JSON -------------------------------------------

SCRIPT_NAME = "<script>alert(1)"  # a folder name cannot hold the "/" of </script>
IMG_FILE = "<img src=x onerror=alert(1)>.py"
IMG_CODE = "print('</pre><script>alert(2)</script>')\n"
REASON = "reads raw rows & prints <all> of them"


def _page_jobs(app) -> None:
    app.submit(
        SCRIPT_NAME,
        files={IMG_FILE: IMG_CODE},
        metadata={"entrypoint": "<script>alert(1)</script>"},
    )
    app.submit("to-reject")
    app.run_pass()
    bg.reject(f"{DS}/to-reject", REASON)


def test_a_job_shows_the_same_text_in_the_command_line_and_the_api(app):
    _page_jobs(app)
    for label in (f"{DS}/{SCRIPT_NAME}", f"{DS}/to-reject"):
        job = bg.job(label)
        page = app.cli("jobs", "show", label, check=True).stdout
        assert page == job.describe() + "\n" == repr(job) + "\n"
        files_only = app.cli("jobs", "show", label, "--files", check=True).stdout
        assert files_only == job.describe(contents=False) + "\n"
        assert "=====" in page and "=====" not in files_only
    assert app.cli("jobs", "list", check=True).stdout == repr(bg.jobs()) + "\n"
    pending = app.cli("jobs", "list", "--status", "pending", check=True).stdout
    assert pending == repr(bg.jobs("pending")) + "\n"
    assert pending.startswith("Jobs with status pending: 1 job (1 pending)\n")


def test_a_job_page_in_html_escapes_names_files_contents_and_reasons(app):
    _page_jobs(app)
    job = bg.job(f"{DS}/{SCRIPT_NAME}")

    markup = job._repr_html_()
    checker = check(markup)  # well-formed, and no script or img element

    assert f"{DS}/{SCRIPT_NAME}" in checker.text
    assert "<script>alert(1)</script>" in checker.text  # config.yaml's entrypoint
    assert f"code/{IMG_FILE}" in checker.text
    assert IMG_CODE.rstrip("\n") in checker.text  # the file's text, shown as text
    assert "&lt;img src=x onerror=alert(1)&gt;.py" in markup
    rejected = check(bg.job(f"{DS}/to-reject")._repr_html_())
    assert REASON in rejected.text
    assert "&amp; prints &lt;all&gt;" in bg.job(f"{DS}/to-reject")._repr_html_()
    table = check(bg.jobs()._repr_html_())
    assert f"{DS}/{SCRIPT_NAME}" in table.text and REASON in table.text


def test_a_job_as_json_round_trips_and_holds_the_facts_of_the_text(app):
    _page_jobs(app)
    label = f"{DS}/{SCRIPT_NAME}"
    job = bg.job(label)
    data = job.to_dict()

    assert json.loads(json.dumps(data)) == data
    assert json.loads(app.cli("jobs", "show", label, "--json", check=True).stdout) == data
    text = job.describe()
    assert data["job"] == label and f"job {label}  (protocol v1)" in text
    assert data["status"] == "pending" and "  status: pending" in text
    assert data["metadata"]["entrypoint"] == "<script>alert(1)</script>"
    folder = app.datasite.inbox / DS / "v1" / SCRIPT_NAME
    files = {entry["path"]: entry for entry in data["files"]}
    for rel in ("run.sh", f"code/{IMG_FILE}"):
        digest = "sha256:" + hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        assert files[rel]["sha256"] == digest
        assert f"    {rel}  ({files[rel]['size']} bytes)  {digest}" in text
    assert files["config.yaml"]["sha256"] is None  # metadata: never what runs
    assert data["why_pending"]["summary"] in text
    assert [entry["text"] for entry in data["code"]["files"]][1] == IMG_CODE
    files_only = json.loads(app.cli("jobs", "show", label, "--files", "--json", check=True).stdout)
    assert files_only["code"] is None and files_only == job.to_dict(contents=False)

    rejected = bg.job(f"{DS}/to-reject").to_dict()
    assert rejected["reason"] == REASON and rejected["state"]["review_reason"] == REASON
    listing = json.loads(app.cli("jobs", "list", "--json", check=True).stdout)
    assert listing == bg.jobs().to_dicts()
    assert [(row["job"], row["status"]) for row in listing] == [
        (label, "pending"),
        (f"{DS}/to-reject", "rejected"),
    ]
    assert "files" not in listing[0]  # the table holds summaries; a page holds the files


def test_bidi_controls_in_a_file_name_are_marked_in_text_html_and_json(app):
    name = "evil\u202eyp.sh"
    app.submit("bidi", files={name: "echo hi\n"})
    app.run_pass()
    job = bg.job(f"{DS}/bidi")

    text = app.cli("jobs", "show", f"{DS}/bidi", check=True).stdout
    assert "\u202e" not in text and "code/evil<U+202E>yp.sh" in text
    assert text == repr(job) + "\n"
    markup = job._repr_html_()
    assert "\u202e" not in markup and "code/evil&lt;U+202E&gt;yp.sh" in markup
    shown = app.cli("jobs", "show", f"{DS}/bidi", "--json", check=True).stdout
    assert "\u202e" not in shown and "\\u202e" in shown
    [entry] = [f for f in json.loads(shown)["files"] if f["path"] == f"code/{name}"]
    assert entry["bidi_controls"] is True
    assert job.to_dict()["files"] == json.loads(shown)["files"]
