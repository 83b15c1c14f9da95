"""setup-status checks of this machine: the job sandbox (bwrap), the Slurm cluster
jobs run on (execute.backend: slurm), the network and tools python jobs need, the
schedule that runs passes, and the last pass."""

from __future__ import annotations

from datetime import datetime, timezone

from syft_bg_app.actions.setup_checks import Check
from syft_bg_app.config.load import Config
from syft_bg_app.store.home import AppHome


def sandbox_check(config: Config | None) -> Check:
    from syft_bg_app.execution.sandbox import fix_for, none_warning, probe_bwrap

    network = config.get("execute.network") if config else "internet"
    wanted = config.get("execute.sandbox") if config else "auto"
    where = config.path if config else "config.yaml"
    probe = probe_bwrap(network)
    if wanted == "none":
        fix = f"set execute.sandbox: auto in {where}"
        if not probe.ok:
            fix = f"{fix_for(probe)}\nthen {fix}"
        return Check(False, "bwrap", f"{none_warning()} ({probe.detail})", fix)
    if not probe.ok:
        return Check(
            False,
            "bwrap",
            f"{probe.detail}; approved jobs wait: with execute.sandbox: {wanted} they never "
            f"run without isolation",
            f"{fix_for(probe)}\n(or, to run jobs without isolation: execute.sandbox: none in "
            f"{where})",
        )
    return Check(True, "bwrap", probe.detail)


def internet_check(config: Config) -> Check:
    """Whether jobs under internet are kept off this machine and private networks:
    as root, by loading the app's nftables rules now (as each run does)."""
    from syft_bg_app.execution import netfilter

    where = config.path or "config.yaml"
    allow = config.get("execute.network_allow")
    if not netfilter.filtering_possible():
        return Check(
            True,
            "job network",
            netfilter.unfiltered_warning(),
            f"run the app as root, or write execute.network: off in {where}",
            warning=True,
        )
    problem = netfilter.install(netfilter.find_nft(), allow)
    if problem:
        return Check(
            False,
            "job network",
            f"{problem}: jobs run with network off",
            "the kernel needs nf_tables (sudo modprobe nf_tables), and the app CAP_NET_ADMIN "
            f"(a container may withhold it)\n(or, to keep jobs offline: execute.network: off "
            f"in {where})",
        )
    return Check(True, "job network", netfilter.blocked_words(allow))


def cluster_check(config: Config) -> Check | None:
    """With execute.backend: slurm, whether the cluster answers and the shared run
    folder is writable; None where jobs run on this machine."""
    if config.get("execute.backend") != "slurm":
        return None
    from syft_bg_app.execution.backends.slurm import check_cluster

    problems = check_cluster(config)
    if problems:
        return Check(
            False,
            "slurm",
            "; ".join(problems),
            "fix the above (see 'Running jobs on a cluster' in the README); approved jobs "
            "wait or fail to start until then",
        )
    run_folder = config.get("execute.slurm.run_folder")
    partition = config.get("execute.slurm.partition") or "the default partition"
    return Check(
        True, "slurm", f"sbatch, squeue and sacct answer; {partition}; runs in {run_folder}"
    )


def job_needs_checks(config: Config, home: AppHome) -> list[Check]:
    """What syft-job python jobs need from this machine: a network that reaches a
    package index (or the prepare phase), and uv."""
    from syft_bg_app.execution import prepare
    from syft_bg_app.execution.sandbox import INSTALL_SLIRP, find_tools, job_network

    where = config.path or "config.yaml"
    sandbox_mode = "none" if config.get("execute.sandbox") == "none" else "bwrap"
    net = job_network(config, sandbox_mode)
    checks = []
    if net.note and net.slirp4netns is None and sandbox_mode == "bwrap":
        checks.append(
            Check(
                False,
                "job network",
                net.note,
                f"{net.fix or INSTALL_SLIRP}\n(or, to keep jobs offline: execute.network: off "
                f"in {where})",
            )
        )
    elif net.note:
        checks.append(Check(True, "job network", net.note, warning=True))
    elif net.mode == "internet":
        checks.append(internet_check(config))
    else:
        described = {
            "off": "off: jobs have nothing but their own loopback (python jobs cannot "
            "install packages)",
            "host": "host: jobs share this machine's network, 127.0.0.1 services included",
        }
        if prepare.enabled(config):
            described["off"] = (
                "off: jobs have nothing but their own loopback; execute.prepare: uv fetches "
                "the packages of their install lines before they run"
            )
        checks.append(Check(True, "job network", described[net.mode], warning=net.mode == "host"))
    if "uv" not in config.get("execute.tools"):
        checks.append(
            Check(
                True,
                "uv",
                "not in execute.tools: syft-job python jobs (they run uv) fail",
                f"add uv to execute.tools in {where}",
                warning=True,
            )
        )
    elif "uv" in find_tools(["uv"]):
        checks.append(Check(True, "uv", f"{find_tools(['uv'])['uv']} (python jobs run it)"))
    else:
        checks.append(
            Check(
                False,
                "uv",
                "not found: syft-job python jobs (they run uv) fail",
                "reinstall the app's environment (rm -rf .venv beside run.sh, then run.sh), "
                "or: pip install uv",
            )
        )
    if prepare.enabled(config):
        ok, detail = prepare.status_line(config, home.runs_dir)
        fix = (
            None
            if ok
            else (
                "reinstall the app's environment (rm -rf .venv beside run.sh, then run.sh), "
                "or make the folder writable; or write execute.prepare: none"
            )
        )
        checks.append(Check(ok, "prepare", detail, fix))
    return checks


def schedule_check(home: AppHome, config: Config | None, state: dict) -> Check:
    from syft_bg_app.schedule import install as schedule

    try:
        info = schedule.inspect(home, state.get("last_pass"), ask_manager=False)
    except schedule.ScheduleError as exc:
        return Check(False, "schedule", str(exc), "syft-bg install")
    if info.hosted:
        return Check(True, "schedule", info.detail)
    if not info.installed and info.method is None:
        why = "; ".join(["nothing runs passes by itself", *info.problems])
        return Check(False, "schedule", why, "syft-bg install")
    if not info.installed:
        return Check(False, "schedule", "; ".join(info.problems), "syft-bg install")
    if not info.enabled:
        return Check(False, "schedule", f"{info.detail} is switched off", "syft-bg start")
    for problem in info.problems:
        if "cron daemon" in problem:
            return Check(
                False,
                "schedule",
                f"{info.detail}: {problem}",
                "sudo systemctl enable --now cron   (or: sudo service cron start)",
            )
        return Check(False, "schedule", problem, "syft-bg install")
    if config is not None:
        wanted = config.get("schedule.interval")
        if info.method == "cron":
            wanted = schedule.cron_expression(wanted)[1]
        if info.interval != wanted:
            return Check(
                False,
                "schedule",
                f"installed for every {info.interval} s, schedule.interval says {wanted} s",
                "syft-bg install",
            )
    return Check(True, "schedule", f"{info.detail}, every {info.interval} s")


def last_pass_check(config: Config | None, state: dict, now: datetime | None = None) -> Check:
    from syft_bg_app.actions.services import _ago
    from syft_bg_app.clock import parse_iso

    last = state.get("last_pass")
    if not last:
        return Check(
            False, "last pass", "no pass has run yet", "syft-bg run --once   (or ./run.sh)"
        )
    finished = parse_iso(last["finished_at"])
    now = now or datetime.now(timezone.utc)
    age = _ago(finished, now)
    if last.get("failed_steps"):
        steps = last["failed_steps"]
        return Check(
            False,
            "last pass",
            f"{age}, with failed steps: {', '.join(steps)}",
            f"syft-bg logs {steps[0] if len(steps) == 1 else 'all'}",
        )
    interval = config.get("schedule.interval") if config else 60
    if (now - finished).total_seconds() > 3 * max(interval, 60) + 60:
        return Check(
            False,
            "last pass",
            f"finished {age}, but passes should run every {interval} s",
            "syft-bg logs pass   (and run one now: syft-bg run --once)",
        )
    return Check(True, "last pass", f"finished {age}: {last.get('summary', '')}")
