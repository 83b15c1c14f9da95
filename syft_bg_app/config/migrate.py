"""Older syft-bg approval configs, turned into the canonical form before validation.

Forms read (all under ``approve:``):

- syft-bg 0.3: ``auto_approvals: {enabled, objects: {NAME: {file_contents:
  [{relative_path|name, path, hash}], file_paths|file_names, peers}}}`` and
  ``peers: {enabled, approved_domains, auto_approve_emails, auto_share_datasets}``;
  ``interval`` and the peer-version switches.
- The older README form: ``jobs: {allowed_script_hashes, required_filenames,
  allowed_users, required_scripts, peers_only, enabled}`` and ``peers:
  {auto_approve}``.
- The per-peer form: ``jobs: {enabled, peers: {EMAIL: {mode: strict, scripts:
  [{name, hash}]}}}``.

Their file names were relative to ``code/`` and none of them pinned ``run.sh``
(the file that runs), so every migrated rule gets ``code/`` in front of its
paths and approves nothing until the data owner pins ``run.sh``. The tree is
rewritten node by node, keeping each value's line, so a validation error in a
migrated value still names the line the user wrote; each migration adds a
warning saying what the old entry became and what it still needs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from syft_bg_app.config.schema import HASH_RE, PIN_HINT

STR = "tag:yaml.org,2002:str"
BOOL = "tag:yaml.org,2002:bool"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"

HEX = frozenset("0123456789abcdef")
SCRIPT_SUFFIXES = (".py", ".sh", ".r", ".ipynb", ".jl", ".js", ".ts", ".rb", ".pl")
LEGACY_PEER_KEYS = ("enabled", "auto_approve", "auto_approve_emails")
DROPPED_APPROVE_KEYS = {
    "interval": "each pass runs the approve step; schedule passes with run.sh --every or "
    "syft-bg install",
    "skip_peer_on_patch_version_diff": "this app does not compare peer versions",
    "force_ignore_peer_version": "this app does not compare peer versions",
}
NEEDS_RUN_SH = "It approves nothing until run.sh is pinned, e.g. with: "
CRLF_NOTE = (
    "syft-bg 0.3 hashed text with line endings normalised, so a file with CRLF line "
    "endings no longer matches until re-hashed with syft-bg hash"
)


@dataclass
class Migration:
    """What was migrated: warnings, and the ``approve`` keys a writer must rewrite."""

    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rewrite: set[str] = field(default_factory=set)
    remove: set[str] = field(default_factory=set)
    migrated_rules: list[yaml.Node] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.rewrite or self.remove)


def _py(node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError:
        return None


def _pairs(node: yaml.Node) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    out = []
    for key_node, value_node in node.value:
        key = _py(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if isinstance(key, str):
            out.append((key, key_node, value_node))
    return out


def _get(node: yaml.Node, key: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    for name, key_node, value_node in _pairs(node):
        if name == key:
            return key_node, value_node
    return None, None


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _str(value: str, mark: yaml.Mark) -> yaml.ScalarNode:
    return yaml.ScalarNode(STR, value, mark, mark)


def _bool(value: bool, mark: yaml.Mark) -> yaml.ScalarNode:
    return yaml.ScalarNode(BOOL, "true" if value else "false", mark, mark)


def _seq(items: list[yaml.Node], mark: yaml.Mark) -> yaml.SequenceNode:
    return yaml.SequenceNode(SEQ, items, mark, mark, flow_style=False)


def _map(pairs: list[tuple[str, yaml.Node]], mark: yaml.Mark) -> yaml.MappingNode:
    return yaml.MappingNode(MAP, [(_str(k, mark), v) for k, v in pairs], mark, mark)


def _disable(rule: yaml.MappingNode) -> None:
    if _get(rule, "enabled")[0] is None:
        rule.value.append((_str("enabled", rule.start_mark), _bool(False, rule.start_mark)))


def _is_false(node: yaml.Node | None) -> bool:
    return node is not None and _py(node) is False


def code_path(value: Any) -> str:
    """A syft-bg 0.3 path (relative to code/) as a path relative to the job folder."""
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return "code/" + text


def normalise_hash(value: Any) -> Any:
    """Lower-case hex and add the ``sha256:`` prefix 0.3 allowed to be left out.

    A short hash stays short: 0.3 compared hashes as prefixes, which this app
    refuses, so validation reports it with its line.
    """
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if not text.startswith("sha256:") and len(text) == 64 and set(text) <= HEX:
        text = "sha256:" + text
    return text


class _Migrator:
    def __init__(self, root: yaml.Node, filename: str) -> None:
        self.root = root
        self.filename = filename
        self.result = Migration()

    def where(self, node: yaml.Node | None, dotted: str) -> str:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return f"{self.filename}{line}: {dotted}"

    def warn(self, node: yaml.Node | None, dotted: str, message: str) -> None:
        self.result.warnings.append(f"{self.where(node, dotted)}: {message}")

    def _hash(self, node: yaml.Node, dotted: str) -> yaml.ScalarNode:
        """The normalised hash; a partial one is an error (0.3 matched prefixes)."""
        # The scalar's own text: an unquoted all-digit hash would read as a number.
        value = normalise_hash(node.value if isinstance(node, yaml.ScalarNode) else None)
        if isinstance(value, str) and HASH_RE.fullmatch(value):
            return _str(value, node.start_mark)
        self.result.errors.append(
            f"{self.where(node, dotted)}: {_py(node)!r} is not a full sha256 hash; this app "
            "compares all 64 hex digits (syft-bg 0.3 accepted a prefix): print the full one "
            "with: syft-bg hash FILE"
        )
        # Parsing fails on the error above; this stand-in only avoids a second report.
        return _str("sha256:" + "0" * 64, node.start_mark)

    # -- entry ---------------------------------------------------------------
    def run(self) -> Migration:
        _, approve = _get(self.root, "approve")
        if not isinstance(approve, yaml.MappingNode):
            return self.result
        self.approve = approve
        new_rules: list[yaml.Node] = []
        _, peers = _get(approve, "peers")
        if isinstance(peers, yaml.MappingNode) and any(
            _get(peers, k)[0] is not None for k in LEGACY_PEER_KEYS
        ):
            self._set("peers", self._peers(peers))
            self.result.rewrite.add("peers")
        auto_key, auto = _get(approve, "auto_approvals")
        existing: list[yaml.Node] = _items(auto)
        if isinstance(auto, yaml.MappingNode):
            existing = []
            new_rules += self._objects(auto)
            self.result.rewrite.add("auto_approvals")
        jobs_key, jobs = _get(approve, "jobs")
        if jobs_key is not None:
            new_rules += self._jobs(jobs)
            self._drop("jobs")
        for key, why in DROPPED_APPROVE_KEYS.items():
            key_node, _ = _get(approve, key)
            if key_node is not None:
                self.warn(key_node, f"approve.{key}", f"no longer used ({why}); ignored")
                self._drop(key)
        if new_rules:
            self._unique_names(existing, new_rules)
            mark = (auto_key or jobs_key or approve).start_mark
            self._set("auto_approvals", _seq(existing + new_rules, mark))
            self.result.rewrite.add("auto_approvals")
            self.result.migrated_rules.extend(new_rules)
        return self.result

    def _set(self, key: str, value: yaml.Node) -> None:
        for i, (key_node, _) in enumerate(self.approve.value):
            if _py(key_node) == key:
                self.approve.value[i] = (key_node, value)
                return
        self.approve.value.append((_str(key, value.start_mark), value))

    def _drop(self, key: str) -> None:
        self.approve.value = [(k, v) for k, v in self.approve.value if _py(k) != key]
        self.result.remove.add(key)

    def _unique_names(self, existing: list[yaml.Node], new_rules: list[yaml.Node]) -> None:
        taken = {_py(_get(r, "name")[1]) for r in existing if _get(r, "name")[1] is not None}
        for rule in new_rules:
            _, name_node = _get(rule, "name")
            name = base = _py(name_node)
            n = 2
            while name in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add(name)
            if name != base:
                name_node.value = name

    # -- peers ---------------------------------------------------------------
    def _peers(self, node: yaml.MappingNode) -> yaml.MappingNode:
        dotted = "approve.peers"
        _, domains = _get(node, "approved_domains")
        _, emails = _get(node, "approved_emails")
        email_items = _items(emails)
        enabled_key, enabled = _get(node, "enabled")
        auto_key, auto = _get(node, "auto_approve")
        extra_key, extra = _get(node, "auto_approve_emails")
        _, shared = _get(node, "auto_share_datasets")
        if extra_key is not None:
            email_items = email_items + _items(extra)
            self.warn(
                extra_key,
                f"{dotted}.auto_approve_emails",
                "syft-bg 0.3 form: became approve.peers.approved_emails",
            )
        if auto_key is not None:
            if _py(auto) is True:
                self.warn(
                    auto_key,
                    f"{dotted}.auto_approve",
                    "'true' accepted every peer request; this app never accepts everyone, "
                    "so nothing is auto-accepted from it: list the domains or emails you "
                    "trust in approve.peers.approved_domains / approved_emails",
                )
            else:
                self.warn(auto_key, f"{dotted}.auto_approve", "old form; removed (no effect)")
        kept_domains = _items(domains)
        if enabled_key is not None and _is_false(enabled):
            listed = [str(_py(n)) for n in kept_domains + email_items]
            self.warn(
                enabled_key,
                f"{dotted}.enabled",
                "syft-bg 0.3 form: 'false' turned peer auto-approval off, so "
                + (
                    f"{', '.join(listed)} {'is' if len(listed) == 1 else 'are'} not "
                    "auto-accepted; to accept them, remove 'enabled: false'"
                    if listed
                    else "nothing is auto-accepted"
                ),
            )
            kept_domains, email_items = [], []
        elif enabled_key is not None:
            self.warn(
                enabled_key,
                f"{dotted}.enabled",
                "syft-bg 0.3 form: removed (approved_domains and approved_emails apply)",
            )
        mark = node.start_mark
        fields = [
            ("approved_domains", _seq(kept_domains, domains.start_mark if domains else mark)),
            ("approved_emails", _seq(email_items, emails.start_mark if emails else mark)),
        ]
        # Keys of the current form written beside the old ones are kept as they are.
        _, rerequest = _get(node, "rerequest_after_days")
        if rerequest is not None:
            fields.append(("rerequest_after_days", rerequest))
        # syft-bg 0.3's key and this app's are the same: kept as written.
        if shared is not None:
            fields.append(("auto_share_datasets", shared))
        return _map(fields, mark)

    # -- syft-bg 0.3 objects ----------------------------------------------------
    def _objects(self, node: yaml.MappingNode) -> list[yaml.Node]:
        enabled_key, enabled = _get(node, "enabled")
        off = _is_false(enabled)
        rules: list[yaml.Node] = []
        for key, key_node, _ in _pairs(node):
            if key not in ("enabled", "objects"):
                self.warn(key_node, f"approve.auto_approvals.{key}", "unknown 0.3 key; ignored")
        _, objects = _get(node, "objects")
        entries = _pairs(objects)
        for item in _items(objects):
            # A list of objects, each with its own name, is read as well.
            name_key, name_value = _get(item, "name")
            if name_value is not None:
                entries.append((str(_py(name_value)), name_value, item))
        for name, name_node, obj in entries:
            dotted = f"approve.auto_approvals.objects.{name}"
            rule, broken = self._object(name, name_node, obj, dotted)
            if off or broken:
                _disable(rule)
            state = " It is disabled: approve.auto_approvals.enabled was false." if off else ""
            if broken:
                state += " It is disabled until its files are fixed."
            self.warn(
                name_node,
                dotted,
                f"syft-bg 0.3 object became rule '{name}' with paths relative to the job "
                f"folder (main.py -> code/main.py).{state} It approves nothing until run.sh "
                f"is pinned, e.g. with: {PIN_HINT.format(name=shlex.quote(name))}. "
                f"Note: {CRLF_NOTE}.",
            )
            rules.append(rule)
        if enabled_key is not None and not rules:
            self.warn(enabled_key, "approve.auto_approvals.enabled", "0.3 form; removed")
        return rules

    def _object(
        self, name: str, name_node: yaml.Node, obj: yaml.Node, dotted: str
    ) -> tuple[yaml.MappingNode, bool]:
        mark = name_node.start_mark
        files: list[tuple[yaml.Node, yaml.Node]] = []
        name_only: list[yaml.Node] = []
        broken = False
        peers_node: yaml.Node = _seq([], mark)
        for key, key_node, value in _pairs(obj):
            if key == "file_contents":
                for entry in _items(value):
                    _, rel = _get(entry, "relative_path")
                    if rel is None:
                        _, rel = _get(entry, "name")
                    pinned = self._pinned(entry, rel, f"{dotted}.file_contents", "entry")
                    if pinned is None:
                        broken = True
                    else:
                        files.append(pinned)
            elif key in ("file_paths", "file_names"):
                for item in _items(value):
                    name_only.append(_str(code_path(_py(item)), item.start_mark))
            elif key == "peers":
                peers_node = value
            elif key != "name":
                self.warn(key_node, f"{dotted}.{key}", "unknown 0.3 key; ignored")
        return self._rule(name, mark, peers_node, files, name_only), broken

    def _pinned(
        self, entry: yaml.Node, rel: yaml.Node | None, dotted: str, what: str
    ) -> tuple[yaml.Node, yaml.Node] | None:
        """(rule path under code/, hash) of an old-format content entry; None, with a
        warning, when it lacks a name or a hash."""
        _, digest = _get(entry, "hash")
        if rel is None or digest is None:
            self.warn(entry, dotted, f"{what} without a name or hash")
            return None
        return _str(code_path(_py(rel)), rel.start_mark), self._hash(digest, dotted)

    def _rule(
        self,
        name: str,
        mark: yaml.Mark,
        peers: yaml.Node,
        files: list[tuple[yaml.Node, yaml.Node]],
        name_only: list[yaml.Node],
    ) -> yaml.MappingNode:
        files_node = yaml.MappingNode(MAP, files, mark, mark)
        return _map(
            [
                ("name", _str(name, mark)),
                ("peers", peers),
                ("files", files_node),
                ("name_only", _seq(name_only, mark)),
            ],
            mark,
        )

    # -- the older approve.jobs forms -----------------------------------------
    def _jobs(self, node: yaml.Node | None) -> list[yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            return []
        enabled_key, enabled = _get(node, "enabled")
        off = _is_false(enabled)
        rules: list[yaml.Node] = []
        known = {
            "enabled",
            "peers",
            "allowed_script_hashes",
            "required_filenames",
            "allowed_users",
            "required_scripts",
            "peers_only",
        }
        for key, key_node, _ in _pairs(node):
            if key not in known:
                self.warn(key_node, f"approve.jobs.{key}", "unknown old key; ignored")
        peers_only_key, _ = _get(node, "peers_only")
        if peers_only_key is not None:
            self.warn(
                peers_only_key,
                "approve.jobs.peers_only",
                "removed: rules without peers apply to accepted peers only",
            )
        _, per_peer = _get(node, "peers")
        for email, email_node, entry in _pairs(per_peer):
            rule = self._per_peer(email, email_node, entry)
            if rule is not None:
                rules.append(rule)
        rules += self._allowed_hashes(node)
        for rule in rules:
            if off:
                _disable(rule)
        if off and rules:
            self.warn(
                enabled_key,
                "approve.jobs.enabled",
                "was false, so the rules migrated from approve.jobs are disabled "
                "(enabled: false on each)",
            )
        if not rules and not per_peer:
            self.warn(
                node,
                "approve.jobs",
                "old form with nothing to migrate; removed",
            )
        return rules

    def _per_peer(self, email: Any, email_node: yaml.Node, entry: yaml.Node) -> yaml.Node | None:
        dotted = f"approve.jobs.peers.{email}"
        mark = email_node.start_mark
        _, mode = _get(entry, "mode")
        mode_value = _py(mode) if mode is not None else "strict"
        if mode_value != "strict":
            self.warn(
                mode or email_node,
                f"{dotted}.mode",
                f"mode {mode_value!r} is not understood; nothing was migrated for {email}",
            )
            return None
        files = []
        broken = False
        for script in _items(_get(entry, "scripts")[1]):
            pinned = self._pinned(script, _get(script, "name")[1], f"{dotted}.scripts", "script")
            if pinned is None:
                broken = True
            else:
                files.append(pinned)
        rule_name = f"migrated-{email}"
        peers = _seq([_str(str(email), mark)], mark)
        rule = self._rule(rule_name, mark, peers, files, [])
        if broken or not files:
            _disable(rule)
        paths = ", ".join(_py(k) for k, _ in files) or "no scripts"
        self.warn(
            email_node,
            dotted,
            f"per-peer strict form became rule '{rule_name}' for {email} with content files "
            f"{paths}"
            + ("; it is disabled because a script entry is incomplete" if broken else "")
            + (". It is disabled: it lists no scripts" if not files else "")
            + f". {NEEDS_RUN_SH}{PIN_HINT.format(name=shlex.quote(rule_name))}",
        )
        return rule

    def _allowed_hashes(self, node: yaml.MappingNode) -> list[yaml.Node]:
        hashes_key, hashes = _get(node, "allowed_script_hashes")
        names_key, names = _get(node, "required_filenames")
        scripts_key, scripts = _get(node, "required_scripts")
        users_key, users = _get(node, "allowed_users")
        if hashes_key is None and names_key is None and scripts_key is None:
            if users_key is not None:
                self.warn(
                    users_key, "approve.jobs.allowed_users", "nothing to apply it to; removed"
                )
            return []
        anchor = hashes_key or names_key or scripts_key
        mark = anchor.start_mark
        peers = users if isinstance(users, yaml.SequenceNode) else _seq([], mark)
        who = (
            "for " + ", ".join(str(_py(u)) for u in _items(peers))
            if _items(peers)
            else "for every accepted peer"
        )
        name_items = _items(names)
        hash_items = _items(hashes)
        rules: list[yaml.Node] = []
        pinned: list[tuple[yaml.Node, yaml.Node]] = []
        for name, key_node, digest in _pairs(scripts):
            pinned.append(
                (
                    _str(code_path(name), key_node.start_mark),
                    self._hash(digest, f"approve.jobs.required_scripts.{name}"),
                )
            )
        pinned_names = {_py(k) for k, _ in pinned}
        others = [
            _str(code_path(_py(n)), n.start_mark)
            for n in name_items
            if code_path(_py(n)) not in pinned_names
        ]
        if not hash_items:
            rule = self._rule("migrated-required-files", mark, peers, pinned, others)
            rules.append(rule)
            self.warn(
                anchor,
                "approve.jobs",
                f"old form became rule 'migrated-required-files' {who}: "
                + ("content files " + ", ".join(_py(k) for k, _ in pinned) + "; " if pinned else "")
                + (
                    "files matched by name only (any content) " + ", ".join(_py(n) for n in others)
                    if others
                    else "no name-only files"
                )
                + f". {NEEDS_RUN_SH}"
                + PIN_HINT.format(name="migrated-required-files"),
            )
            return rules
        scripts_named = [n for n in others if str(_py(n)).lower().endswith(SCRIPT_SUFFIXES)]
        if len(scripts_named) != 1:
            listed = ", ".join(str(_py(h)) for h in hash_items)
            self.warn(
                hashes_key,
                "approve.jobs.allowed_script_hashes",
                f"cannot tell which file each of {listed} belongs to "
                "(required_filenames must name exactly one script for that); nothing was "
                "migrated from it, so no job is auto-approved by it: create a rule from a "
                "job you trust with syft-bg auto-approve --from-job <job>",
            )
            return rules
        script = scripts_named[0]
        rest = [n for n in others if n is not script]
        for i, digest in enumerate(hash_items, start=1):
            name = "migrated-allowed-script" + (f"-{i}" if len(hash_items) > 1 else "")
            files = [*pinned, (script, self._hash(digest, "approve.jobs.allowed_script_hashes"))]
            rule = self._rule(name, digest.start_mark, peers, files, list(rest))
            rules.append(rule)
            self.warn(
                digest,
                "approve.jobs.allowed_script_hashes",
                f"old form became rule '{name}' {who}: {_py(script)} pinned to this hash"
                + (
                    ", matched by name only (any content): " + ", ".join(_py(n) for n in rest)
                    if rest
                    else ""
                )
                + f". {NEEDS_RUN_SH}{PIN_HINT.format(name=shlex.quote(name))}",
            )
        return rules


def migrate(root: yaml.Node, filename: str) -> Migration:
    """Rewrite legacy approval forms in the composed tree ``root`` in place."""
    migrator = _Migrator(root, filename)
    _migrate_network(migrator)
    return migrator.run()


def _migrate_network(migrator: _Migrator) -> None:
    """``execute.network: true/false`` (before the three modes) becomes internet/off.

    The old ``true`` was the host's network, 127.0.0.1 included; it becomes
    ``internet``, which still installs packages but cannot reach the data
    owner's own services. YAML reads an unquoted ``off`` as false: that is the
    new spelling, not an old value, and passes silently.
    """
    _, execute = _get(migrator.root, "execute")
    key_node, value = _get(execute, "network") if execute is not None else (None, None)
    if not isinstance(value, yaml.ScalarNode) or value.tag != BOOL:
        return
    old = _py(value)
    if old is None:
        return
    mode = "internet" if old else "off"
    for i, (k, v) in enumerate(execute.value):
        if v is value:
            execute.value[i] = (k, _str(mode, value.start_mark))
    if value.value.lower() == "off":
        return
    if old:
        migrator.warn(
            key_node,
            "execute.network",
            f"{value.value} (the host's network, 127.0.0.1 included) is now 'internet': jobs "
            "reach package indexes but not this machine's services; write 'internet' to "
            "keep that, or 'host' for the host's network",
        )
    else:
        migrator.warn(
            key_node,
            "execute.network",
            f"{value.value} is now written 'off' (the same: loopback only)",
        )
