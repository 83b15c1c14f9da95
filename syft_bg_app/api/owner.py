"""The Python API: ``import syft_bg_app as bg``.

The same operations as the command line, on the same app home (``home=`` or
``$SYFT_BG_HOME`` or ``~/.syft-bg``), returning objects that show as tables in
Jupyter and as text in a terminal::

    import syft_bg_app as bg
    bg.init("owner@datasite.org", "~/SyftBox")
    bg.run_once()
    bg.pending()                       # pending jobs
    bg.approve("alice@uni.edu/mean-age")
    bg.submit("owner@datasite.org", "./analysis", name="mean-age")   # as a DS

Every function calls an action of ``syft_bg_app.actions``, as the command line
does. The module is long because it is one namespace (``bg.``): the objects a
notebook shows and one short function per operation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_bg_app.actions import datasets as dataset_actions
from syft_bg_app.actions import ds, setup
from syft_bg_app.actions import jobs as job_actions
from syft_bg_app.actions import peers as peer_actions
from syft_bg_app.actions import rules as rule_actions
from syft_bg_app.actions import services as service_actions
from syft_bg_app.approval.rules import PendingReason
from syft_bg_app.datasite.layout import JOB_STATUSES, JobRef
from syft_bg_app.errors import UsageError
from syft_bg_app.passes import PassResult, run_pass
from syft_bg_app.session import open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views import job_render, render
from syft_bg_app.views import jobs as job_views
from syft_bg_app.views import rules as rule_views
from syft_bg_app.views.jobs import JobView
from syft_bg_app.views.peers import peers_json

PathLike = str | os.PathLike


def _home(home: PathLike | AppHome | None) -> AppHome:
    if isinstance(home, AppHome):
        return home
    return AppHome.resolve(home)


# -- objects ---------------------------------------------------------------------------


class Job:
    """A job a data scientist submitted to this data owner."""

    def __init__(self, view: JobView, home: AppHome) -> None:
        self._view = view
        self._home = home
        self.metadata: dict[str, Any] = view.metadata
        self._pages: dict[bool, JobView] = {}

    def _page(self, contents: bool = True) -> JobView:
        """The view with everything a page shows, built when first asked for."""
        if contents not in self._pages:
            self._pages[contents] = job_views.page(open_view(self._home), self.ref, contents)
        return self._pages[contents]

    # identity
    @property
    def ref(self) -> JobRef:
        return self._view.ref

    @property
    def ds_email(self) -> str:
        return self.ref.ds_email

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def label(self) -> str:
        return self.ref.label

    # state
    @property
    def status(self) -> str:
        return self._view.status

    @property
    def state(self) -> dict[str, Any]:
        return dict(self._view.state)

    @property
    def received_at(self) -> str | None:
        return self._view.received_at

    @property
    def reason(self) -> str | None:
        return self._view.reason

    @property
    def problem(self) -> str | None:
        return self._view.problem

    @property
    def rule(self) -> str | None:
        """The auto-approval rule that approved this job (None if a person did)."""
        return self._view.rule

    @property
    def why_pending(self) -> PendingReason | None:
        """Why the rules left this job for you: the closest rule and the files that
        differ from it (missing, extra, content differs, what the rule lacks).
        None unless the job is pending. Computed when first asked for."""
        if self.status != "pending":
            return None
        return self._page(contents=False).detail.why_pending  # type: ignore[union-attr]

    # metadata (config.yaml: informational; what runs is run.sh)
    @property
    def type(self) -> str | None:
        return self._view.type

    @property
    def entrypoint(self) -> str | None:
        return self._view.entrypoint

    @property
    def submitted_at(self) -> str | None:
        return self._view.submitted_at

    @property
    def description(self) -> str | None:
        return self._view.description

    @property
    def tags(self) -> list[str]:
        return self._view.tags

    # places
    @property
    def submission_dir(self) -> Path:
        return self._view.submission_dir

    @property
    def review_dir(self) -> Path:
        return self._view.review_dir

    @property
    def files(self) -> list[str]:
        return [rel for rel, _ in job_views.list_files(self.submission_dir) if rel != "config.yaml"]

    @property
    def results(self) -> list[str]:
        return [
            rel
            for rel, _ in job_views.list_files(self.review_dir)
            if rel not in job_views.RESULT_SKIP
        ]

    @property
    def stdout(self) -> str | None:
        return _read_text(self.review_dir / "stdout.txt")

    @property
    def stderr(self) -> str | None:
        return _read_text(self.review_dir / "stderr.txt")

    @property
    def outputs(self) -> list[Path]:
        folder = self.review_dir / "outputs"
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []

    # actions
    def approve(self, reason: str | None = None) -> Job:
        return approve(self, reason, home=self._home)

    def reject(self, reason: str | None = None) -> Job:
        return reject(self, reason, home=self._home)

    def refresh(self) -> Job:
        return _load(self.label, self._home)

    # views: the same page as ``syft-bg jobs show``
    def describe(self, contents: bool = True) -> str:
        """The page ``syft-bg jobs show`` prints (``contents=False``: ``--files``)."""
        return job_render.job_text(self._page(contents))

    def to_dict(self, contents: bool = True) -> dict[str, Any]:
        """The page as plain types, as ``syft-bg jobs show --json`` prints it."""
        return job_render.job_json(self._page(contents))

    def __repr__(self) -> str:
        return self.describe()

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return job_render.job_html(self._page())


class JobList(list):
    """A list of jobs; index by position, ``"ds_email/name"`` or a unique name."""

    title = "Jobs"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            matches = [j for j in self if key in (j.label, j.name)]
            if len(matches) != 1:
                what = "no job" if not matches else "more than one job"
                raise KeyError(f"{what} named {key!r}")
            return matches[0]
        result = super().__getitem__(key)
        return type(self)(result) if isinstance(key, slice) else result

    def to_dicts(self) -> list[dict[str, Any]]:
        """The table as plain types, as ``syft-bg jobs list --json`` prints it."""
        return job_render.jobs_json([job._view for job in self])

    def __repr__(self) -> str:
        return job_render.jobs_text([job._view for job in self], self.title)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return job_render.jobs_html([job._view for job in self], self.title)


class PendingList(JobList):
    title = "Pending jobs"


class MyJobList(list):
    """Jobs I submitted as a data scientist, with their status and results."""

    def __repr__(self) -> str:
        return render.my_jobs_text(self)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return render.my_jobs_html(self)


@dataclass
class TextReport:
    """A block of text (status, a pass summary) that also shows in Jupyter."""

    title: str
    text: str

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return render.pre_html(self.text, self.title)


@dataclass
class Setup:
    """What ``init`` wrote."""

    config_file: Path
    datasite: Path
    layout: str

    def __repr__(self) -> str:
        return (
            f"wrote {self.config_file}\n"
            f"datasite {self.datasite} (layout ROOT/{self.layout}) is ready\n"
            "next: bg.run_once() (or ./run.sh)"
        )

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return render.pre_html(repr(self), "syft-bg init")


# -- data owner ------------------------------------------------------------------------


def init(
    email: str,
    syftbox_root: PathLike | None = None,
    *,
    force: bool = False,
    create: bool = False,
    home: PathLike | AppHome | None = None,
) -> Setup:
    """Write config.yaml (outbox mail, no auto-approval) and prepare the datasite.

    The SyftBox folder must exist unless ``create`` (a mistyped path is refused)."""
    result = setup.init(
        _home(home),
        email,
        os.fspath(syftbox_root) if syftbox_root else None,
        force=force,
        create=create,
    )
    return Setup(result.config_file, result.datasite.path, result.datasite.layout)


def status(home: PathLike | AppHome | None = None) -> TextReport:
    """The last pass, each step, and what is waiting (as ``syft-bg status``)."""
    from syft_bg_app.views.status import render_status

    return TextReport("syft-bg status", render_status(_home(home)))


def run_once(home: PathLike | AppHome | None = None) -> PassResult:
    """Run one pass now (sync, notify, approve, execute) and return its summary."""
    return run_pass(_home(home))


def jobs(
    status: str | None = None,
    *,
    tag: str | None = None,
    home: PathLike | AppHome | None = None,
) -> JobList:
    """Every job received so far (or those with ``status``, and tagged ``tag``), by data
    scientist and name."""
    if status is not None and status not in JOB_STATUSES:
        raise UsageError(f"status must be one of {', '.join(JOB_STATUSES)}, not {status!r}")
    app_home = _home(home)
    ctx = open_view(app_home)
    listed = JobList(Job(v, app_home) for v in job_views.all_views(ctx, status, tag))
    listed.title = job_render.jobs_title(status, tag)
    return listed


def pending(*, home: PathLike | AppHome | None = None) -> PendingList:
    """Jobs waiting for your decision."""
    return PendingList(jobs("pending", home=home))


def job(spec: str | Job, *, home: PathLike | AppHome | None = None) -> Job:
    """One job, named ``ds_email/name`` (or by its name where that is unambiguous)."""
    return _load(_spec(spec), _home(home))


def review(
    job: str | Job | None = None,
    *,
    interactive: bool | None = None,
    home: PathLike | AppHome | None = None,
) -> Any:
    """In Jupyter: a job's card with Approve / Reject / Auto-approve buttons, or (no
    ``job``) the jobs table that decides a selection at once. Without ipywidgets (the
    ``notebook`` extra) or outside Jupyter: the same as HTML with the commands to run."""
    from syft_bg_app.api import widgets

    return widgets.review(_home(home), None if job is None else _spec(job), interactive)


def _load(spec: str, app_home: AppHome) -> Job:
    ctx = open_view(app_home)
    return Job(job_views.view(ctx, job_views.resolve(ctx, spec)), app_home)


def _spec(spec: str | Job) -> str:
    if isinstance(spec, Job):
        return spec.label
    if isinstance(spec, str):
        return spec
    raise UsageError(f"name a job as 'ds_email/name' or pass a Job, not {type(spec).__name__}")


def approve(
    job: str | Job, reason: str | None = None, *, home: PathLike | AppHome | None = None
) -> Job:
    """Approve a pending job; the next pass runs the snapshot taken now."""
    app_home = _home(home)
    result = job_actions.approve(app_home, _spec(job), reason)
    return _load(result.ref.label, app_home)


def reject(
    job: str | Job, reason: str | None = None, *, home: PathLike | AppHome | None = None
) -> Job:
    """Reject a job; ``reason``, if given, is sent to the data scientist."""
    reason = str(reason).strip() if reason is not None and str(reason).strip() else None
    app_home = _home(home)
    result = job_actions.reject(app_home, _spec(job), reason)
    return _load(result.ref.label, app_home)


def rerun(
    job: str | Job, *, fresh_snapshot: bool = False, home: PathLike | AppHome | None = None
) -> Job:
    """Run a done or failed job again in the next pass, from its approval snapshot
    (``fresh_snapshot``: from its current files; review them first)."""
    app_home = _home(home)
    result = job_actions.rerun(app_home, _spec(job), fresh_snapshot=fresh_snapshot)
    return _load(result.ref.label, app_home)


# -- peers ----------------------------------------------------------------------------------


def peers(*, home: PathLike | AppHome | None = None) -> dict[str, dict[str, Any]]:
    """Every known data scientist: ``{email: {"status", "since", "jobs_waiting", ...}}``.

    ``status`` is requested, accepted, rejected, blocked or invalid (or unknown
    for someone who only has jobs waiting); ``jobs_waiting`` counts jobs that
    wait until the peer is accepted.
    """
    return peers_json(peer_actions.known_peers(_home(home)))


def accept_peer(email: str, *, home: PathLike | AppHome | None = None) -> None:
    """Accept a peer: creates their inbox (write) and review (read) folders."""
    peer_actions.accept(_home(home), email)


def reject_peer(
    email: str, reason: str | None = None, *, home: PathLike | AppHome | None = None
) -> None:
    """Reject a peer request; a new request counts after approve.peers.rerequest_after_days."""
    peer_actions.reject(_home(home), email, reason)


def block_peer(
    email: str, reason: str | None = None, *, home: PathLike | AppHome | None = None
) -> bool:
    """Ignore a data scientist for good (requests and jobs); False if blocked already."""
    return peer_actions.block(_home(home), email, reason).changed


def unblock_peer(email: str, *, home: PathLike | AppHome | None = None) -> str:
    """Undo ``block_peer``; returns the status the data scientist has again."""
    return peer_actions.unblock(_home(home), email).status


# -- datasets -------------------------------------------------------------------------------


def create_dataset(
    name: str,
    mock_path: PathLike,
    private_path: PathLike,
    users: str | Iterable[str] = (),
    summary: str | None = None,
    *,
    home: PathLike | AppHome | None = None,
) -> dict[str, Any]:
    """Publish ``mock_path`` for ``users`` (emails, or ``"any"``: every accepted peer,
    also those accepted later) and keep ``private_path`` under the app home, never synced.
    Returns the dataset as ``datasets()`` shows it; warnings are in ``"warnings"``."""
    app_home = _home(home)
    change = dataset_actions.create(
        app_home, name, mock_path, private_path, _strings(users), summary
    )
    return {**dataset_actions.show(app_home, name).to_dict(), "warnings": change.warnings}


def datasets(*, home: PathLike | AppHome | None = None) -> dict[str, dict[str, Any]]:
    """Every dataset: ``{name: {"summary", "shared_with", "readers", "mock_files", ...}}``."""
    views = dataset_actions.list_datasets(_home(home))
    return {view.name: view.to_dict() for view in views}


def dataset(name: str, *, home: PathLike | AppHome | None = None) -> dict[str, Any]:
    """One dataset, as ``datasets()`` shows it."""
    return dataset_actions.show(_home(home), name).to_dict()


def share_dataset(
    name: str, users: str | Iterable[str], *, home: PathLike | AppHome | None = None
) -> list[str]:
    """Let ``users`` (emails, or ``"any"``) read the mock data; returns who reads it now."""
    return dataset_actions.share(_home(home), name, _strings(users)).readers


def unshare_dataset(
    name: str, users: str | Iterable[str], *, home: PathLike | AppHome | None = None
) -> list[str]:
    """Stop ``users`` reading the mock data; returns who reads it now."""
    return dataset_actions.unshare(_home(home), name, _strings(users)).readers


def delete_dataset(name: str, *, home: PathLike | AppHome | None = None) -> list[str]:
    """Remove the published mock data and the private copy; returns the pending jobs that
    name it, which the next pass rejects ("dataset NAME was deleted")."""
    return dataset_actions.delete(_home(home), name).pending_jobs


# -- services -------------------------------------------------------------------------------


def start_services(
    *services: str, home: PathLike | AppHome | None = None
) -> service_actions.ServicesSwitched:
    """Switch services (steps of the pass; all without names) on, as ``syft-bg start``,
    and make sure passes run: ``passes.problem`` says why nothing runs them yet."""
    return service_actions.start(_home(home), _services(services))


def stop_services(
    *services: str, home: PathLike | AppHome | None = None
) -> service_actions.ServicesSwitched:
    """Switch services off, as ``syft-bg stop``; with none left on, the schedule too."""
    return service_actions.stop(_home(home), _services(services))


# -- auto-approval rules ------------------------------------------------------------------


class RuleList(list):
    """Auto-approval rules (``rules.Rule``), and the config's warnings about them."""

    def __init__(self, rules: Iterable[Any] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(rules)
        self.notes = list(notes)

    def __repr__(self) -> str:
        return rule_views.rules_text(self, self.notes)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return rule_views.rules_html(self, self.notes)


@dataclass
class RuleChange:
    """What a rule change did, in the words of the matching command, and the rule it
    created or changed."""

    title: str
    text: str
    rule: Any = None

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return render.pre_html(self.text, self.title)


def auto_approve(
    contents: PathLike | Iterable[PathLike] = (),
    *,
    peers: str | Iterable[str] = (),
    name: str | None = None,
    name_only: PathLike | Iterable[PathLike] = (),
    base_dir: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> RuleChange:
    """Trust jobs whose file set is exactly these files (as ``syft-bg auto-approve``).

    ``contents`` are pinned by SHA-256 of their bytes (folders expand
    recursively; paths resolve against ``base_dir``); ``name_only`` files may
    have any content. A rule approves nothing until it pins ``run.sh``.
    """
    edit = rule_actions.add_rule(
        _home(home),
        [os.fspath(p) for p in _paths(contents)],
        peers=_strings(peers),
        name=name,
        name_only=[os.fspath(p) for p in _paths(name_only)],
        base_dir=os.fspath(base_dir) if base_dir else None,
    )
    return RuleChange("syft-bg auto-approve", rule_views.rule_edit_text(edit), edit.rule)


def auto_approve_job(
    job: str | Job,
    *,
    name: str | None = None,
    peers: str | Iterable[str] = (),
    home: PathLike | AppHome | None = None,
) -> RuleChange:
    """Trust exactly what a submitted job contains (``auto-approve --from-job``).

    The rule applies to the job's submitter unless ``peers`` names others.
    """
    edit = rule_actions.add_rule(_home(home), peers=_strings(peers), name=name, from_job=_spec(job))
    return RuleChange("syft-bg auto-approve --from-job", rule_views.rule_edit_text(edit), edit.rule)


def list_auto_approvals(
    name: str | None = None, *, home: PathLike | AppHome | None = None
) -> RuleList:
    """The auto-approval rules in config.yaml; each says whether it can approve anything."""
    listing = rule_actions.list_rules(_home(home), name)
    return RuleList(listing.rules, listing.warnings)


def remove_auto_approve(
    name: str,
    files: PathLike | Iterable[PathLike] | None = None,
    *,
    home: PathLike | AppHome | None = None,
) -> RuleChange:
    """Remove the rule ``name``, or only ``files`` from it (``remove-auto-approval``)."""
    app_home = _home(home)
    if files is not None:
        removed = rule_actions.remove_files(app_home, name, [os.fspath(p) for p in _paths(files)])
        return RuleChange(
            "syft-bg remove-auto-approval", rule_views.files_removed_text(removed), removed.rule
        )
    gone = rule_actions.remove_rule(app_home, name)
    return RuleChange("syft-bg remove-auto-approval", rule_views.rule_removed_text(gone))


def _services(names: tuple[str, ...]) -> list[str]:
    """The services named, or all of them when none is."""
    return service_actions.check_services(list(names)) if names else list(service_actions.SERVICES)


def _strings(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _paths(value: PathLike | Iterable[PathLike]) -> list[PathLike]:
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


# -- data scientist -------------------------------------------------------------------------


def submit(
    do_email: str,
    path: PathLike,
    *,
    name: str | None = None,
    entrypoint: str | None = None,
    description: str | None = None,
    tags: str | Iterable[str] = (),
    as_email: str | None = None,
    syftbox_root: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> ds.Submission:
    """Submit a folder or one .py/.sh script to ``do_email`` (syft-job v1 layout);
    ``description`` and ``tags`` are shown to the data owner."""
    ident = ds.identify(_home(home), as_email, syftbox_root)
    return ds.submit(
        ident,
        do_email,
        path,
        name=name,
        entrypoint=entrypoint,
        description=description,
        tags=_strings(tags),
    )


def submit_script(
    do_email: str,
    script_text: str,
    *,
    name: str,
    language: str = "python",
    description: str | None = None,
    tags: str | Iterable[str] = (),
    as_email: str | None = None,
    syftbox_root: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> ds.Submission:
    """Submit one script written here (``language`` python or bash) as job ``name``."""
    ident = ds.identify(_home(home), as_email, syftbox_root)
    return ds.submit_script(
        ident,
        do_email,
        script_text,
        name,
        language=language,
        description=description,
        tags=_strings(tags),
    )


def wait_for_completion(
    job: str | ds.MyJob | ds.Submission,
    *,
    timeout: float = 600.0,
    poll: float = 2.0,
    as_email: str | None = None,
    syftbox_root: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> ds.MyJob:
    """Wait until the data owner finished my job (done, failed or rejected) and return
    it; ``ds.WaitTimeout`` (with ``.status``) when ``timeout`` seconds pass first.
    ``job`` is what ``submit`` returned, one of ``my_jobs()``, or ``"do_email/name"``."""
    if isinstance(job, str):
        do_email, _, name = job.partition("/")
        if not name:
            raise UsageError(f"name the job as 'do_email/name', not {job!r}")
        job = ds.my_job(ds.identify(_home(home), as_email, syftbox_root), do_email, name)
    return ds.wait_for_completion(job, timeout=timeout, poll=poll)


DS_HELP = """\
syft-bg for data scientists (import syft_bg_app as bg):
  bg.request_peer(DO_EMAIL, "why")                 ask a data owner to accept you
  bg.submit(DO_EMAIL, "./folder", name="n", description="...", tags=["t"])
  bg.submit_script(DO_EMAIL, "print(1)", name="n", description="...", tags=["t"])
  bg.my_jobs()                                     my jobs everywhere, newest first
  job = bg.wait_for_completion(submission, timeout=600, poll=2)
  job.logs()                                       stdout, stderr, exit code
  job.output("result.csv")                         path of a shared output file
Each call takes as_email= and syftbox_root= (default: this app's config, ~/SyftBox)."""


def help() -> TextReport:  # noqa: A001 - the name syft-code-queue users call
    """The data scientist's calls, in one screen."""
    return TextReport("syft-bg for data scientists", DS_HELP)


def request_peer(
    do_email: str,
    message: str | None = None,
    *,
    as_email: str | None = None,
    syftbox_root: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> ds.PeerRequest:
    """Ask ``do_email`` to accept you as a peer."""
    ident = ds.identify(_home(home), as_email, syftbox_root)
    return ds.request_peer(ident, do_email, message)


def my_jobs(
    status: str | None = None,
    *,
    as_email: str | None = None,
    syftbox_root: PathLike | None = None,
    home: PathLike | AppHome | None = None,
) -> MyJobList:
    """The jobs I submitted to any data owner in my SyftBox folder, newest first."""
    ident = ds.identify(_home(home), as_email, syftbox_root)
    return MyJobList(ds.my_jobs(ident, status))


# -- helpers ---------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


__all__ = [
    "Job",
    "JobList",
    "MyJobList",
    "RuleChange",
    "RuleList",
    "accept_peer",
    "approve",
    "auto_approve",
    "auto_approve_job",
    "block_peer",
    "create_dataset",
    "dataset",
    "datasets",
    "delete_dataset",
    "init",
    "job",
    "jobs",
    "list_auto_approvals",
    "my_jobs",
    "peers",
    "pending",
    "reject",
    "reject_peer",
    "remove_auto_approve",
    "request_peer",
    "rerun",
    "review",
    "run_once",
    "start_services",
    "status",
    "share_dataset",
    "stop_services",
    "submit",
    "submit_script",
    "unblock_peer",
    "unshare_dataset",
    "wait_for_completion",
]
