"""What a pass costs as the datasite grows.

    .venv/bin/python bench/run.py [--quick] [--skip-syft-job]

Whole-process figures (wall, CPU, peak RSS; the median of several runs) of
`python -m syft_bg_app run --once`, as the schedule starts it, printed as a
markdown table: an idle pass at 100, 1,000 and 10,000 historical jobs beside a
bare interpreter that only imports yaml and filelock, and beside the same pass
with the idle check off; `bash run.sh` on an idle datasite against `python -c
pass`, in pairs run one after the other; a burst of 1,000 new jobs of 20 files
against 100 rules; and 200 trivial jobs taken from submission to done by this
app and by syft-job's own DO loop on the same datasite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_datasite  # noqa: E402
from installed import compile_app  # noqa: E402

PASS = [sys.executable, "-m", "syft_bg_app", "run", "--once"]
BARE = [sys.executable, "-c", "import yaml, filelock"]
EMPTY = [sys.executable, "-c", "pass"]
RUN_SH = ["bash", str(Path(__file__).resolve().parent.parent / "run.sh")]
IDLE_RECORD = "idle.record"


@dataclass
class Figure:
    wall: float
    cpu: float
    rss_mib: float


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> Figure:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0,):
        raise RuntimeError(f"{cmd} exited with {os.waitstatus_to_exitcode(status)}")
    return Figure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def median_of(cmd: list[str], env: dict[str, str] | None, runs: int) -> Figure:
    figures = [run_once(cmd, env) for _ in range(runs)]
    return Figure(
        statistics.median(f.wall for f in figures),
        statistics.median(f.cpu for f in figures),
        max(f.rss_mib for f in figures),
    )


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SYFT_BG_HOME"] = str(home)
    return env


def idle_pass(workdir: Path, history: int, runs: int) -> tuple[Figure, Figure, Figure, Path]:
    """(first pass over the history, median idle pass afterwards, the same with the
    idle check off, the app home)."""
    target = workdir / f"idle-{history}"
    _, home = make_datasite.build(target, history=history, peers=10, pending=0, rules=10)
    time.sleep(2.1)  # folders older than the racy window, as on a real datasite
    env = env_for(home)
    first = run_once(PASS, env)
    settle(home, env)
    checked = median_of(PASS, env, runs)
    config = home / "config.yaml"
    text = config.read_text()
    config.write_text(text + "\nschedule:\n  idle_check: false\n")
    full = median_of(PASS, env, runs)
    config.write_text(text)
    settle(home, env)
    return first, checked, full, home


def settle(home: Path, env: dict[str, str], limit: float = 120.0) -> None:
    """Passes until one leaves the idle record (nothing changed for the racy window)."""
    end = time.monotonic() + limit
    while not (home / IDLE_RECORD).exists():
        if time.monotonic() > end:
            raise RuntimeError(f"no pass left the idle record in {home} within {limit:.0f} s")
        time.sleep(0.5)
        run_once(PASS, env)


def paired(first: list[str], second: list[str], env: dict[str, str], runs: int) -> list[Figure]:
    """Medians of ``first`` and ``second`` run in turns, so both see the same machine."""
    figures: list[list[Figure]] = [[], []]
    for _ in range(runs):
        figures[0].append(run_once(first, env))
        figures[1].append(run_once(second, env))
    return [
        Figure(
            statistics.median(f.wall for f in group),
            statistics.median(f.cpu for f in group),
            max(f.rss_mib for f in group),
        )
        for group in figures
    ]


def burst(workdir: Path, jobs: int, rules: int) -> Figure:
    target = workdir / "burst"
    root, home = make_datasite.build(target, history=100, peers=10, pending=0, rules=rules)
    env = env_for(home)
    run_once(PASS, env)
    make_datasite.add_pending(root, jobs, peers=10, files=20)
    return run_once(PASS, env)


def row(name: str, fig: Figure, note: str = "") -> str:
    cells = [name, f"{fig.wall * 1000:.0f} ms", f"{fig.cpu * 1000:.0f} ms"]
    cells += [f"{fig.rss_mib:.1f} MiB", note]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller burst")
    parser.add_argument("--skip-syft-job", action="store_true", help="skip the syft-job comparison")
    parser.add_argument("--idle-only", action="store_true", help="only the idle-pass rows")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    compile_app()
    workdir = Path(tempfile.mkdtemp(prefix="syft-bg-bench-"))
    lines = ["| what | wall | CPU | peak RSS | note |", "|---|---|---|---|---|"]
    try:
        bare = median_of(BARE, None, runs)
        lines.append(row("bare interpreter importing yaml, filelock", bare))
        idle = {}
        homes = {}
        for history in (100, 1000, 10000):
            first, idle[history], full, homes[history] = idle_pass(workdir, history, runs)
            lines.append(row(f"first pass over {history:,} historical jobs", first))
            lines.append(
                row(
                    f"idle pass, {history:,} historical jobs",
                    idle[history],
                    f"{idle[history].wall / bare.wall:.2f}x bare wall, "
                    f"{idle[history].cpu / bare.cpu:.2f}x CPU",
                )
            )
            lines.append(
                row(
                    f"idle pass, {history:,} historical jobs, idle check off",
                    full,
                    f"{full.wall / bare.wall:.2f}x bare wall, {full.cpu / bare.cpu:.2f}x CPU",
                )
            )
        empty, run_sh = paired(EMPTY, RUN_SH, env_for(homes[100]), max(runs, 15))
        lines.append(row("python -c pass (paired with the next row)", empty))
        lines.append(
            row(
                "bash run.sh, idle, 100 historical jobs",
                run_sh,
                f"{run_sh.wall / empty.wall:.2f}x python -c pass wall, "
                f"{run_sh.cpu / empty.cpu:.2f}x CPU; target <= 2x",
            )
        )
        ratio = idle[10000].wall / idle[100].wall
        lines.append(
            f"| idle 10,000 / idle 100 | {ratio:.2f}x | "
            f"{idle[10000].cpu / idle[100].cpu:.2f}x | | target <= 1.1x |"
        )
        if args.idle_only:
            return
        jobs = 200 if args.quick else 1000
        fig = burst(workdir, jobs, 100)
        lines.append(
            row(
                f"burst: {jobs:,} new jobs x 20 files, 100 rules",
                fig,
                "received, matched, emails queued",
            )
        )
        if not args.skip_syft_job:
            from compare_syft_job import compare

            lines.extend(compare(workdir, 200))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
