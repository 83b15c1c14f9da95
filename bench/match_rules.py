"""How long one approve pass takes to match 1,000 pending jobs of 20 files against 100 rules.

Run: .venv/bin/python bench/match_rules.py [--jobs N] [--rules N] [--files N] [--keep]

Every job has the exact path set of some rule, so every job is hashed (the worst
case for matching); all but --matching of them differ from their rule in one
byte and stay pending, the others are approved (snapshot included). Printed:
the first pass (nothing cached yet), a second pass over the same pending jobs
(cache by file stat), and a whole pass (sync + approve, the checkpoint saved).
Target: the first approve pass under 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syft_bg_app.config.load import load_config, render_sample  # noqa: E402
from syft_bg_app.context import Context  # noqa: E402
from syft_bg_app.datasite.layout import Datasite  # noqa: E402
from syft_bg_app.passes import run_pass  # noqa: E402
from syft_bg_app.steps import approve
from syft_bg_app.store.home import AppHome  # noqa: E402
from syft_bg_app.sync import local as sync

DO = "owner@bench.example"
TARGET_SECONDS = 2.0


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rule_files(k: int, files: int) -> dict[str, bytes]:
    out = {"run.sh": f"#!/bin/bash\ncd code && python main_{k}.py\n".encode()}
    for i in range(files - 1):
        body = f"# rule {k} file {i}\n" + "x = [i * i for i in range(100)]\n" * 40
        out[f"code/pkg_{k}/mod_{i}.py"] = body.encode()
    return out


def build(root: Path, n_jobs: int, n_rules: int, n_files: int, matching: int) -> AppHome:
    home = AppHome(root / "home")
    home.ensure()
    syftbox = root / "SyftBox"
    text = render_sample(DO, str(syftbox))
    home.config_file.write_text(text)
    data = yaml.safe_load(text)
    contents = [rule_files(k, n_files) for k in range(n_rules)]
    data["approve"]["auto_approvals"] = [
        {"name": f"rule-{k}", "peers": [], "files": {p: sha(b) for p, b in files.items()}}
        for k, files in enumerate(contents)
    ]
    data["notify"]["enabled"] = False
    data["execute"]["enabled"] = False
    home.config_file.write_text(yaml.safe_dump(data))
    datasite = Datasite(syftbox, DO)
    datasite.ensure_base_layout()
    scientists = [f"ds{d}@uni{d}.example" for d in range(10)]
    for ds in scientists:
        datasite.ensure_peer_folders(ds)
    past = time.time() - 3600
    for j in range(n_jobs):
        ds = scientists[j % len(scientists)]
        k = j % n_rules
        folder = datasite.inbox / ds / "v1" / f"job-{j}"
        files = dict(contents[k])
        if j >= matching:
            # One byte off in the last file: same paths, so it is hashed, and stays pending.
            last = sorted(files)[-1]
            files[last] = files[last][:-1] + b"!"
        for rel, body in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            os.utime(path, (past, past))
        meta = {"name": f"job-{j}", "type": "bash", "files": [], "version": "1"}
        (folder / "config.yaml").write_text(yaml.safe_dump(meta))
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--matching", type=int, default=0, help="jobs that match exactly")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="syft-bg-bench-"))
    try:
        t0 = time.perf_counter()
        home = build(root, args.jobs, args.rules, args.files, args.matching)
        config = load_config(home.config_file)
        ctx = Context.open(home, config)
        sync.run(ctx)
        ctx.state.save()
        pending = sum(1 for _, _, r in ctx.state.iter_jobs() if r["status"] == "pending")
        setup = time.perf_counter() - t0
        print(
            f"{pending} pending jobs of {args.files} files, {args.rules} rules "
            f"(set up in {setup:.1f} s, {root})"
        )

        t0 = time.perf_counter()
        approve.run(ctx)
        first = time.perf_counter() - t0
        ctx.state.save()
        t0 = time.perf_counter()
        approve.run(ctx)
        second = time.perf_counter() - t0
        ctx.state.save()
        whole = run_pass(home)
        approved = ctx.counts["approved"]

        verdict = "ok" if first < TARGET_SECONDS else "OVER TARGET"
        print(
            f"approve pass, first (hashes {pending * args.files} files): {first:.3f} s "
            f"[{verdict}, target < {TARGET_SECONDS:.0f} s], {approved} approved"
        )
        print(f"approve pass, again (nothing changed, cached):   {second:.3f} s")
        print(f"whole pass afterwards (sync + approve + save):      {whole.summary}")
        return 0 if first < TARGET_SECONDS else 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
