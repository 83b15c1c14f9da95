# %% [markdown]
# # syft-bg in a notebook: reviewing jobs as a data owner
#
# The whole flow on a throwaway datasite (the world of `run.sh --demo`): a data
# scientist asks to become a peer and submits a script; you look at it, approve
# it, and passes of the app run it in the sandbox. Nothing outside a temporary
# folder is touched. On your own datasite, leave out `home=` and `create=True`.

# %%
import os
import tempfile
import time
from pathlib import Path

try:
    from IPython.display import display
except ImportError:  # a plain python run: show things as text
    display = print

import syft_bg_app as bg
from syft_bg_app.cli.demo import DO_EMAIL, DS_EMAIL, MAIN_PY

workdir = Path(os.environ.get("SYFT_BG_EXAMPLE_DIR") or tempfile.mkdtemp(prefix="syft-bg-"))
home = workdir / "owner-home"
root = workdir / "SyftBox"
display(bg.init(DO_EMAIL, root, create=True, home=home))

# %% [markdown]
# ## A data scientist asks, and submits a script
#
# Here we play the data scientist; on a real datasite their SyftBox client
# delivers these files (see `data_scientist.ipynb`).

# %%
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
display(bg.run_once(home=home))

# %% [markdown]
# ## Accept the peer; their job arrives for review

# %%
bg.accept_peer(DS_EMAIL, home=home)
display(bg.run_once(home=home))
display(bg.pending(home=home))

# %% [markdown]
# ## The review card
#
# In Jupyter with the `notebook` extra (`pip install '.[notebook]'`) the card has
# **Approve**, **Reject** (with a reason) and **Auto-approve** buttons; elsewhere it
# shows the same page with the exact commands to run. `run.sh` comes first: it is
# what runs.

# %%
label = f"{DS_EMAIL}/mean-age"
card = bg.review(label, home=home)
display(card)

# %% [markdown]
# Clicking **Approve** does what this call (and `syft-bg jobs approve`) does:

# %%
bg.approve(label, "aggregate only", home=home)

# %% [markdown]
# ## Passes run it
#
# `./run.sh` (from SyftBox, cron or a timer) runs one pass at a time; here we
# run them by hand until the job is finished.

# %%
deadline = time.monotonic() + 600
while bg.job(label, home=home).status not in ("done", "failed"):
    assert time.monotonic() < deadline, "the job did not finish"
    bg.run_once(home=home)
    time.sleep(0.5)
job = bg.job(label, home=home)
print(job.status, job.stdout)
assert job.status == "done"

# %% [markdown]
# ## The jobs table
#
# Filter by status and text, select rows, and approve or reject them in one go.
# `bg.jobs(tag=...)` is `syft-bg jobs list --tag ...`.

# %%
display(bg.review(home=home))
display(bg.jobs(tag="ageing", home=home))
