"""Auto-approval rules and how a job is matched against them.

A rule (``approve.auto_approvals[]``) names files by their path relative to the
job folder: ``files`` pins each one's content (``sha256:`` of the raw bytes),
``name_only`` lets any content through. A job matches a rule when its complete
file set (``run.sh`` and everything under ``code/``, see ``jobfiles.collect``)
is exactly the rule's set and every pinned hash is equal in full.

``run.sh`` is what runs, so a rule that does not pin it by content approves
nothing. Rules apply to accepted peers only (naming someone in a rule does not
accept them). An empty peer list means every accepted peer; a rule whose last
peer was removed carries ``enabled: false`` instead of widening to everyone.

Matching is cheap on purpose: a job's path set is compared with an index of
the rules' path sets first, and only jobs with a candidate rule are hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# The schema is the config package's leaf: importing it here keeps config
# loading (which reviews rules) free of a cycle through this module.
from syft_bg_app.config.schema import EMAIL_RE, RUN_SH

if TYPE_CHECKING:
    from syft_bg_app.config.load import Config


@dataclass(frozen=True)
class Rule:
    """One auto-approval object, as validated by config.parse_config."""

    name: str
    peers: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    name_only: frozenset[str] = frozenset()
    timeout: int | None = None
    enabled: bool = True
    datasets: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            name=data["name"],
            peers=tuple(data.get("peers") or ()),
            files=dict(data.get("files") or {}),
            name_only=frozenset(data.get("name_only") or ()),
            timeout=data.get("timeout"),
            enabled=data.get("enabled", True) is not False,
            datasets=frozenset(data.get("datasets") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical config form (what config_writer writes)."""
        out: dict[str, Any] = {"name": self.name, "peers": list(self.peers)}
        out["files"] = {path: self.files[path] for path in sorted(self.files)}
        if self.name_only:
            out["name_only"] = sorted(self.name_only)
        if self.datasets:
            out["datasets"] = sorted(self.datasets)
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if not self.enabled:
            out["enabled"] = False
        return out

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.files) | self.name_only

    def inert_reason(self) -> str | None:
        """Why this rule can approve nothing, or None when it is live."""
        if not self.enabled:
            if not self.peers:
                return "disabled (its last peer was removed; an empty list would mean everyone)"
            return "disabled (enabled: false)"
        if RUN_SH in self.name_only:
            return "run.sh is listed by name only; what runs must be pinned by content"
        if RUN_SH not in self.files:
            return "it does not pin run.sh, the file that runs"
        both = sorted(set(self.files) & self.name_only)
        if both:
            return f"{', '.join(both)} listed both by content and by name only"
        return None

    def applies_to(self, ds_email: str, accepted_peer: bool) -> bool:
        # Only accepted peers' jobs are ever auto-approved: naming someone in a
        # rule does not accept them as a peer.
        if not accepted_peer:
            return False
        return not self.peers or ds_email.lower() in self.peers

    def datasets_refused(self, declared: list[str]) -> list[str]:
        """The datasets a job declares that this rule does not allow."""
        return [name for name in declared if name not in self.datasets]

    def mismatches(self, hashes: Mapping[str, str]) -> list[str]:
        """Pinned files whose hash differs (the job's path set already equals ours)."""
        return [path for path, digest in sorted(self.files.items()) if hashes.get(path) != digest]


def load_rules(config: Config) -> list[Rule]:
    return [Rule.from_dict(item) for item in config.get("approve.auto_approvals")]


def find_rules(rules: Iterable[Rule], name: str) -> list[Rule]:
    return [rule for rule in rules if rule.name == name]


class RuleIndex:
    """Live rules grouped by their exact path set."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self.live = [r for r in self.rules if r.inert_reason() is None]
        self.by_paths: dict[frozenset[str], list[Rule]] = {}
        for rule in self.live:
            self.by_paths.setdefault(rule.paths, []).append(rule)
        canonical = [r.to_dict() for r in self.live]
        self.fingerprint = hashlib.sha256(
            json.dumps(canonical, sort_keys=True).encode()
        ).hexdigest()[:16]

    def candidates(self, paths: frozenset[str], ds_email: str, accepted: bool) -> list[Rule]:
        return [r for r in self.by_paths.get(paths, ()) if r.applies_to(ds_email, accepted)]

    def why_no_candidate(self, paths: frozenset[str], ds_email: str, accepted: bool) -> str:
        """A one-line reason for the audit log when no rule has this job's file set."""
        mine = [r for r in self.live if r.applies_to(ds_email, accepted)]
        if not self.live:
            return "no live auto-approval rule (rules must pin run.sh by content)"
        if not accepted:
            return f"{ds_email} is not an accepted peer: rules approve only accepted peers' jobs"
        if not mine:
            return f"no rule applies to {ds_email}"
        closest = min(mine, key=lambda r: (len(r.paths ^ paths), r.name))
        extra = sorted(paths - closest.paths)
        missing = sorted(closest.paths - paths)
        parts = []
        if extra:
            parts.append("extra " + _few(extra))
        if missing:
            parts.append("missing " + _few(missing))
        return f"its file set matches no rule (closest: '{closest.name}', {'; '.join(parts)})"


def _few(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class MatchResult:
    rule: Rule | None
    why: str
    hashes: dict[str, str] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)


def match(
    paths: frozenset[str],
    problems: list[str],
    ds_email: str,
    accepted: bool,
    index: RuleIndex,
    hash_of: Any,
) -> MatchResult:
    """Match one job. ``hash_of(rel)`` is called only when a rule has the job's path set."""
    if problems:
        return MatchResult(None, "refused: " + "; ".join(problems))
    candidates = index.candidates(paths, ds_email, accepted)
    if not candidates:
        return MatchResult(None, index.why_no_candidate(paths, ds_email, accepted))
    hashes = {rel: hash_of(rel) for rel in sorted(paths)}
    notes = []
    for rule in candidates:
        wrong = rule.mismatches(hashes)
        if not wrong:
            return MatchResult(rule, f"matched rule {rule.name}", hashes, [rule.name])
        notes.append(f"rule '{rule.name}': {_few(wrong, 3)} differ")
    return MatchResult(
        None, "content differs: " + "; ".join(notes), hashes, [r.name for r in candidates]
    )


# -- why a job is still pending ---------------------------------------------------

FILES_NAMED = 10


@dataclass
class PendingReason:
    """Why no rule approved a pending job: the rule that came closest and how the
    job's files differ from it (``jobs show`` and the Python API)."""

    summary: str
    rule: str | None = None
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)
    rule_problem: str | None = None
    refused: list[str] = field(default_factory=list)
    # No rule applies to the submitter: a rule made from this job would.
    no_rule: bool = False
    # Datasets the job declares that the closest rule does not allow.
    datasets_refused: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary, then one line per kind of difference."""
        out = [self.summary]
        if self.differ:
            out.append("content differs: " + _few(self.differ, FILES_NAMED))
        if self.missing:
            out.append("missing (the rule lists them): " + _few(self.missing, FILES_NAMED))
        if self.extra:
            out.append("extra (not in the rule): " + _few(self.extra, FILES_NAMED))
        if self.datasets_refused:
            out.append(
                "reads datasets the rule does not allow: "
                + _few(self.datasets_refused)
                + " (add them to the rule's datasets to allow them)"
            )
        if self.rule_problem:
            out.append(f"the rule approves nothing: {self.rule_problem}")
        out.extend(f"refused: {problem}" for problem in self.refused)
        return out


def explain_pending(
    rules: Iterable[Rule],
    paths: frozenset[str],
    problems: list[str],
    ds_email: str,
    accepted: bool,
    hash_of: Any,
    datasets: list[str] | None = None,
) -> PendingReason:
    """Which rule came closest to approving a job, and which files keep it pending.

    Every rule that applies to the submitter is compared, live or not, so a
    rule that has the job's files but cannot approve (``run.sh`` not pinned,
    disabled) is named with what it lacks. The closest rule has the fewest
    missing, extra and differing files; ``hash_of(rel)`` is called only for
    files a rule pins by content.
    """
    rules = list(rules)
    if problems:
        return PendingReason(
            "it can never be auto-approved as it is: some entries are refused",
            refused=list(problems),
        )
    if not rules:
        return PendingReason(
            "no auto-approval rule exists; it waits for your decision", no_rule=True
        )
    mine = [rule for rule in rules if rule.applies_to(ds_email, accepted)]
    if not mine:
        if not accepted and any(not rule.peers for rule in rules):
            return PendingReason(
                f"no rule names {ds_email}, and rules without peers apply to accepted "
                f"peers only ({ds_email} is not an accepted peer)",
                no_rule=True,
            )
        return PendingReason(
            f"no rule applies to {ds_email} (the rules name other peers)", no_rule=True
        )

    def compare(rule: Rule) -> PendingReason:
        differ = [
            rel for rel in sorted(rule.files) if rel in paths and hash_of(rel) != rule.files[rel]
        ]
        return PendingReason(
            "",
            rule=rule.name,
            missing=sorted(rule.paths - paths),
            extra=sorted(paths - rule.paths),
            differ=differ,
            rule_problem=rule.inert_reason(),
            datasets_refused=rule.datasets_refused(datasets or []),
        )

    def distance(found: PendingReason) -> tuple[int, int, str]:
        files = len(found.missing) + len(found.extra) + len(found.differ)
        blocked = (found.rule_problem is not None) + bool(found.datasets_refused)
        return (files + blocked, files, found.rule or "")

    closest = min((compare(rule) for rule in mine), key=distance)
    files = len(closest.missing) + len(closest.extra) + len(closest.differ)
    name = f"'{closest.rule}'"
    if files == 0 and closest.rule_problem:
        closest.summary = f"rule {name} lists exactly its files, but cannot approve anything"
    elif files == 0 and closest.datasets_refused:
        closest.summary = (
            f"its files match rule {name}, but it reads datasets the rule does not allow"
        )
    elif files == 0:
        closest.summary = f"its files match rule {name} now; the next pass approves it"
    else:
        plural = "1 file differs" if files == 1 else f"{files} files differ"
        closest.summary = f"closest rule: {name} ({plural})"
    return closest


# -- peers ---------------------------------------------------------------------


def peer_auto_accept_reason(
    email: str, approved_domains: Iterable[str], approved_emails: Iterable[str]
) -> tuple[bool, str]:
    """(accept?, why) for a peer request from ``email`` (the requester's folder name).

    Deliberately strict: the address must be plain ASCII with exactly one ``@``,
    no whitespace and no trailing dot; the domain must equal a listed domain
    (compared without case, as DNS does), never be a suffix or a look-alike.
    """
    if not email.isascii():
        return False, "address has non-ASCII characters (look-alikes are never auto-accepted)"
    if any(ch.isspace() for ch in email) or email != email.strip():
        return False, "address contains whitespace"
    if email.count("@") != 1:
        return False, "address must contain exactly one @"
    if email.endswith("."):
        return False, "domain ends with a dot"
    if not EMAIL_RE.fullmatch(email):
        return False, "not a plain email address"
    lowered = email.lower()
    domain = lowered.split("@", 1)[1]
    if lowered in set(approved_emails):
        return True, "email listed in approve.peers.approved_emails"
    if domain in set(approved_domains):
        return True, f"domain {domain} listed in approve.peers.approved_domains"
    return False, f"{domain} is not in approve.peers.approved_domains and the email is not listed"
