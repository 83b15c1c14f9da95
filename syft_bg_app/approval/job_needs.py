"""What a job needs that the sandbox here will not give it, read from its ``run.sh``
before it runs: network for package installs, a Python version, uv.

The warnings are for the data owner at approval time (``jobs approve``, ``jobs show``,
the approval email); they never change what runs. ``config.yaml`` only hints
(``type``, ``dependencies``): ``run.sh`` is what runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

from syft_bg_app.config.load import Config
from syft_bg_app.context import Context
from syft_bg_app.datasite.jobfiles import open_regular
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.submission import read_metadata

# Enough of run.sh to see what it does; a longer one is read this far only.
RUN_SH_READ = 256 * 1024

# Commands that fetch packages from an index (uv run only with --with: bare
# ``uv run`` in a venv made offline may need nothing).
_INSTALLS = re.compile(
    rb"\b(?:uv\s+pip\s+install|pip3?\s+install|python3?(?:\.\d+)?\s+-m\s+pip\s+install"
    rb"|uv\s+sync|uv\s+add|uv\s+run\b[^\n]*--with\b|uvx\b|uv\s+tool\s+(?:run|install))"
)
# A Python version asked for: --python 3.12, --python=3.12, -p 3.12, python3.12.
_ASKED_VERSION = re.compile(
    rb"(?:--python[=\s]+[\"']?(?:python|cpython-?)?|\buv\s+(?:venv|run|sync)\b[^\n]*\s-p\s+)"
    rb"(3\.\d{1,2})\b|\bpython(3\.\d{1,2})\b"
)
_USES_UV = re.compile(rb"(?:^|[\s;&|(`$])uvx?\s")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def job_warnings(ctx: Context, ref: JobRef) -> list[str]:
    """Plain-text warnings about what ``ref`` needs and will not get here ([] when
    nothing, or when its ``run.sh`` cannot be read safely)."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError:
        return []
    try:
        try:
            fd = open_regular(job_fd, "run.sh")
        except OSError:
            return []
        with os.fdopen(fd, "rb") as handle:
            run_sh = handle.read(RUN_SH_READ)
        metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    finally:
        os.close(job_fd)
    return warnings_for(ctx.config, run_sh, metadata or {})


def warnings_for(config: Config, run_sh: bytes, metadata: dict) -> list[str]:
    """The warnings for a job whose ``run.sh`` holds ``run_sh`` under ``config``."""
    from syft_bg_app.execution import prepare
    from syft_bg_app.execution.sandbox import find_tools, job_network
    from syft_bg_app.execution.supervisor import system_pythons

    # Comments do not run.
    script = re.sub(rb"(?m)(?:^|\s)#.*$", b"", run_sh.replace(b"\r\n", b"\n")).lower()
    warnings: list[str] = []
    sandbox_mode = "none" if config.get("execute.sandbox") == "none" else "bwrap"
    net = job_network(config, sandbox_mode)
    python_hint = str(metadata.get("type") or "").lower() == "python"
    dependencies = metadata.get("dependencies")
    installs = bool(_INSTALLS.search(script))
    prepared = prepare.enabled(config)
    if prepared:
        warnings += _prepare_warnings(run_sh, dependencies if python_hint else None)
    elif installs:
        problem = _install_problem(config, net.mode)
        if problem:
            hint = ""
            if python_hint and isinstance(dependencies, list) and dependencies:
                hint = f" (config.yaml lists {len(dependencies)} dependencies)"
            warnings.append(f"this job installs packages{hint}, but {problem}")
    installed = system_pythons()
    asked = sorted(
        {(m.group(1) or m.group(2)).decode() for m in _ASKED_VERSION.finditer(script)},
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    for version in asked:
        if version not in installed:
            shown = ", ".join(installed) or "none"
            if prepared:
                outcome = (
                    "the prepare phase downloads no interpreters: the job will not start "
                    "unless it asks for an installed version"
                )
            elif net.mode == "off":
                outcome = (
                    "without network uv cannot download it: the job will fail unless it "
                    "asks for an installed version"
                )
            else:
                outcome = "uv will try to download it over the job's network"
            warnings.append(
                f"this job asks for Python {version}; installed here: {shown} ({outcome})"
            )
    if _USES_UV.search(script) and "uv" not in find_tools(
        [t for t in config.get("execute.tools") if t == "uv"]
    ):
        warnings.append(
            "this job runs uv, which jobs here do not get (add uv to execute.tools; "
            "syft-bg setup-status checks it): it will fail"
        )
    return warnings


def _prepare_warnings(run_sh: bytes, dependencies: object) -> list[str]:
    """What execute.prepare: uv will do with the job's installs, and what it will not."""
    from syft_bg_app.execution.prepare import PrepareError, read_wanted

    try:
        wanted = read_wanted(run_sh, dependencies)
    except PrepareError as exc:
        return [f"this job will not start: {exc}"]
    warnings = []
    if wanted.installs:
        count = len(wanted.packages)
        warnings.append(
            f"this job's installs will come from the prepared cache (execute.prepare: uv): "
            f"the app fetches its {count} package(s) as wheels before it runs, then the job "
            f"runs without network"
        )
    for command in dict.fromkeys(wanted.unresolved):
        warnings.append(
            f"this job installs packages with {command}, which the prepare phase does not "
            f"fetch (jobs run without network): it will fail unless uv finds them in the "
            f"prepared cache"
        )
    return warnings


def _install_problem(config: Config, mode: str) -> str | None:
    """Why installs will not reach an index under network ``mode`` (None: they may)."""
    index = config.get("execute.package_index_url") or ""
    if mode == "off":
        # Not even an index on this machine: the job's loopback is its own.
        wanted = config.get("execute.network")
        why = (
            "execute.network: off"
            if wanted == "off"
            else f"execute.network: {wanted} is not available here, see syft-bg setup-status"
        )
        return (
            f"jobs here run without network ({why}): it will fail unless everything it "
            f"installs is already in the job folder, or the data owner sets "
            f"execute.network: internet"
        )
    if mode == "internet" and (urlparse(index).hostname or "").lower() in _LOOPBACK_HOSTS:
        return (
            f"execute.package_index_url points at this machine's loopback ({index}), "
            f"which jobs under execute.network: internet cannot reach: it will fail"
        )
    return None
