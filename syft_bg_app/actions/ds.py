"""The data scientist's side: submitting jobs, asking to be a peer, following my jobs.

Submissions are written in the syft-job protocol v1 layout, with the same
``config.yaml`` fields the syft-job client writes, so the data owner's tools
(this app, syft-job, syft-client) read them alike:

    <DO datasite>/app_data/job/inbox/<me>/v1/<job>/{config.yaml, run.sh, code/}

A job folder appears in one ``rename``: it is built in a hidden ``*.tmp``
folder beside its final place (names sync clients do not upload and the app's
sync step skips), so nobody ever sees a half-written job. The job is built one
level down in that folder, where no reader of the layout looks for a job.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.clock import iso
from syft_bg_app.config.load import EMAIL_RE, load_config
from syft_bg_app.datasite.layout import CURRENT_PROTOCOL, PROTOCOL_DIR_RE, detect_datasite_path
from syft_bg_app.datasite.submission import (
    DESCRIPTION_CAP,
    MAX_TAGS,
    TAG_CAP,
    metadata_description,
    metadata_tags,
    read_metadata,
)
from syft_bg_app.errors import SyftBgError, UsageError
from syft_bg_app.store.atomic import fsync_dir
from syft_bg_app.store.fsutil import (
    PERMISSION_FILE,
    atomic_write_yaml,
    is_ignored_name,
    load_untrusted_yaml,
    untrusted_text,
)
from syft_bg_app.store.home import AppHome

DEFAULT_ROOT = "~/SyftBox"
SCRIPT_TYPES = {".py": "python", ".sh": "bash"}
# syft-job names the single script of a bash job code/script.sh; keeping that
# name means a DO's rule for a syft-job bash job matches ours as well.
BASH_SCRIPT_NAME = "script.sh"
MAX_NAME_LENGTH = 200
RESULT_SKIP = frozenset({"state.yaml", PERMISSION_FILE})
# The data owner writes state.yaml (syft-job's is well under 4 KiB).
STATE_CAP_BYTES = 256 * 1024
REASON_CAP = 4000
# A job is finished for wait_for_completion when the data owner decided it for good.
FINAL_STATUSES = frozenset({"done", "failed", "rejected"})
SCRIPT_SUFFIXES = {"python": ".py", "bash": ".sh"}


class SubmitError(SyftBgError):
    """A submission that cannot be written as asked (nothing was written)."""

    exit_code = 2


@dataclass(frozen=True)
class Identity:
    """Who I am (the data scientist) and where my SyftBox folder is."""

    email: str
    root: Path


def _email(value: str, what: str) -> str:
    email = value.strip().lower()
    if not EMAIL_RE.fullmatch(email):
        raise UsageError(f"{what}: {value!r} is not an email address")
    return email


def identify(
    home: AppHome, as_email: str | None = None, syftbox_root: str | os.PathLike | None = None
) -> Identity:
    """``--as`` / ``-r`` first, then this app's config (a person is usually DO and DS)."""
    config = None
    if (as_email is None or syftbox_root is None) and home.config_file.exists():
        config = load_config(home.config_file)
    if as_email is not None:
        email = _email(as_email, "--as")
    elif config is not None:
        email = config.do_email
    else:
        raise UsageError(
            "who is submitting? pass --as YOUR_EMAIL (or run syft-bg init -e YOUR_EMAIL "
            f"once; its email is used). No config at {home.config_file}"
        )
    if syftbox_root is not None:
        root = Path(syftbox_root).expanduser()
    elif config is not None:
        root = config.syftbox_root
    else:
        root = Path(DEFAULT_ROOT).expanduser()
    if not root.is_dir():
        raise UsageError(f"SyftBox folder {root} does not exist (pass -r SYFTBOX_FOLDER)")
    return Identity(email, root)


def _datasite(root: Path, do_email: str) -> Path:
    path = detect_datasite_path(root, do_email)
    if not path.is_dir():
        raise UsageError(
            f"no datasite of {do_email} in {root} (checked {root / do_email} and "
            f"{root / 'datasites' / do_email}); check the email, and that SyftBox has synced"
        )
    return path


def _job_root(datasite: Path) -> Path:
    return datasite / "app_data" / "job"


def is_peer(datasite: Path, me: str) -> bool:
    """The DO accepted me when my inbox folder carries its permission file."""
    return (_job_root(datasite) / "inbox" / me / PERMISSION_FILE).is_file()


# -- submitting ------------------------------------------------------------------


@dataclass
class Submission:
    """A job written to a data owner's inbox."""

    do_email: str
    ds_email: str
    name: str
    type: str
    entrypoint: str | None
    path: Path
    files: list[str]
    skipped: list[str] = field(default_factory=list)
    peer: bool = True

    @property
    def review_dir(self) -> Path:
        inbox = self.path.parent.parent.parent
        return inbox.parent / "review" / self.ds_email / self.path.parent.name / self.name


def validate_job_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise SubmitError("the job name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise SubmitError(f"the job name is longer than {MAX_NAME_LENGTH} characters")
    if "/" in name or "\\" in name or name.startswith("."):
        raise SubmitError(f"job name {name!r} may not contain / or \\ nor start with a dot")
    if any(not ch.isprintable() for ch in name):
        raise SubmitError(f"job name {name!r} contains control characters")
    if PROTOCOL_DIR_RE.match(name):
        raise SubmitError(f"job name {name!r} is reserved for protocol folders (v1, v2, ...)")
    if name.endswith((".tmp", ".log")) or name in ("__pycache__", ".venv"):
        raise SubmitError(f"job name {name!r} is a name sync clients never deliver")
    return name


def validate_description(description: str | None) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str):
        raise SubmitError(f"the description must be text, not {type(description).__name__}")
    description = description.strip()
    if len(description) > DESCRIPTION_CAP:
        raise SubmitError(f"the description is longer than {DESCRIPTION_CAP} characters")
    return description or None


def validate_tags(tags: Any) -> list[str]:
    """Tags as the data owner filters on them: short one-line words, no duplicates."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise SubmitError(f"a tag must be non-empty text, not {tag!r}")
        tag = tag.strip()
        if len(tag) > TAG_CAP or any(not ch.isprintable() for ch in tag):
            raise SubmitError(f"tag {tag!r} is longer than {TAG_CAP} characters or not printable")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise SubmitError(f"at most {MAX_TAGS} tags, not {len(out)}")
    return out


def _utf8_name(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _collect_folder(src: Path) -> tuple[list[str], list[str]]:
    """(files to send, files left out) under ``src``, as sorted relative posix paths.

    Left out are names sync clients never deliver and zero-byte files (which they
    skip too): listed in the manifest they would keep the job "still arriving"
    forever on the data owner's side.
    """
    files, skipped, refused = [], [], []
    for dirpath, dirnames, filenames in os.walk(src):
        base = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            rel = (base / name).relative_to(src).as_posix()
            if (base / name).is_symlink():
                refused.append(f"{rel} is a symlink")
            elif is_ignored_name(name, True):
                skipped.append(rel + "/")
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(src).as_posix()
            st = path.lstat()
            if not _utf8_name(rel):
                refused.append(f"{rel!r} is not a UTF-8 name")
            elif stat.S_ISLNK(st.st_mode):
                refused.append(f"{rel} is a symlink")
            elif not stat.S_ISREG(st.st_mode):
                refused.append(f"{rel} is not a regular file")
            elif name == PERMISSION_FILE:
                refused.append(f"{rel} is a SyftBox permission file")
            elif is_ignored_name(name, False) or st.st_size == 0:
                skipped.append(rel)
            else:
                files.append(rel)
    if refused:
        raise SubmitError(f"cannot submit {src}: " + "; ".join(refused))
    return sorted(files), sorted(skipped)


def _detect_entrypoint(src: Path, files: list[str]) -> str:
    top = [f for f in files if "/" not in f]
    for wanted in ("main.py",):
        if wanted in top:
            return wanted
    py = [f for f in top if f.endswith(".py")]
    if len(py) == 1:
        return py[0]
    for wanted in ("main.sh", "run.sh"):
        if wanted in top:
            return wanted
    sh = [f for f in top if f.endswith(".sh")]
    if not py and len(sh) == 1:
        return sh[0]
    raise SubmitError(
        f"cannot tell which file of {src} runs: no main.py, main.sh or single .py/.sh "
        "file at the top; name it with --entrypoint FILE"
    )


def _python_run_sh(entrypoint: str) -> str:
    # Runs from code/ so that relative paths (data files, outputs/) work as on
    # the DS's machine; python3 because the sandbox has no per-job venv.
    return (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        "cd code\n"
        "export PYTHONPATH=.:${PYTHONPATH:-}\n"
        f"exec python3 {shlex.quote(entrypoint)}\n"
    )


def _bash_folder_run_sh(entrypoint: str) -> str:
    return f"#!/bin/bash\nset -euo pipefail\ncd code\nexec bash {shlex.quote(entrypoint)}\n"


@dataclass
class _Plan:
    job_type: str
    entrypoint: str | None
    is_folder: bool
    # relative path in code/ -> source file
    sources: dict[str, Path]
    run_sh: bytes
    skipped: list[str]


def _plan(src: Path, entrypoint: str | None) -> _Plan:
    if src.is_symlink() and src.is_dir():
        src = src.resolve()
    if src.is_dir():
        files, skipped = _collect_folder(src)
        if not files:
            raise SubmitError(f"{src} has no files to submit")
        if entrypoint:
            entrypoint = entrypoint.replace("\\", "/").strip("/")
            if entrypoint not in files:
                hint = " (it is empty or ignored)" if entrypoint in skipped else ""
                raise SubmitError(f"--entrypoint {entrypoint} is not a file in {src}{hint}")
        else:
            entrypoint = _detect_entrypoint(src, files)
        job_type = SCRIPT_TYPES.get(Path(entrypoint).suffix)
        if job_type is None:
            raise SubmitError(f"the entrypoint must be a .py or .sh file, not {entrypoint}")
        run_sh = (
            _python_run_sh(entrypoint) if job_type == "python" else _bash_folder_run_sh(entrypoint)
        )
        return _Plan(
            job_type,
            entrypoint,
            True,
            {rel: src / rel for rel in files},
            run_sh.encode(),
            skipped,
        )
    if not src.is_file():
        raise SubmitError(f"{src} is neither a file nor a folder")
    job_type = SCRIPT_TYPES.get(src.suffix)
    if job_type is None:
        raise SubmitError(f"a single script must be a .py or .sh file, not {src.name}")
    if entrypoint and entrypoint != src.name:
        raise SubmitError(f"--entrypoint is for folders; {src} is the script that runs")
    data = src.read_bytes()
    if not data:
        raise SubmitError(f"{src} is empty")
    if job_type == "bash":
        # As syft-job: run.sh is the script itself, and code/ keeps a copy.
        return _Plan("bash", None, False, {BASH_SCRIPT_NAME: src}, data, [])
    return _Plan("python", src.name, False, {src.name: src}, _python_run_sh(src.name).encode(), [])


def _write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def _copy_file(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as reader, open(dest, "xb") as writer:
        shutil.copyfileobj(reader, writer)
        writer.flush()
        os.fsync(writer.fileno())
    os.chmod(dest, stat.S_IMODE(src.stat().st_mode) | 0o644)


def _existing(job_root: Path, me: str, name: str) -> Path | None:
    """Any folder that already claims (me, name): a job is keyed by both, in every layout."""
    for area in ("inbox", "review"):
        for folder in (
            job_root / area / me / f"v{CURRENT_PROTOCOL}" / name,
            job_root / area / me / name,
        ):
            if os.path.lexists(folder):
                return folder
    return None


def submit(
    ident: Identity,
    do_email: str,
    path: str | os.PathLike,
    name: str | None = None,
    entrypoint: str | None = None,
    description: str | None = None,
    tags: Any = None,
) -> Submission:
    """Write a syft-job v1 submission of ``path`` (a folder, or one .py/.sh script).

    ``description`` and ``tags`` go into config.yaml beside syft-job's fields
    (its client reads the file and ignores fields it does not know)."""
    do_email = _email(do_email, "DO_EMAIL")
    description = validate_description(description)
    tags = validate_tags(tags)
    src = Path(path).expanduser()
    if not os.path.lexists(src):
        raise SubmitError(f"{path} does not exist")
    src_abs = src.resolve()
    plan = _plan(src, entrypoint)
    default = src_abs.name if src_abs.is_dir() else src_abs.stem
    name = validate_job_name(name if name is not None else default)
    datasite = _datasite(ident.root, do_email)
    job_root = _job_root(datasite)
    taken = _existing(job_root, ident.email, name)
    if taken is not None:
        raise SubmitError(
            f"you already submitted a job named {name!r} to {do_email} ({taken}); "
            "choose another with --name"
        )
    parent = job_root / "inbox" / ident.email / f"v{CURRENT_PROTOCOL}"
    parent.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {
        "canonical_name": "JobSubmissionMetadata",
        "version": CURRENT_PROTOCOL,
        "name": name,
        "type": plan.job_type,
        "submitted_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "entrypoint": plan.entrypoint,
        "dependencies": [],
        "files": sorted(plan.sources),
        "is_folder_submission": plan.is_folder,
        "code_path": str(src_abs) if plan.job_type == "python" or plan.is_folder else None,
        "job_type": "local",
        "datasets": None,
        "headers": {},
    }
    if description is not None:
        metadata["description"] = description
    if tags:
        metadata["tags"] = tags
    target = parent / name
    staging = Path(tempfile.mkdtemp(prefix=".syft-bg-submit-", suffix=".tmp", dir=parent))
    built = staging / name
    try:
        for rel, source in sorted(plan.sources.items()):
            _copy_file(source, built / "code" / rel)
        _write_file(built / "run.sh", plan.run_sh, 0o755)
        _write_file(
            built / "config.yaml",
            yaml.safe_dump(metadata, default_flow_style=False, sort_keys=True).encode(),
        )
        for folder in sorted({p.parent for p in built.rglob("*")}, reverse=True):
            fsync_dir(folder)
        os.chmod(built, 0o755)
        appeared = SubmitError(f"{target} appeared while submitting; choose another --name")
        if os.path.lexists(target):
            raise appeared
        try:
            os.rename(built, target)
        except OSError as exc:
            # rename replaces only an empty folder; anything else is a name taken meanwhile.
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise appeared from None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(parent)
    return Submission(
        do_email=do_email,
        ds_email=ident.email,
        name=name,
        type=plan.job_type,
        entrypoint=plan.entrypoint,
        path=target,
        files=["run.sh"] + [f"code/{rel}" for rel in sorted(plan.sources)],
        skipped=plan.skipped,
        peer=is_peer(datasite, ident.email),
    )


def submit_script(
    ident: Identity,
    do_email: str,
    script_text: str,
    name: str,
    language: str = "python",
    description: str | None = None,
    tags: Any = None,
) -> Submission:
    """Submit one script given as text (a notebook cell), as ``submit`` does a file."""
    suffix = SCRIPT_SUFFIXES.get(language)
    if suffix is None:
        raise SubmitError(f"language must be one of {', '.join(SCRIPT_SUFFIXES)}, not {language!r}")
    if not isinstance(script_text, str) or not script_text.strip():
        raise SubmitError("the script is empty")
    name = validate_job_name(name)
    with tempfile.TemporaryDirectory(prefix="syft-bg-script-") as folder:
        script = Path(folder) / f"main{suffix}"
        script.write_text(script_text, encoding="utf-8")
        return submit(ident, do_email, script, name=name, description=description, tags=tags)


# -- peer requests -------------------------------------------------------------------


@dataclass
class PeerRequest:
    do_email: str
    ds_email: str
    path: Path
    status: str  # requested, accepted (already; nothing written)


def request_peer(ident: Identity, do_email: str, message: str | None = None) -> PeerRequest:
    """Write ``peers/<me>/request.yaml`` in the DO's datasite (the folder is my identity)."""
    do_email = _email(do_email, "DO_EMAIL")
    datasite = _datasite(ident.root, do_email)
    path = _job_root(datasite) / "peers" / ident.email / "request.yaml"
    if is_peer(datasite, ident.email):
        return PeerRequest(do_email, ident.email, path, "accepted")
    data: dict[str, Any] = {"email": ident.email, "requested_at": iso()}
    if message:
        data["message"] = message
    atomic_write_yaml(path, data)
    return PeerRequest(do_email, ident.email, path, "requested")


# -- my jobs ------------------------------------------------------------------------------


@dataclass
class MyJob:
    """One of my submissions, as the data owner's datasite shows it."""

    do_email: str
    name: str
    protocol: str
    status: str
    submitted_at: str | None
    type: str | None
    submission_dir: Path
    review_dir: Path
    results: list[str]
    state: dict[str, Any]
    description: str | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.do_email}/{self.name}"

    @property
    def reason(self) -> str | None:
        return untrusted_text(self.state.get("review_reason"), REASON_CAP, multiline=True)

    @property
    def results_dir(self) -> Path | None:
        return self.review_dir if self.results else None

    def output(self, path: str) -> Path:
        """The shared output file ``outputs/<path>`` (an error if it is not there)."""
        return job_output(self, path)

    def logs(self) -> JobLogs:
        """stdout, stderr and the exit code, as far as the data owner shares them."""
        return job_logs(self)


def _datasites(root: Path) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    for base in (root / "datasites", root):
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if "@" in entry.name and entry.is_dir() and entry.name not in found:
                found[entry.name] = Path(entry.path)
    return sorted(found.items())


def _read_state(path: Path) -> dict[str, Any]:
    """The data owner's state.yaml of one of my jobs: someone else's file, so it
    is read without following symlinks or blocking, capped, and without aliases."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError:
        return {"status": "unreadable"}
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return {"status": "unreadable"}
            raw = handle.read(STATE_CAP_BYTES + 1)
        if len(raw) > STATE_CAP_BYTES:
            return {"status": "unreadable"}
        data = load_untrusted_yaml(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


def _results(review_dir: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(review_dir):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(review_dir).as_posix()
            if rel not in RESULT_SKIP and not name.startswith(".syft-bg-tmp-"):
                out.append(rel)
    return out


def _my_job(do_email: str, job_root: Path, protocol: str, submission_dir: Path) -> MyJob:
    name = submission_dir.name
    me = submission_dir.parent.name if protocol == "0" else submission_dir.parent.parent.name
    segment = [f"v{protocol}"] if protocol != "0" else []
    review_dir = job_root.joinpath("review", me, *segment, name)
    state = _read_state(review_dir / "state.yaml")
    metadata, _ = read_metadata(submission_dir / "config.yaml")
    metadata = metadata or {}
    return MyJob(
        do_email=do_email,
        name=name,
        protocol=protocol,
        status=untrusted_text(state.get("status")) or "received",
        submitted_at=_text(metadata.get("submitted_at")),
        type=_text(metadata.get("type")),
        submission_dir=submission_dir,
        review_dir=review_dir,
        results=_results(review_dir),
        state=state,
        description=metadata_description(metadata),
        tags=metadata_tags(metadata),
    )


def my_jobs(ident: Identity, status: str | None = None) -> list[MyJob]:
    """My submissions to every datasite in the SyftBox folder, newest first."""
    jobs = []
    for do_email, datasite in _datasites(ident.root):
        job_root = _job_root(datasite)
        mine = job_root / "inbox" / ident.email
        for protocol, folder in ((CURRENT_PROTOCOL, mine / f"v{CURRENT_PROTOCOL}"), ("0", mine)):
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
                    continue
                if protocol == "0" and PROTOCOL_DIR_RE.match(entry.name):
                    continue
                job = _my_job(do_email, job_root, protocol, Path(entry.path))
                if status is None or job.status == status:
                    jobs.append(job)
    jobs.sort(key=lambda j: (j.submitted_at or "", j.do_email, j.name), reverse=True)
    return jobs


def my_job(ident: Identity, do_email: str, name: str) -> MyJob:
    """My job ``name`` at ``do_email``'s datasite, as it stands now."""
    do_email = _email(do_email, "DO_EMAIL")
    job_root = _job_root(_datasite(ident.root, do_email))
    mine = job_root / "inbox" / ident.email
    for protocol, folder in ((CURRENT_PROTOCOL, mine / f"v{CURRENT_PROTOCOL}"), ("0", mine)):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            return _my_job(do_email, job_root, protocol, path)
    raise UsageError(f"you have no job named {name!r} at {do_email} (see my_jobs())")


class WaitTimeout(SyftBgError):
    """The job did not finish in time; ``status`` is what it was last seen as."""

    exit_code = 1

    def __init__(self, label: str, status: str, timeout: float) -> None:
        super().__init__(f"{label} did not finish within {timeout:g} s; its status is {status}")
        self.label = label
        self.status = status


def refresh(job: MyJob | Submission) -> MyJob:
    """The job as the datasite shows it now (its folders say where it is)."""
    if isinstance(job, Submission):
        return _my_job(job.do_email, job.path.parents[3], CURRENT_PROTOCOL, job.path)
    depth = 2 if job.protocol == "0" else 3
    return _my_job(
        job.do_email, job.submission_dir.parents[depth], job.protocol, job.submission_dir
    )


def wait_for_completion(
    job: MyJob | Submission,
    timeout: float = 600.0,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> MyJob:
    """Poll my job until the data owner finished it (done, failed or rejected)."""
    if timeout < 0 or poll <= 0:
        raise UsageError("timeout must be 0 or more and poll more than 0 seconds")
    deadline = time.monotonic() + timeout
    while True:
        current = refresh(job)
        if current.status in FINAL_STATUSES:
            return current
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(current.label, current.status, timeout)
        sleep(min(poll, left))


@dataclass(frozen=True)
class JobLogs:
    """What my job printed and how it ended (None: not there, or not shared)."""

    stdout: str | None
    stderr: str | None
    return_code: int | None


def _result_path(review_dir: Path, rel: str) -> Path:
    """``rel`` inside ``review_dir``, reached without a link: the folder is the DO's."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        raise UsageError(f"{rel!r} is not a path inside the job's results")
    path = review_dir
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise UsageError(f"{rel!r}: {path.name} is a link; results are never read through one")
    return path


def read_result_text(review_dir: Path, rel: str) -> str | None:
    path = _result_path(review_dir, rel)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read().decode("utf-8", errors="replace")


def job_logs(job: MyJob) -> JobLogs:
    code = read_result_text(job.review_dir, "returncode.txt")
    try:
        return_code = int(code.strip()) if code is not None else None
    except ValueError:
        return_code = None
    return JobLogs(
        stdout=read_result_text(job.review_dir, "stdout.txt"),
        stderr=read_result_text(job.review_dir, "stderr.txt"),
        return_code=return_code,
    )


def job_output(job: MyJob, rel: str) -> Path:
    """The file ``outputs/<rel>`` of my job's results (an error if it is not there)."""
    path = _result_path(job.review_dir / "outputs", rel)
    if not path.is_file():
        shared = [r[len("outputs/") :] for r in job.results if r.startswith("outputs/")]
        listed = ", ".join(shared) if shared else "none shared yet"
        raise UsageError(f"{job.label} has no output {rel!r} (its outputs: {listed})")
    return path


def _text(value: Any) -> str | None:
    """A config.yaml or state.yaml value as short one-line text; None unless a scalar."""
    return untrusted_text(value)
