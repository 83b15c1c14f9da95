"""The prepare phase (``execute.prepare: uv``): the app fetches a job's packages, then
the job runs offline.

Before a run starts, the app itself (never the job) reads what the approved
``run.sh`` asks uv for: the Python version of ``uv venv --python X`` (only one
installed here: no interpreter is downloaded) and the packages of literal ``uv
pip install`` / ``pip install`` lines, plus ``config.yaml``'s dependencies for a
python job. It fetches them as wheels only (``--no-build``: nothing the data
scientist wrote executes here) into one uv cache shared by all jobs. The job
then runs with network off, uv offline and pointed at that cache: under bwrap
the cache's folders are mounted read-only inside a small writable folder for
uv's locks, without bwrap a folder of links to them stands in its place.

Package names are text the data scientist wrote: each must be a plain
requirement (name, extras, version specifiers) or the job does not start;
options, URLs, paths and requirements files never reach uv, and the names are
passed after ``--`` in an argument list, never through a shell.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from syft_bg_app.config.load import Config
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.errors import SyftBgError
from syft_bg_app.execution import sandbox
from syft_bg_app.execution.sandbox import RunLayout

# uv's cache, shared by every job of this app home; it sits with the run folders,
# outside the app home, so a job's mounts never name the app home.
CACHE_FOLDER = "uv-cache"
IN_BWRAP_CACHE = sandbox.IN_BWRAP["uv_cache"]
# One uv call of the prepare phase may take this long (the pass waits for it).
FETCH_TIMEOUT = 300
# Enough of run.sh to find its install lines.
RUN_SH_READ = 256 * 1024
# Cache folders uv writes to whenever it starts (an interpreter's details, a marker
# file among source builds): they stay the run's own. Nothing is built from source,
# so the shared source-build folder holds nothing a job needs.
PER_RUN_BUCKETS = ("interpreter-", "sdists-")
# A requirement as a data scientist writes it: name, extras, version specifiers.
# No markers, URLs, paths or options: nothing uv would read as anything but a name.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"
_VERSION = r"[A-Za-z0-9.*+!_-]{1,64}"
_SPECIFIER = rf"(?:===|==|~=|!=|<=|>=|<|>)\s*{_VERSION}"
REQUIREMENT = re.compile(
    rf"^({_NAME})\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
    rf"\s*(?:{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*)?$"
)
# Names that look like files: uv would take them for a wheel, an archive or a list.
_FILE_SUFFIXES = (".whl", ".gz", ".bz2", ".xz", ".zip", ".tar", ".tgz", ".txt", ".in", ".py")
_FILE_SUFFIXES += (".toml", ".cfg", ".egg", ".lock")
# What `uv venv --python X` may ask for: a version of CPython 3.
PYTHON_VERSION = re.compile(r"^(?:python|cpython-?)?(3(?:\.\d{1,2}){0,2})$")
# Flags of an install line that change nothing about what is fetched.
HARMLESS_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "-U", "--upgrade"})
# Install commands the prepare phase does not resolve (the job then runs offline).
UNRESOLVED_INSTALLS = re.compile(
    r"(?:^|[\s;&|(])(uv\s+sync|uv\s+add|uv\s+run\b[^\n]*--with\b|uvx|uv\s+tool\s+(?:run|install))\b"
)
_PIP_INSTALL = re.compile(r"\bpip3?\s+install\s+\S")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATOR_CHARS = frozenset("();<>|&")
_PYTHON_WORD = re.compile(r"^python(?:3(?:\.\d{1,2})?)?$")
_SHOWN = 60


class PrepareError(SyftBgError):
    """The job's packages cannot be prepared: it does not start, for this reason."""

    exit_code = 1


@dataclass
class InstallLine:
    """The packages one install line of run.sh asks for, and the Python they are for."""

    line: int
    requirements: list[str]
    python: str | None


@dataclass
class Wanted:
    """What a job's run.sh asks uv for, as far as the prepare phase resolves it."""

    installs: list[InstallLine] = field(default_factory=list)
    pythons: list[str] = field(default_factory=list)
    # Install commands seen that the prepare phase leaves alone (`uv sync`, ...), as shown.
    unresolved: list[str] = field(default_factory=list)

    @property
    def packages(self) -> list[str]:
        return list(dict.fromkeys(r for install in self.installs for r in install.requirements))


@dataclass(frozen=True)
class PreparedCache:
    """How a prepared run sees the shared cache: extra environment, and for bwrap
    the mounts (bwrap option, source, place) that show it."""

    env: dict[str, str]
    mounts: list[tuple[str, str, str]]


def enabled(config: Config) -> bool:
    return config.get("execute.prepare") == "uv"


def cache_dir(runs_dir: Path) -> Path:
    """The shared uv cache of the app home whose run folders are in ``runs_dir``."""
    return runs_dir / CACHE_FOLDER


# -- reading what a job asks for --------------------------------------------------------


def shown(text: str) -> str:
    """Someone else's token, quoted and short, for a message."""
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 1] + "…"
    return f"`{text}`"


def check_requirement(text: str, where: str) -> str:
    """``text`` when it is a plain requirement; else PrepareError saying why not."""
    if text.startswith("-"):
        kind = "a requirements file" if text in ("-r", "--requirement", "-c") else "an option"
        raise PrepareError(f"{where}: {shown(text)} is {kind}, {_TAKES}")
    match = REQUIREMENT.match(text)
    if not match or len(text) > 200:
        if "$" in text or "`" in text:
            what = "a shell expansion"
        elif "://" in text or text.startswith("git+") or "@" in text:
            what = "a URL"
        elif text.startswith((".", "/", "~")) or "/" in text or "\\" in text:
            what = "a path"
        else:
            what = "not a package name"
        raise PrepareError(f"{where}: {shown(text)} is {what}, {_TAKES}")
    if match.group(1).lower().endswith(_FILE_SUFFIXES):
        raise PrepareError(f"{where}: {shown(text)} names a file, {_TAKES}")
    return text


_TAKES = (
    "and with execute.prepare: uv the data owner fetches only package names with optional "
    "extras and versions (e.g. numpy==2.1) from install lines: no options, URLs, paths or "
    "requirements files"
)


def read_wanted(run_sh: bytes, dependencies: object = None) -> Wanted:
    """The install lines and Python versions of ``run_sh``, validated; PrepareError
    names the first thing refused. ``dependencies``: config.yaml's, of a python job."""
    wanted = Wanted()
    text = run_sh.decode("utf-8", "replace").replace("\r\n", "\n")
    python: str | None = None
    for number, line in _logical_lines(text):
        uncommented = re.sub(r"(?:^|\s)#.*$", "", line)
        for match in UNRESOLVED_INSTALLS.finditer(uncommented):
            wanted.unresolved.append(f"`{' '.join(match.group(1).split())}`")
        try:
            commands = _commands(line)
        except ValueError:
            if re.search(r"\bpip3?\s+install\b|\buv\s+venv\b", line):
                raise PrepareError(
                    f"run.sh line {number}: its quoting cannot be read as one simple command, "
                    "and with execute.prepare: uv install lines must be"
                ) from None
            continue
        installs_before = len(wanted.installs)
        for words in commands:
            where = f"run.sh line {number}"
            if words[:2] == ["uv", "venv"]:
                python = _venv_python(words[2:], where) or python
                if python and python not in wanted.pythons:
                    wanted.pythons.append(python)
                continue
            arguments = _install_arguments(words)
            if arguments is None:
                continue
            requirements = []
            for word in arguments:
                if word in HARMLESS_FLAGS:
                    continue
                requirements.append(check_requirement(word, where))
            if requirements:
                wanted.installs.append(InstallLine(number, requirements, python))
        if len(wanted.installs) == installs_before and _PIP_INSTALL.search(uncommented):
            wanted.unresolved.append(f"a pip install that is no simple command (line {number})")
    if isinstance(dependencies, list) and dependencies:
        listed = [
            check_requirement(str(dep).strip(), "config.yaml dependencies") for dep in dependencies
        ]
        extra = [r for r in listed if r not in wanted.packages]
        if extra:
            wanted.installs.append(InstallLine(0, extra, python))
    return wanted


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with backslash-newline continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.split("\n"), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        lines.append((start, pending + raw))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def _commands(line: str) -> list[list[str]]:
    """The simple commands of one line, as bash would split its words (no expansion:
    a word holding ``$`` or a backquote is kept as written and refused later)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= _SEPARATOR_CHARS:
            if token[0] in "<>" and commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the descriptor of a redirection (2>&1)
            commands.append([])
            continue
        commands[-1].append(token)
    result = []
    for words in commands:
        while words and _ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words:
            result.append(words)
    return result


def _install_arguments(words: list[str]) -> list[str] | None:
    """What follows the install command of ``words``; None when it is no install."""
    if words[:3] == ["uv", "pip", "install"]:
        return words[3:]
    if words[0] in ("pip", "pip3") and words[1:2] == ["install"]:
        return words[2:]
    if _PYTHON_WORD.match(words[0]) and words[1:4] == ["-m", "pip", "install"]:
        return words[4:]
    return None


def _venv_python(arguments: list[str], where: str) -> str | None:
    """The Python version a ``uv venv`` line asks for, validated (None: none asked)."""
    asked = None
    for index, word in enumerate(arguments):
        if word in ("--python", "-p"):
            asked = arguments[index + 1] if index + 1 < len(arguments) else ""
        elif word.startswith("--python="):
            asked = word.split("=", 1)[1]
    if asked is None:
        return None
    match = PYTHON_VERSION.match(asked)
    if not match:
        raise PrepareError(
            f"{where}: uv venv asks for Python {shown(asked)}; with execute.prepare: uv the "
            f"data owner resolves only a version number of a Python installed here (e.g. 3.11)"
        )
    return match.group(1)


# -- fetching -----------------------------------------------------------------------------


def prepare_run(
    ctx: Context, ref: JobRef, layout: RunLayout, mode: str, run_as: int | None
) -> PreparedCache | None:
    """Fetch what the run's ``run.sh`` asks uv for into the shared cache and return how
    the run sees it; None when execute.prepare is none. PrepareError: the job does not
    start, for the reason given (it names the package and why)."""
    if not enabled(ctx.config):
        return None
    wanted = read_wanted(_read_run_sh(layout), _dependencies(ctx, ref))
    # Beside the run folders, wherever the backend keeps them (a cluster's shared folder).
    cache = cache_dir(layout.root.parent)
    cache.mkdir(exist_ok=True)
    # Jobs of other uids pass through it (without bwrap, as links to its folders).
    os.chmod(cache, 0o755)
    uv = sandbox.find_tools(["uv"]).get("uv")
    if uv is None:
        raise PrepareError(
            "uv, which the data owner's execute.prepare: uv needs, is not installed with "
            "this app (the data owner's syft-bg setup-status says how to fix it)"
        )
    scratch = layout.root / ".prepare"
    scratch.mkdir(mode=0o700, exist_ok=True)
    try:
        env = _fetch_environment(ctx.config, cache, scratch)
        for version in wanted.pythons:
            _check_python(uv, version, env)
        fetched = []
        for number, install in enumerate(wanted.installs):
            fetched.append(_fetch(uv, install, env, scratch / f"target-{number}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if "index" in fetched and sandbox.running_as_root():
        _readable_by_jobs(cache)
    if wanted.installs:
        ctx.log("execute").info(
            "prepared %d package(s) for %s (%s)",
            len(wanted.packages),
            ref.label,
            "all from the cache" if all(f == "cache" for f in fetched) else "fetched",
        )
    return _run_view(cache, layout, mode, run_as)


def _readable_by_jobs(cache: Path) -> None:
    """uv writes its cache files 0600; jobs of an app run by root run as other uids
    (nobody, or a uid of their own) and must read them, never write them."""
    for dirpath, dirnames, filenames in os.walk(cache):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue
            wanted = info.st_mode | stat.S_IRGRP | stat.S_IROTH
            if info.st_mode & stat.S_IXUSR or stat.S_ISDIR(info.st_mode):
                wanted |= stat.S_IXGRP | stat.S_IXOTH
            if wanted != info.st_mode:
                os.chmod(path, stat.S_IMODE(wanted))


def _read_run_sh(layout: RunLayout) -> bytes:
    fd = os.open(layout.job / "run.sh", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(RUN_SH_READ)


def _dependencies(ctx: Context, ref: JobRef) -> object:
    """config.yaml's dependencies of a python job (metadata: only what to fetch)."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError:
        return None
    try:
        metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    finally:
        os.close(job_fd)
    if not isinstance(metadata, dict) or str(metadata.get("type") or "").lower() != "python":
        return None
    return metadata.get("dependencies")


def _fetch_environment(config: Config, cache: Path, scratch: Path) -> dict[str, str]:
    """uv's environment for the prepare phase: none of the data owner's uv settings,
    no interpreter downloads, the system's Pythons only (those jobs see)."""
    env = {
        "PATH": sandbox.SYSTEM_PATH,
        "HOME": str(scratch),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "UV_CACHE_DIR": str(cache),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON_PREFERENCE": "only-system",
    }
    # The data owner's own way out (a proxy), for the app's fetch; jobs never get it.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    index = config.get("execute.package_index_url")
    if index:
        env["UV_DEFAULT_INDEX"] = index
    return env


def _uv(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run uv in the pass's own process group (a pass stopped takes it along), with a
    timeout; files it writes are readable by jobs of other uids (umask 022)."""
    try:
        return subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=FETCH_TIMEOUT,
            umask=0o022,
        )
    except subprocess.TimeoutExpired:
        raise PrepareError(
            f"fetching its packages did not finish in {FETCH_TIMEOUT} s (the data owner's "
            f"package index is slow or unreachable); the data owner can run it again"
        ) from None


def _check_python(uv: str, version: str, env: dict[str, str]) -> None:
    result = _uv([uv, "python", "find", "--no-config", "--", version], env)
    if result.returncode != 0:
        from syft_bg_app.execution.supervisor import system_pythons

        installed = ", ".join(system_pythons()) or "none"
        raise PrepareError(
            f"the job asks for Python {version} (uv venv --python {version}), which is not "
            f"installed on this machine (installed: {installed}), and the prepare phase "
            f"downloads no interpreters: ask for an installed version"
        )


def _fetch(uv: str, install: InstallLine, env: dict[str, str], target: Path) -> str:
    """Install one line's packages into a throwaway folder, which fills the cache:
    from the cache alone when it has them (the index is not asked), else from the
    index. Returns "cache" or "index"."""
    argv = [uv, "pip", "install", "--no-config", "--no-build", "--target", str(target)]
    argv += ["--python", install.python or "python3"]
    for source, extra in (("cache", ["--offline"]), ("index", [])):
        result = _uv([*argv, *extra, "--", *install.requirements], env)
        if result.returncode == 0:
            return source
    where = "config.yaml dependencies" if install.line == 0 else f"run.sh line {install.line}"
    raise PrepareError(f"{where}: {explain_failure(result.stderr, install.requirements)}")


def explain_failure(stderr: str, requirements: list[str]) -> str:
    """Why uv could not fetch ``requirements``, naming the package, in words the data
    scientist can act on (uv's own words follow, shortened)."""
    said = " ".join(
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("Using ", "Resolved ", "Prepared "))
    )
    uv_words = re.sub(r"\s+", " ", said)[:400] or "uv printed nothing"
    no_wheel = re.search(r"Wheels are required for `([^`]+)`", stderr) or re.search(
        r"Because (\S+?)(?:==\S+)? has no usable wheels", stderr
    )
    if no_wheel:
        return (
            f"{shown(no_wheel.group(1))} has no wheel for this machine (only source), and "
            f"the prepare phase fetches wheels only: nothing is built from source. Ask for "
            f"a version (or a package) published as a wheel (uv: {uv_words})"
        )
    missing = re.search(r"Because (\S+?) was not found in the package registry", stderr)
    if missing:
        return (
            f"{shown(missing.group(1))} was not found in the data owner's package index "
            f"(uv: {uv_words})"
        )
    if "Failed to fetch" in stderr or "error sending request" in stderr:
        return (
            f"the data owner's machine could not reach the package index to fetch "
            f"{', '.join(shown(r) for r in requirements[:5])}; the data owner can run it "
            f"again (uv: {uv_words})"
        )
    return f"uv could not fetch {', '.join(shown(r) for r in requirements[:5])} (uv: {uv_words})"


# -- what the run sees --------------------------------------------------------------------


def _run_view(cache: Path, layout: RunLayout, mode: str, run_as: int | None) -> PreparedCache:
    """The cache as the run sees it: its folders read-only (bwrap: mounted; without
    bwrap: links to folders the job's uid cannot write when the app runs as root),
    inside a folder of the run's own where uv keeps its locks."""
    buckets = sorted(
        entry.name
        for entry in os.scandir(cache)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(PER_RUN_BUCKETS)
    )
    env = {"UV_OFFLINE": "1", "UV_NO_BUILD": "1", "UV_PYTHON_DOWNLOADS": "never"}
    if mode == "bwrap":
        env["UV_CACHE_DIR"] = IN_BWRAP_CACHE
        mounts = [("--ro-bind", str(cache / name), f"{IN_BWRAP_CACHE}/{name}") for name in buckets]
        return PreparedCache(env, mounts)
    view = layout.tmp / CACHE_FOLDER
    view.mkdir(mode=0o700)
    for name in buckets:
        (view / name).symlink_to(cache / name)
    if run_as is not None:
        os.chown(view, run_as, run_as)
        for name in buckets:
            os.lchown(view / name, run_as, run_as)
    env["UV_CACHE_DIR"] = str(view)
    return PreparedCache(env, [])


def status_line(config: Config, runs_dir: Path) -> tuple[bool, str]:
    """(ok, what) of the prepare phase for setup-status: uv there, the cache writable."""
    uv = sandbox.find_tools(["uv"]).get("uv")
    if uv is None:
        return False, "uv: execute.prepare is uv but uv is not installed with this app"
    cache = cache_dir(runs_dir)
    probe = cache if cache.is_dir() else runs_dir if runs_dir.is_dir() else runs_dir.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return False, f"uv: the package cache {cache} cannot be written"
    return True, (
        f"uv: packages of install lines are fetched as wheels into {cache} before each run; "
        f"jobs then run with network off"
    )
