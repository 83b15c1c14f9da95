"""Build a synthetic syft-job v1 datasite and an app home for benchmarks.

    .venv/bin/python bench/make_datasite.py DIR --history N --peers M --pending K --rules R

writes DIR/SyftBox (the datasite of owner@bench.example) and DIR/home (the app
home with config.yaml): N historical jobs (done, failed, rejected, and ten
still pending), M accepted peers, K new (not yet received) jobs of FILES files each, and
R auto-approval rules (one of which matches every pending job when
--matching is given).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import yaml

DO_EMAIL = "owner@bench.example"
HISTORY_STATUSES = ("done", "done", "done", "failed", "rejected")
OPEN_JOBS = 10  # of the history, this many are still pending review


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def job_files(index: int, files: int, variant: str = "") -> dict[str, bytes]:
    """run.sh plus code/ files; ``variant`` changes the bytes of one file."""
    out = {"run.sh": b"#!/bin/bash\nset -e\ncd code\npython3 main.py\n"}
    out["code/main.py"] = f"print('job {variant}')\n".encode()
    for j in range(files - 2):
        out[f"code/lib/mod_{j:02d}.py"] = f"VALUE_{j} = {j}\n".encode()
    return out


def write_job(
    datasite: Path, ds_email: str, name: str, files: dict[str, bytes], status: str | None
) -> None:
    inbox = datasite / "app_data/job/inbox" / ds_email / "v1" / name
    for rel, data in files.items():
        _write(inbox / rel, data)
    code_files = sorted(rel[len("code/") :] for rel in files if rel.startswith("code/"))
    meta = {
        "canonical_name": "JobSubmissionMetadata",
        "version": "1",
        "name": name,
        "type": "bash",
        "submitted_at": "2026-01-01T00:00:00Z",
        "files": code_files,
        "dependencies": [],
        "job_type": "local",
    }
    _write(inbox / "config.yaml", yaml.safe_dump(meta))
    if status is not None:
        state = {
            "canonical_name": "JobState",
            "version": "1",
            "status": status,
            "received_at": "2026-01-01T00:00:01Z",
            "return_code": 0 if status == "done" else None,
        }
        _write(
            datasite / "app_data/job/review" / ds_email / "v1" / name / "state.yaml",
            yaml.safe_dump(state),
        )


def peer_email(i: int) -> str:
    return f"ds{i:03d}@lab{i % 7}.example"


def build(
    target: Path,
    history: int,
    peers: int,
    pending: int,
    rules: int,
    files: int = 20,
    matching: bool = True,
) -> tuple[Path, Path]:
    root, home = target / "SyftBox", target / "home"
    datasite = root / DO_EMAIL
    (datasite / "app_data/job/peers").mkdir(parents=True, exist_ok=True)
    for i in range(peers):
        email = peer_email(i)
        for kind, access in (("inbox", "write"), ("review", "read")):
            perm = {
                "rules": [
                    {
                        "pattern": "**",
                        "access": {"admin": [], "read": [], "write": [], access: [email]},
                    }
                ],
                "terminal": False,
            }
            _write(datasite / "app_data/job" / kind / email / "syft.pub.yaml", yaml.safe_dump(perm))
    for i in range(history):
        status = "pending" if i < OPEN_JOBS else HISTORY_STATUSES[i % len(HISTORY_STATUSES)]
        write_job(datasite, peer_email(i % peers), f"old-{i:05d}", job_files(i, 3, f"h{i}"), status)
    rule_list = []
    for r in range(rules):
        variant = "match" if (matching and r == rules - 1) else f"rule{r}"
        wanted = job_files(0, files, variant)
        rule_list.append(
            {"name": f"rule-{r:03d}", "files": {k: _sha(v) for k, v in wanted.items()}}
        )
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    config = {
        "do_email": DO_EMAIL,
        "syftbox_root": str(root),
        "approve": {"auto_approvals": rule_list},
        "execute": {"enabled": False},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    return root, home


def add_pending(root: Path, count: int, peers: int, files: int = 20, tag: str = "new") -> None:
    datasite = root / DO_EMAIL
    for i in range(count):
        write_job(
            datasite, peer_email(i % peers), f"{tag}-{i:05d}", job_files(i, files, "match"), None
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--pending", type=int, default=0)
    parser.add_argument("--rules", type=int, default=0)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    root, home = build(args.dir, args.history, args.peers, args.pending, args.rules, args.files)
    add_pending(root, args.pending, args.peers, args.files)
    print(f"SyftBox folder: {root}\napp home: {home}  (SYFT_BG_HOME={home})")


if __name__ == "__main__":
    main()
