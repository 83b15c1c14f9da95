"""Drive requests and wall time of an idle pass over Google Drive, at 1, 10 and 100 peers.

Each data scientist is made in the local Drive server (tests/fake_drive.py) as
``add_peer`` makes them: their SyftBox folder and the inbox/outbox pair shared
with the owner. The app accepts them by domain, then idle passes are measured
as ``run --once`` processes, median of 7. Beside it, where the real syft-client
0.1.117 is installed (the tests' cached environment), the real client's own
data-owner ``sync()`` on the same Drive, its requests counted the same way.

    .venv/bin/python bench/drive_idle.py [PEERS ...]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the fake Drive's own helpers

from tests.fake_drive import FakeDrive  # noqa: E402

DO = "owner@datasite.org"
VERSION = "0.1.117"
RUNS = 7
CLIENT = (
    Path(os.environ.get("SYFT_BG_TEST_CACHE", Path.home() / ".cache" / "syft-bg-tests"))
    / "syft-client-0.1.117"
)


def add_peers(drive: FakeDrive, count: int) -> None:
    for i in range(count):
        drive.add_peer_folders(f"ds{i}@uni.edu", DO, VERSION)


def one_pass(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "syft_bg_app", "run", "--once"],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def measure_app(drive: FakeDrive, tmp: Path, peers: int) -> tuple[float, float]:
    env = dict(os.environ, SYFT_BG_HOME=str(tmp / "home"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "syft_bg_app",
            "init",
            "-e",
            DO,
            "-r",
            str(tmp / "SyftBox"),
            "--create",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    config_file = tmp / "home" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    token = drive.write_token(tmp / "do_token.json", DO)
    config["sync"] = {"transport": "drive"}
    config["drive"] = {"generation": "0.1", "api_endpoint": drive.url, "token": str(token)}
    config.setdefault("approve", {}).setdefault("peers", {})["approved_domains"] = ["uni.edu"]
    config_file.write_text(yaml.safe_dump(config))
    add_peers(drive, peers)
    for _ in range(3):  # requests read and accepted, then accepted on Drive
        one_pass(env)
    walls, requests = [], []
    for _ in range(RUNS):
        before = drive.count(DO)
        walls.append(one_pass(env))
        requests.append(drive.count(DO) - before)
    return statistics.median(requests), statistics.median(walls)


def measure_client(drive: FakeDrive, tmp: Path) -> tuple[float, float] | None:
    python = CLIENT / "bin" / "python"
    if not (CLIENT / ".complete").exists():
        return None
    token = drive.write_token(tmp / "notebook_token.json", DO)
    redirect = drive.client_redirect(tmp / "redirect")
    script = textwrap.dedent(
        f"""
        import sys, time, syft_client as sc
        c = sc.login_do(email={DO!r}, token_path={str(token)!r})
        for _ in range({RUNS}):
            print("READY", flush=True); sys.stdin.readline()
            started = time.perf_counter(); c.sync()
            print("WALL", time.perf_counter() - started, flush=True)
        """
    )
    env = dict(os.environ, HOME=str(tmp / "notebook"), PYTHONPATH=str(redirect))
    (tmp / "notebook").mkdir()
    process = subprocess.Popen(
        [str(python), "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    walls, requests = [], []
    assert process.stdout is not None and process.stdin is not None
    before = 0
    for line in process.stdout:
        if line.startswith("READY"):
            before = drive.count(DO)
            process.stdin.write("\n")
            process.stdin.flush()
        elif line.startswith("WALL"):
            requests.append(drive.count(DO) - before)
            walls.append(float(line.split()[1]))
    process.wait()
    return statistics.median(requests), statistics.median(walls)


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1, 10, 100]
    print("| peers | app idle pass: requests | wall | real client DO sync(): requests | wall |")
    print("|---|---|---|---|---|")
    for peers in counts:
        drive = FakeDrive().start()
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            requests, wall = measure_app(drive, tmp, peers)
            client = measure_client(drive, tmp)
            other = f"{client[0]:.0f} | {client[1] * 1000:.0f} ms" if client else "- | -"
            print(f"| {peers} | {requests:.0f} | {wall * 1000:.0f} ms | {other} |", flush=True)
        drive.stop()


if __name__ == "__main__":
    main()
