"""The notebook's review widgets: real ipywidgets objects, clicked and typed into,
change the datasite, the checkpoint and the audit log exactly as the matching
command does; everything a data scientist chose is escaped on the way to HTML."""

from __future__ import annotations

import re
import sys

import pytest
import test_faces
from conftest import App
from test_faces import assert_alike, what_changed

import syft_bg_app as bg
from syft_bg_app.api import widgets

pytest.importorskip("ipywidgets")

DS = "alice@uni.edu"
# The twin app homes of the face tests: one clicked, one driven by the command line.
twins = test_faces.twins


def _card(twin: App, label: str) -> widgets.JobCard:
    return widgets.JobCard(twin.home, label)


def test_the_approve_button_changes_what_jobs_approve_changes(twins):
    api, cli = twins
    card = _card(api, f"{DS}/kept")
    assert card.view.status == "pending" and not card.approve_button.disabled

    card.approve_button.click()
    assert cli.cli("jobs", "approve", f"{DS}/kept").returncode == 0

    assert_alike(twins)
    assert card.view.status == "approved"  # the card refreshed itself
    assert card.approve_button.disabled and card.reject_button.disabled
    assert "approved alice@uni.edu/kept" in card.message.value


def test_a_second_click_on_a_decided_job_changes_nothing(twins):
    api, _ = twins
    card = _card(api, f"{DS}/kept")
    card.approve_button.click()
    before = what_changed(api)

    for button in (card.approve_button, card.reject_button, card.approve_button):
        button.click()  # a click that arrives before the button shows as disabled

    assert what_changed(api) == before
    assert "is approved already; nothing changed" in card.message.value
    assert card.view.status == "approved"


def test_reject_with_a_typed_reason_is_jobs_reject_with_r(twins):
    api, cli = twins
    card = _card(api, f"{DS}/dropped")
    card.reason.value = "reads raw rows"
    card.reject_button.click()
    assert cli.cli("jobs", "reject", f"{DS}/dropped", "-r", "reads raw rows").returncode == 0

    assert_alike(twins)
    assert card.view.status == "rejected" and card.view.reason == "reads raw rows"


def test_the_auto_approve_button_is_auto_approve_from_job(twins):
    api, cli = twins
    card = _card(api, f"{DS}/trusted-one")
    card.auto_button.click()
    card.auto_button.click()  # the same rule again: nothing new
    assert cli.cli("auto-approve", "--from-job", f"{DS}/trusted-one").returncode == 0

    assert_alike(twins)
    assert "trusted-one" in card.message.value
    for twin in twins:
        twin.run_pass()
    assert_alike(twins)
    assert card.view.status == "pending"
    card.refresh()
    assert card.view.status == "approved" and card.approve_button.disabled


def test_the_table_filters_and_decides_a_selection_in_one_go(twins):
    api, cli = twins
    table = widgets.JobsTable(api.home)
    assert {label for _, label in table.rows.options} == {
        f"{DS}/{n}" for n in ("kept", "dropped", "trusted-one", "matching")
    }
    table.text.value = "DROP"
    assert [label for _, label in table.rows.options] == [f"{DS}/dropped"]
    table.text.value = ""
    table.status.value = "rejected"
    assert table.rows.options == ()
    table.status.value = "pending"

    table.rows.value = (f"{DS}/kept", f"{DS}/dropped")
    table.reason.value = "not this quarter"
    table.reject_button.click()
    for name in ("dropped", "kept"):
        command = cli.cli("jobs", "reject", f"{DS}/{name}", "-r", "not this quarter")
        assert command.returncode == 0

    assert_alike(twins)
    assert table.rows.value == ()
    assert {label for _, label in table.rows.options} == {f"{DS}/trusted-one", f"{DS}/matching"}


def test_one_job_decided_meanwhile_does_not_stop_the_batch(twins):
    api, cli = twins
    table = widgets.JobsTable(api.home, status="pending")
    table.rows.value = (f"{DS}/kept", f"{DS}/matching")
    bg.reject(f"{DS}/kept", home=api.home.root)  # decided elsewhere after selecting

    table.approve_button.click()
    assert cli.cli("jobs", "reject", f"{DS}/kept").returncode == 0
    assert cli.cli("jobs", "approve", f"{DS}/matching").returncode == 0

    assert_alike(twins)
    assert "approved alice@uni.edu/matching" in table.message.value
    assert "kept is rejected already; nothing changed" in table.message.value


HOSTILE = "<script>alert('x')</script>"


@pytest.fixture
def hostile(app: App) -> App:
    app.submit(
        "<img src=x onerror=alert(1)>",
        ds_email=DS,
        run_sh="#!/bin/bash\necho '<b>run</b>'\nbash code/script.sh\n",
        files={
            "script.sh": f"echo {HOSTILE}\n",
            "<i>page.html": "<html><body onload=alert(2)>hi</body></html>\n",
            "trojan.py": "access = 'user' # \u202e } \u2066if admin:\u2069 \u2066\n",
        },
        metadata={"description": HOSTILE, "tags": ["<b>bold</b>", "census"], "type": HOSTILE},
    )
    app.run_pass()
    return app


def _no_markup_from_the_job(rendered: str) -> None:
    assert "<script" not in rendered
    assert "<img" not in rendered
    assert "<b>" not in rendered and "<i>" not in rendered and "<html" not in rendered
    assert "onload=alert" not in rendered.replace("onload=alert(2)&gt;", "")
    assert "\u202e" not in rendered and "\u2066" not in rendered


def test_every_string_from_the_job_is_escaped_in_the_card_and_the_table(hostile):
    (label,) = [j.label for j in bg.jobs(home=hostile.home.root)]
    card = _card(hostile, label)
    _no_markup_from_the_job(card.body.value)
    assert "&lt;img src=x onerror=alert(1)&gt;" in card.body.value
    assert "&lt;script&gt;" in card.body.value or "&lt;</span>" in card.body.value
    assert "&lt;U+202E&gt;" in card.body.value  # the bidi control is marked
    assert "WARNING" in card.body.value

    card.reason.value = "<script>no</script>"
    card.reject_button.click()
    _no_markup_from_the_job(card.message.value + card.body.value)

    table = widgets.JobsTable(hostile.home)
    _no_markup_from_the_job(table.table.value)
    table.text.value = "<b>bold"  # a tag: found by what the data scientist typed
    assert [value for _, value in table.rows.options] == [label]
    static = bg.review(label, interactive=False, home=hostile.home.root)
    _no_markup_from_the_job(static._repr_html_())
    _no_markup_from_the_job(bg.review(interactive=False, home=hostile.home.root)._repr_html_())


def test_run_sh_comes_first_in_the_card(hostile):
    (label,) = [j.label for j in bg.jobs(home=hostile.home.root)]
    body = _card(hostile, label).body.value
    files = re.findall(r"<summary><code>(.*?)</code>", body)
    assert files[0] == "run.sh" and len(files) == 4


def test_outside_jupyter_review_is_the_static_page_with_the_exact_commands(twins):
    api, _ = twins
    shown = bg.review("kept", home=api.home.root)
    assert isinstance(shown, widgets.StaticReview)  # no kernel here
    page = shown._repr_html_()
    assert "echo hello" in re.sub("<[^>]+>", "", page)  # the code is there to read
    command = api.command(f"jobs approve {DS}/kept")
    assert command.replace("'", "&#x27;") in page or command in page
    assert api.command(f"auto-approve --from-job {DS}/kept") in page
    table = bg.review(home=api.home.root)
    assert isinstance(table, widgets.StaticReview)
    assert f"jobs reject {DS}/dropped -r REASON" in table._repr_html_()
    assert "jobs approve|reject" in repr(table)


def test_without_pygments_the_code_is_plain_escaped_text(hostile, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygments", None)  # as if it were not installed
    (label,) = [j.label for j in bg.jobs(home=hostile.home.root)]
    body = _card(hostile, label).body.value
    assert "echo &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert "<span" not in body.split("<details", 1)[1]
    _no_markup_from_the_job(body)
