"""Draws the picture of a review card the README shows (review-card.png).

The card's HTML is the one ``bg.review(job)`` shows, for the example job of
``data_owner.py``, with a row of buttons drawn as ipywidgets draws them; headless
Chromium renders it. Run after changing how a card looks::

    .venv/bin/python examples/notebooks/card_picture.py [CHROMIUM]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import syft_bg_app as bg
from syft_bg_app.api import widgets
from syft_bg_app.cli.demo import DO_EMAIL, DS_EMAIL, MAIN_PY
from syft_bg_app.session import open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views import jobs as job_views

HERE = Path(__file__).resolve().parent
PICTURE = HERE / "review-card.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BUTTON = (
    "display:inline-block;padding:4px 12px;margin-right:6px;border-radius:2px;"
    "color:white;font:13px sans-serif"
)
BUTTONS = (
    '<div style="margin:8px 0">'
    f'<span style="{BUTTON};background:#4caf50">Approve</span>'
    f'<span style="{BUTTON};background:#f44336">Reject</span>'
    f'<span style="{BUTTON};background:#eeeeee;color:black">Auto-approve</span>'
    '<span style="display:inline-block;width:260px;border:1px solid #9e9e9e;padding:3px 6px;'
    'color:#757575;font:13px sans-serif">reason (sent to the data scientist)</span></div>'
)


def card_page(workdir: Path) -> str:
    home = workdir / "owner-home"
    root = workdir / "SyftBox"
    bg.init(DO_EMAIL, root, create=True, home=home)
    me = {"as_email": DS_EMAIL, "syftbox_root": root, "home": home}
    bg.request_peer(DO_EMAIL, "I study ageing; aggregates only.", **me)
    bg.submit_script(
        DO_EMAIL,
        MAIN_PY,
        name="mean-age",
        description="Mean age over all records, written to outputs/result.json",
        tags=["demo", "ageing"],
        **me,
    )
    bg.run_once(home=home)
    bg.accept_peer(DS_EMAIL, home=home)
    bg.run_once(home=home)
    ctx = open_view(AppHome(home))
    page = job_views.page(ctx, job_views.resolve(ctx, f"{DS_EMAIL}/mean-age"))
    # The picture shows every file open; in Jupyter only run.sh starts open.
    card = widgets.card_html(page).replace("<details>", "<details open>")
    return f'<html><body style="margin:12px;width:900px">{card}{BUTTONS}</body></html>'


def main(argv: list[str]) -> int:
    browser = argv[1] if len(argv) > 1 else next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        print("no Chromium found; name it: card_picture.py /path/to/chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="syft-bg-card-") as folder:
        page = Path(folder) / "card.html"
        page.write_text(card_page(Path(folder)), encoding="utf-8")
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={folder}/profile",
                "--window-size=930,640",
                f"--screenshot={PICTURE}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    print(f"wrote {PICTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
