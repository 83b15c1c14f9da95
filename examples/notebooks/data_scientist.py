# %% [markdown]
# # syft-bg in a notebook: submitting jobs as a data scientist
#
# The whole flow on a throwaway datasite (the world of `run.sh --demo`). You
# submit a script written in the notebook, wait for it, and read its logs and
# outputs. The data owner's side (their app, their approval) is played here in a
# few marked lines; on a real datasite it happens on their machine.

# %%
import os
import tempfile
import threading
from pathlib import Path

try:
    from IPython.display import display
except ImportError:  # a plain python run: show things as text
    display = print

import syft_bg_app as bg
from syft_bg_app.cli.demo import DO_EMAIL, DS_EMAIL, MAIN_PY

workdir = Path(os.environ.get("SYFT_BG_EXAMPLE_DIR") or tempfile.mkdtemp(prefix="syft-bg-"))
root = workdir / "SyftBox"
owner_home = workdir / "owner-home"  # the data owner's app (played here)
bg.init(DO_EMAIL, root, create=True, home=owner_home)

# %% [markdown]
# ## What a data scientist can call

# %%
display(bg.help())

# %% [markdown]
# ## Ask to become a peer
#
# Every call takes who you are and where your SyftBox folder is; with a config
# of this app (`syft-bg init`) they come from there.

# %%
me = {"as_email": DS_EMAIL, "syftbox_root": root, "home": workdir / "my-home"}
display(bg.request_peer(DO_EMAIL, "I study ageing; aggregates only.", **me))
# The data owner's side: their next pass sees the request, and they accept it.
bg.run_once(home=owner_home)
bg.accept_peer(DS_EMAIL, home=owner_home)

# %% [markdown]
# ## Submit a script written here
#
# `description` and `tags` go into the job's `config.yaml` (syft-job clients
# still read it) and show on the data owner's review card.

# %%
print(MAIN_PY)
submission = bg.submit_script(
    DO_EMAIL,
    MAIN_PY,
    name="mean-age",
    description="Mean age over all records, written to outputs/result.json",
    tags=["demo", "ageing"],
    **me,
)
display(bg.my_jobs(**me))

# %% [markdown]
# ## Wait for it
#
# The data owner's side: their passes run in the background, and they approve
# the job once it arrives.

# %%
stop = threading.Event()


def owner_passes() -> None:
    while not stop.is_set():
        bg.run_once(home=owner_home)
        if bg.pending(home=owner_home):
            bg.approve(f"{DS_EMAIL}/mean-age", "aggregate only", home=owner_home)
        stop.wait(0.5)


passes = threading.Thread(target=owner_passes, daemon=True)
passes.start()
job = bg.wait_for_completion(submission, timeout=600, poll=0.5)
stop.set()
passes.join()
print(job.status)
assert job.status == "done"

# %% [markdown]
# ## Logs and outputs

# %%
logs = job.logs()
print("exit code", logs.return_code)
print(logs.stdout)
print(job.output("result.json").read_text())
