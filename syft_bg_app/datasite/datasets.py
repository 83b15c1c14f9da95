"""Datasets: mock files published in the datasite, private files kept in the app home.

The mock half lives where the published syft client puts it,
``<datasite>/public/syft_datasets/<name>/`` with ``dataset.yaml`` and a
``syft.pub.yaml`` that lets exactly the sharing users read it. The private
half never lives in the datasite: a SyftBox client uploads the whole datasite
folder (its ignore rules do not exclude ``private/``) and the Drive transport
is the app itself, so private files are kept under the app home
(``<home>/datasets/<name>/private/``, folders 0700, files 0600), with the
record of who the dataset is shared with beside them. Jobs see the private
files through a read-only mount at the path the syft client resolves.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from syft_bg_app.clock import iso
from syft_bg_app.datasite.layout import PERMISSION_FILE, Datasite, JobRef
from syft_bg_app.errors import NotFoundError, SyftBgError, UsageError
from syft_bg_app.store.fsutil import atomic_write_yaml, load_yaml, short_repr
from syft_bg_app.store.home import AppHome

if TYPE_CHECKING:
    from syft_bg_app.context import Context

DATASETS_FOLDER = "syft_datasets"
METADATA_FILE = "dataset.yaml"
RECORD_FILE = "record.yaml"
PRIVATE_FOLDER = "private"
# Shares a dataset with every accepted peer, now and later.
ANY_PEER = "any"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# The most datasets one job may declare: the list is the data scientist's to write,
# and every pass, page and email about the job reads it.
MAX_JOB_DATASETS = 100
# A staged copy carries this suffix, which sync clients never upload.
STAGING_SUFFIX = ".tmp"


@dataclass
class DatasetRecord:
    """One dataset as the data owner defined it."""

    name: str
    shared_with: list[str] = field(default_factory=list)
    summary: str | None = None
    created_at: str = ""
    uid: str = ""
    # Where the private files were copied from (absolute), so setup-status can tell
    # when that source sits where a SyftBox client uploads it.
    private_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shared_with": list(self.shared_with),
            "summary": self.summary,
            "created_at": self.created_at,
            "uid": self.uid,
            "private_source": self.private_source,
        }


def check_name(name: str) -> str:
    """``name`` if it can name a folder of its own; a clear error otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise UsageError(
            f"dataset name {short_repr(name)} is not allowed: use 1-64 letters, digits, '_', "
            "'-' or '.', starting with a letter or digit (no '/', no '..', no control "
            "characters)"
        )
    return name


def check_share(who: str) -> str:
    """An email address or ``any``."""
    who = who.strip()
    if who.lower() == ANY_PEER:
        return ANY_PEER
    if "@" not in who or any(c.isspace() or ord(c) < 32 or c == "/" for c in who):
        raise UsageError(f"{who!r} is neither an email address nor 'any'")
    return who.lower()  # addresses are compared as the peers' records keep them


def store_root(home: AppHome) -> Path:
    """Where the private halves and the records live (never synced)."""
    return home.root / "datasets"


def store_dir(home: AppHome, name: str) -> Path:
    return store_root(home) / check_name(name)


def private_dir(home: AppHome, name: str) -> Path:
    """The private files of dataset ``name``, as a job's mount source."""
    return store_dir(home, name) / PRIVATE_FOLDER


def public_root(datasite: Datasite) -> Path:
    return datasite.path / "public" / DATASETS_FOLDER


def public_dir(datasite: Datasite, name: str) -> Path:
    return public_root(datasite) / check_name(name)


def synced_private_root(datasite: Datasite) -> Path:
    """Where the syft client keeps private dataset files: inside the synced folder."""
    return datasite.path / "private" / DATASETS_FOLDER


class DamagedDataset(SyftBgError):
    """A dataset whose record cannot be read: what is wrong (``reason``) and the fix."""

    def __init__(self, name: str, path: Path, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"dataset {name!r} is damaged: {reason}; {damaged_fix(name, path)}")


def damaged_fix(name: str, path: Path) -> str:
    """How the data owner repairs dataset ``name`` whose record ``path`` is damaged."""
    return (
        f"fix: restore {path} from a backup, or write it as a mapping "
        "(shared_with: [EMAIL or any, ...], summary: TEXT), then check with "
        f"syft-bg datasets show {name}; or remove the dataset with syft-bg datasets "
        f"delete {name} and create it again"
    )


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what is wrong, and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).strip().split("\n")[0]
    return f"{problem}, line {mark.line + 1}" if mark is not None else problem


def load_record(home: AppHome, name: str) -> DatasetRecord:
    """The record of dataset ``name``; ``DamagedDataset`` when it cannot be read."""
    path = store_dir(home, name) / RECORD_FILE
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if path.parent.is_dir():
            raise DamagedDataset(name, path, f"its {RECORD_FILE} is missing") from None
        raise NotFoundError(f"no dataset named {name!r} (see: syft-bg datasets list)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DamagedDataset(
            name, path, f"its {RECORD_FILE} is not YAML ({_yaml_problem(exc)})"
        ) from None
    except OSError as exc:
        raise DamagedDataset(name, path, f"its {RECORD_FILE} cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise DamagedDataset(name, path, f"its {RECORD_FILE} is not a mapping")
    shared_with = data.get("shared_with") or []
    if not isinstance(shared_with, list) or not all(isinstance(x, str) for x in shared_with):
        raise DamagedDataset(
            name, path, "its shared_with is not a list of email addresses or 'any'"
        )
    summary = data.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise DamagedDataset(name, path, "its summary is not text")
    return DatasetRecord(
        name=name,
        shared_with=list(shared_with),
        summary=summary,
        created_at=str(data.get("created_at") or ""),
        uid=str(data.get("uid") or ""),
        private_source=source if isinstance(source := data.get("private_source"), str) else None,
    )


def save_record(home: AppHome, record: DatasetRecord, folder: Path | None = None) -> None:
    """Write ``record`` into its dataset's folder (or ``folder``, one being built)."""
    folder = folder if folder is not None else store_dir(home, record.name)
    atomic_write_yaml(folder / RECORD_FILE, record.to_dict(), mode=0o600)


def dataset_names(home: AppHome) -> list[str]:
    """Every dataset kept under the app home, damaged ones included."""
    root = store_root(home)
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if NAME_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink()
    )


def client_made_names(home: AppHome, datasite: Datasite) -> list[str]:
    """Datasets the syft client's ``create_dataset`` made in the datasite
    (``public/syft_datasets/<name>/dataset.yaml``) that this app has no record of: it
    cannot tell who may read them nor mount their private files, so jobs naming them
    are refused until they are created again with ``datasets create``."""
    root = public_root(datasite)
    if not root.is_dir():
        return []
    known = set(dataset_names(home))
    return sorted(
        entry.name
        for entry in root.iterdir()
        if NAME_RE.match(entry.name)
        and entry.name not in known
        and not entry.is_symlink()
        and (entry / METADATA_FILE).is_file()
    )


def recreate_command(datasite: Datasite, name: str) -> str:
    """The commands that turn the syft client's dataset ``name`` into one of this app's:
    its folders are moved out of the datasite (the private half must leave it anyway)
    and created again from there."""
    import shlex

    moved = f"~/{name}-from-syft-client"
    public = shlex.quote(str(public_dir(datasite, name)))
    private = shlex.quote(str(synced_private_root(datasite) / name))
    return (
        f"mkdir -p {moved} && mv {public} {moved}/mock && mv {private} {moved}/private && "
        f"syft-bg datasets create {name} --mock {moved}/mock --private {moved}/private "
        "--share EMAIL"
    )


def readers(record: DatasetRecord, accepted_peers: Iterable[str]) -> list[str]:
    """Who may read the mock data: the listed users, and with ``any`` every accepted peer."""
    people = {who for who in record.shared_with if who != ANY_PEER}
    if ANY_PEER in record.shared_with:
        people.update(accepted_peers)
    return sorted(people)


def files_under(folder: Path) -> list[Path]:
    """Regular files below ``folder`` (relative), refusing links: a link would copy
    whatever it points at."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise UsageError(f"{path} is a symlink; copy the real file in its place")
        for name in filenames:
            path = Path(dirpath) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                raise UsageError(f"{path} is not a regular file")
            found.append(path.relative_to(folder))
    return sorted(found)


def source_files(path: Path, what: str) -> tuple[Path, list[Path]]:
    """The folder to copy from and its files; a single file is a folder of one."""
    path = Path(path).expanduser()
    if path.is_symlink():
        raise UsageError(f"{what} path {path} is a symlink; give the real file or folder")
    if path.is_file():
        return path.parent, [Path(path.name)]
    if path.is_dir():
        files = files_under(path)
        if not files:
            raise UsageError(f"{what} folder {path} holds no files")
        return path, files
    raise UsageError(f"{what} path {path} does not exist")


def copy_tree(source: Path, files: list[Path], target: Path, dir_mode: int, file_mode: int) -> None:
    """Copy ``files`` into a fresh ``target`` (which must not exist) with these modes."""
    target.mkdir(mode=dir_mode)
    os.chmod(target, dir_mode)
    for rel in files:
        dest = target / rel
        for parent in reversed(dest.relative_to(target).parents[:-1]):
            folder = target / parent
            if not folder.exists():
                folder.mkdir(mode=dir_mode)
                os.chmod(folder, dir_mode)
        shutil.copyfile(source / rel, dest, follow_symlinks=False)
        os.chmod(dest, file_mode)


def synced_source_warning(source: Path, syftbox_root: Path) -> str | None:
    """Why a private source at ``source`` is itself shared, or None: inside the SyftBox
    folder a SyftBox client uploads every file, whatever the app keeps out of it."""
    try:
        inside = source.resolve().is_relative_to(syftbox_root.resolve())
    except OSError:
        return None
    if not inside:
        return None
    return (
        f"the private source {source} is inside the SyftBox folder {syftbox_root}, which a "
        "SyftBox client uploads whole: the private data itself is being synced; move it "
        "out of that folder (jobs read the copy under the app home)"
    )


def same_bytes(mock: tuple[Path, list[Path]], private: tuple[Path, list[Path]]) -> list[str]:
    """Mock files whose bytes equal some private file: the "mock" is the data."""
    import hashlib

    def digests(source: Path, files: list[Path]) -> dict[str, Path]:
        return {hashlib.sha256((source / rel).read_bytes()).hexdigest(): rel for rel in files}

    private_digests = digests(*private)
    return sorted(str(rel) for digest, rel in digests(*mock).items() if digest in private_digests)


def write_metadata(datasite: Datasite, record: DatasetRecord, mock_files: list[Path]) -> None:
    """``dataset.yaml`` as the syft client reads it."""
    base = f"syft://{datasite.email}"
    folder = public_dir(datasite, record.name)
    metadata = {
        "canonical_name": "Dataset",
        "version": "1",
        "uid": record.uid,
        "created_at": record.created_at,
        "updated_at": iso(),
        "name": record.name,
        "summary": record.summary,
        "tags": [],
        "location": None,
        "mock_url": f"{base}/public/{DATASETS_FOLDER}/{record.name}",
        "private_url": f"{base}/private/{DATASETS_FOLDER}/{record.name}",
        "readme_url": None,
        "mock_files_urls": [
            f"{base}/public/{DATASETS_FOLDER}/{record.name}/{rel.as_posix()}" for rel in mock_files
        ],
    }
    atomic_write_yaml(folder / METADATA_FILE, metadata)


def write_read_permissions(
    datasite: Datasite, name: str, people: list[str], folder: Path | None = None
) -> None:
    """The mock folder's ``syft.pub.yaml``: read for exactly ``people``, and terminal, so
    no rule further up (``public/`` is often readable by everyone) widens it. ``folder``:
    a staged copy of the mock folder, given its permissions before it is published."""
    folder = folder or public_dir(datasite, name)
    rules = {
        "rules": [{"pattern": "**", "access": {"admin": [], "read": people, "write": []}}],
        "terminal": True,
    }
    atomic_write_yaml(folder / PERMISSION_FILE, rules, unless_same=True)


def fresh_staging(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return parent / f".{name}.{uuid.uuid4().hex[:8]}{STAGING_SUFFIX}"


def remove_tree(path: Path) -> None:
    """Remove ``path`` by first renaming it out of sight, so a crash never leaves half of it
    under its real name."""
    if not path.exists() and not path.is_symlink():
        return
    doomed = fresh_staging(path.parent, path.name)
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def accepted_peers(peers: dict[str, dict[str, Any]]) -> list[str]:
    """The accepted peers among the checkpoint's peer records."""
    return sorted(email for email, record in peers.items() if record.get("status") == "accepted")


def publish_shares(
    home: AppHome, datasite: Datasite, accepted: list[str], names: Iterable[str] | None = None
) -> list[str]:
    """Rewrite the read permissions of the mock folders (every dataset unless ``names``):
    ``any`` follows the accepted peers, so this runs whenever a peer is accepted.
    A damaged dataset keeps its permissions as they were and is returned as a problem;
    the others are written."""
    problems = []
    for name in dataset_names(home) if names is None else names:
        try:
            record = load_record(home, name)
        except DamagedDataset as exc:
            problems.append(str(exc))
            continue
        if public_dir(datasite, name).is_dir():
            write_read_permissions(datasite, name, readers(record, accepted))
    return problems


def share_on_accept(
    home: AppHome, datasite: Datasite, email: str, accepted: list[str], auto_share: list[str]
) -> list[str]:
    """What accepting ``email`` does to datasets: the ``auto_share`` ones are shared
    with them, and every dataset shared with ``any`` becomes readable by them.
    Returns the problems (a listed dataset that does not exist)."""
    problems = []
    known = set(dataset_names(home))
    for name in auto_share:
        if name not in known:
            problems.append(
                f"approve.peers.auto_share_datasets names {name!r}, which does not exist"
            )
            continue
        try:
            record = load_record(home, name)
        except DamagedDataset:
            continue  # named once, by publish_shares below
        if email not in record.shared_with:
            record.shared_with.append(email)
            save_record(home, record)
    return problems + publish_shares(home, datasite, accepted)


def declared_datasets(metadata: dict[str, Any] | None, do_email: str) -> list[str]:
    """The dataset names a job's ``config.yaml`` declares for this data owner.

    syft-job writes ``datasets: {do_email: [name, ...]}``; a plain list of names is
    read as this data owner's. Anything else is refused with the reason.
    """
    raw = (metadata or {}).get("datasets")
    if raw in (None, {}, []):
        return []
    if isinstance(raw, dict):
        mine = [value for key, value in raw.items() if str(key).lower() == do_email.lower()]
        raw = mine[0] if mine else []
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise UsageError(
            "config.yaml 'datasets' must map the data owner's email to a list of dataset names"
        )
    names = list(dict.fromkeys(raw))
    if len(names) > MAX_JOB_DATASETS:
        raise UsageError(
            f"config.yaml 'datasets' names {len(names)} datasets; a job may read at most "
            f"{MAX_JOB_DATASETS}"
        )
    return [check_name(name) for name in names]


# What became of a dataset a pending job names, as the data owner's command left it in
# the job's checkpoint record: the rejection then says so, rather than "not shared".
WITHDRAWN_KEY = "datasets_withdrawn"


@dataclass
class DatasetRefusal:
    """Why a job may not read a dataset it declared.

    ``problem`` is said to both parties. ``final``: the job can never read it as
    submitted (no such dataset, not shared with its author) and is rejected;
    otherwise the data owner's side is at fault (a damaged record) and the job waits.
    ``details`` go to the audit log only: they may say what the data scientist may not
    learn (whether a dataset not shared with them exists).
    """

    name: str
    problem: str
    final: bool
    details: dict[str, str] = field(default_factory=dict)

    @property
    def for_scientist(self) -> str:
        """The reason in a rejection, with what the data scientist can do."""
        if not self.final:
            return f"{self.problem}; ask the data owner to repair it"
        return f"{self.problem}; submit the job again without it, or ask the data owner for it"

    @property
    def for_owner(self) -> str:
        """The reason a data owner's approval is refused, with what they can do."""
        if not self.final:
            return f"{self.problem}; repair it first (see: syft-bg datasets show {self.name})"
        return (
            f"{self.problem}; to let it run, create or share the dataset and approve again; "
            "otherwise the next pass rejects the job with this reason"
        )


class DatasetAccess:
    """Which datasets a data scientist may read, with each record read once (a pass
    asks this for every pending job)."""

    def __init__(self, home: AppHome, datasite: Datasite, accepted: list[str]) -> None:
        self.home = home
        self.datasite = datasite
        self.accepted = accepted
        self._known: set[str] | None = None
        self._records: dict[str, DatasetRecord | DamagedDataset] = {}

    @classmethod
    def of(cls, ctx: Context) -> DatasetAccess:
        return cls(ctx.home, ctx.datasite, accepted_peers(ctx.state.data["peers"]))

    def _record(self, name: str) -> DatasetRecord | DamagedDataset | None:
        """The dataset's record, the damage that keeps it from being read, or None."""
        if self._known is None:
            self._known = set(dataset_names(self.home))
        if name not in self._known:
            return None
        if name not in self._records:
            try:
                self._records[name] = load_record(self.home, name)
            except DamagedDataset as exc:
                self._records[name] = exc
            except NotFoundError:
                self._known.discard(name)  # deleted since it was listed
                return None
        return self._records[name]

    def refusal(
        self, ds_email: str, names: Iterable[str], withdrawn: dict[str, str] | None = None
    ) -> DatasetRefusal | None:
        """Why ``ds_email``'s job may not read one of ``names`` (the first such), or None.

        ``withdrawn``: {name: "deleted" | "unshared"} that a data owner's command noted in
        the job's record while the data scientist could still read the dataset.
        """
        owner = self.datasite.email
        for name in names:
            record = self._record(name)
            if isinstance(record, DamagedDataset):
                # Its reason names the data owner's files: it stays in their log.
                return DatasetRefusal(
                    name,
                    f"the job asks for dataset {name!r}, which is damaged on {owner}'s side",
                    final=False,
                    details={"dataset": name, "problem": record.reason},
                )
            if record is not None and ds_email.lower() in {
                who.lower() for who in readers(record, self.accepted)
            }:
                continue
            how = withdrawn.get(name) if isinstance(withdrawn, dict) else None
            if how == "deleted" and record is None:
                problem = f"dataset {name!r} was deleted by {owner} while the job waited"
            elif how == "unshared" and record is not None:
                problem = f"dataset {name!r} was unshared with {ds_email} while the job waited"
            else:
                # The same words whether it exists or not: a data scientist learns
                # nothing of datasets nobody shared with them.
                problem = (
                    f"the job asks for dataset {name!r}, which {owner} has not shared "
                    f"with {ds_email}"
                )
            fact = "no such dataset" if record is None else "not shared with them"
            return DatasetRefusal(
                name, problem, final=True, details={"dataset": name, "problem": fact}
            )
        return None


def job_dataset_mounts(
    home: AppHome, datasite: Datasite, ds_email: str, names: list[str], accepted: list[str]
) -> list[tuple[str, str]]:
    """(source, place under the SyftBox folder) for each dataset a job declared: its private
    files and its mock folder. A dataset that does not exist, or that is not shared with
    the job's data scientist, is refused with a reason they can act on."""
    refusal = DatasetAccess(home, datasite, accepted).refusal(ds_email, names)
    if refusal is not None:
        raise UsageError(refusal.for_scientist)
    mounts = []
    for name in names:
        base = f"{datasite.email}/{{}}/{DATASETS_FOLDER}/{name}"
        mounts.append((str(private_dir(home, name)), base.format(PRIVATE_FOLDER)))
        public = public_dir(datasite, name)
        if public.is_dir():
            mounts.append((str(public), base.format("public")))
    return mounts


def job_datasets(ctx: Context, ref: JobRef, record: dict[str, Any]) -> list[tuple[str, str]]:
    """The dataset mounts of job ``ref``: the datasets its ``config.yaml`` declared when
    it was approved (a change after approval never widens what it reads)."""
    names = [name for name in record.get("datasets") or [] if isinstance(name, str)]
    if not names:
        return []
    accepted = accepted_peers(ctx.state.data["peers"])
    return job_dataset_mounts(ctx.home, ctx.datasite, ref.ds_email, names, accepted)


def declared_text(metadata: dict[str, Any] | None, do_email: str) -> str:
    """The datasets a job declares, as one line for a page or an email ("" for none)."""
    try:
        return ", ".join(declared_datasets(metadata, do_email))
    except UsageError as exc:
        return f"unreadable ({exc})"


def declared_or_none(metadata: dict[str, Any] | None, do_email: str) -> list[str] | None:
    """``declared_datasets``, or None when the field cannot be read."""
    try:
        return declared_datasets(metadata, do_email)
    except UsageError:
        return None
