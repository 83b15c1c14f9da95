"""config.yaml: one declared schema that validates, documents and generates.

Every key the app reads is declared once in ``SCHEMA`` with its type, default
and a sentence of documentation. Loading walks the YAML node tree, so every
error names the file, the line and the dotted key, and an unknown key gets a
did-you-mean. The same declaration renders the sample written by ``init`` and
the key reference in the README.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.errors import ConfigError
from syft_bg_app.store.fsutil import YAML_LOADER

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)+$")
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and the sentence that documents it."""

    kind: str
    default: Any = None
    doc: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False
    fields: dict[str, Key] = field(default_factory=dict)
    example: Any = None


def section(doc: str, **fields: Key) -> Key:
    return Key("section", doc=doc, fields=fields)


RULE_FIELDS: dict[str, Key] = {
    "name": Key(
        "str",
        None,
        "Name of the rule (shown in emails and the audit log).",
        required=True,
    ),
    "peers": Key(
        "list_email",
        [],
        "Data scientists this rule applies to; empty means every accepted peer.",
    ),
    "files": Key(
        "hash_map",
        {},
        "Files matched by content: path relative to the job folder -> sha256:<hex>.",
    ),
    "name_only": Key(
        "list_relpath",
        [],
        "Files matched by name only (any content), relative to the job folder.",
    ),
    "timeout": Key(
        "int",
        None,
        "Per-rule wall-clock limit in seconds (default execute.timeout).",
        minimum=1,
    ),
    "enabled": Key(
        "bool",
        True,
        "false turns the rule off; remove-peer sets it when it removes the rule's last "
        "peer, because an empty peer list would mean every accepted peer.",
    ),
}

SCHEMA: dict[str, Key] = {
    "do_email": Key(
        "email",
        None,
        "The data owner's email: the datasite this app serves.",
        required=True,
        example="you@example.org",
    ),
    "syftbox_root": Key(
        "path",
        "~/SyftBox",
        "The SyftBox folder (holds <email>/ or datasites/<email>/).",
    ),
    "sync": section(
        "Seeing what changed in the datasite.",
        enabled=Key("bool", True, "Run the sync step in each pass."),
        incomplete_grace=Key(
            "int",
            900,
            "Seconds a job folder that is still arriving may stay incomplete; then it is "
            "rejected with a reason, or, when only files its config.yaml lists are "
            "absent (empty files are never synced), received without them.",
            minimum=0,
        ),
        max_job_mb=Key(
            "int",
            200,
            "A job whose files (run.sh and code/) add up to more megabytes than this is "
            "rejected on receipt.",
            minimum=1,
        ),
        max_job_files=Key(
            "int",
            10_000,
            "A job with more files and folders under code/ than this is rejected on "
            "receipt; the listing stops there, so such a job costs later passes nothing.",
            minimum=1,
        ),
        max_job_depth=Key(
            "int",
            32,
            "A job whose folders under code/ are nested deeper than this is rejected on receipt.",
            minimum=1,
            maximum=256,
        ),
        max_path_length=Key(
            "int",
            1024,
            "A job with a path (relative to its folder) longer than this many characters "
            "is rejected on receipt.",
            minimum=64,
            maximum=3072,
        ),
    ),
    "notify": section(
        "Emails about each event.",
        enabled=Key("bool", True, "Run the notify step in each pass."),
        transport=Key(
            "choice",
            "outbox",
            "How mail leaves: outbox (.eml files in <app home>/outbox), smtp or gmail.",
            choices=("outbox", "smtp", "gmail"),
        ),
        from_address=Key(
            "email",
            None,
            "Sender address of the emails (default do_email); SMTP servers often require "
            "one your account may send as.",
        ),
        from_name=Key("str", "syft-bg", "Sender name shown in mail clients."),
        templates_dir=Key(
            "path",
            None,
            "Folder with your own copies of the email templates; a template missing "
            "there is taken from the app's templates/.",
        ),
        digest_after=Key(
            "int",
            10,
            "More than this many emails for one recipient in one pass are sent as one "
            "digest email instead.",
            minimum=1,
        ),
        code_file_cap=Key(
            "int",
            51200,
            "Bytes of each file shown in the data owner's 'job submitted' email.",
            minimum=1024,
        ),
        code_total_cap=Key(
            "int",
            512000,
            "Bytes of code shown in total in one 'job submitted' email; the other files "
            "are listed by name.",
            minimum=1024,
        ),
        max_email_kb=Key(
            "int",
            2048,
            "Largest email in KiB. An email that would be larger is sent without the code "
            "it shows inline; one still larger is set aside (syft-bg mail list).",
            minimum=256,
        ),
        retry_budget=Key(
            "int",
            20,
            "Seconds one pass may spend delivering mail, retries included; what is left "
            "waits for the next pass.",
            minimum=1,
        ),
        heartbeat=Key(
            "bool",
            False,
            "Send the data owner a short 'still running' email every heartbeat_hours.",
        ),
        heartbeat_hours=Key("int", 24, "Hours between heartbeat emails.", minimum=1),
        smtp=section(
            "Sending through an SMTP server (notify.transport: smtp).",
            host=Key("str", None, "SMTP server name, e.g. smtp.example.org."),
            port=Key(
                "int",
                None,
                "SMTP port (default 587 for starttls, 465 for ssl, 25 for none).",
                minimum=1,
            ),
            security=Key(
                "choice",
                "starttls",
                "starttls (upgrade a plain connection), ssl (TLS from the start) or none "
                "(only for a relay on this machine).",
                choices=("starttls", "ssl", "none"),
            ),
            username=Key("str", None, "Login name; empty means no login."),
            password_env=Key(
                "str",
                None,
                "Name of the environment variable that holds the SMTP password.",
            ),
            password_file=Key(
                "path",
                None,
                "File holding the SMTP password (mode 0600; relative paths are under the "
                "app home).",
            ),
            ca_file=Key(
                "path",
                None,
                "Extra CA certificate (PEM) to trust for the server, e.g. for your own "
                "mail server's certificate.",
            ),
            timeout=Key("int", 30, "Seconds to wait for the SMTP server.", minimum=1),
        ),
        gmail=section(
            "Sending through the Gmail API (notify.transport: gmail).",
            credentials=Key(
                "path",
                "credentials.json",
                "OAuth client file from the Google Cloud console (relative paths are "
                "under the app home).",
            ),
            token=Key(
                "path",
                "gmail_token.json",
                "Where the Gmail sign-in token is kept (mode 0600; relative paths are "
                "under the app home).",
            ),
            api_endpoint=Key(
                "str",
                None,
                "Gmail API base URL; empty means Google's (set only to test against a "
                "local server).",
            ),
        ),
    ),
    "approve": section(
        "Automatic approval of peers and jobs.",
        enabled=Key("bool", True, "Run the approve step in each pass."),
        peers=section(
            "Which peer requests are accepted without the data owner.",
            approved_domains=Key(
                "list_domain",
                [],
                "Accept requests whose email domain is exactly one of these.",
            ),
            approved_emails=Key("list_email", [], "Accept requests from exactly these emails."),
            rerequest_after_days=Key(
                "int",
                7,
                "Days after the data owner rejects a peer request before a new request "
                "from the same data scientist is considered (and emailed about); "
                "`syft-bg peers block` ignores someone for good.",
                minimum=0,
            ),
        ),
        auto_approvals=Key(
            "list_rule",
            [],
            "Auto-approval objects: a job whose complete file set equals a rule's "
            "files (content by sha256, or name only) is approved.",
            fields=RULE_FIELDS,
        ),
    ),
    "execute": section(
        "Running approved jobs.",
        enabled=Key("bool", True, "Run the execute step in each pass."),
        timeout=Key("int", 600, "Wall-clock limit per job, in seconds.", minimum=1),
        max_concurrent=Key("int", 2, "Jobs running at the same time.", minimum=1),
        network=Key(
            "choice",
            "internet",
            "internet: jobs reach the internet (package indexes) through a user-mode network "
            "stack (slirp4netns), never this machine's own services (127.0.0.1, unix "
            "sockets); without slirp4netns or bwrap they run with network off. off: nothing "
            "but the job's own loopback. host: the host's network, 127.0.0.1 included (only "
            "when you write it). The old true became internet, false off.",
            choices=("off", "internet", "host"),
        ),
        sandbox=Key(
            "choice",
            "auto",
            "auto or bwrap: jobs run in bubblewrap, and wait (the pass says why) while it "
            "does not work; none: jobs run without isolation (never as root: an app run by "
            "root runs each as an unprivileged uid of its own).",
            choices=("auto", "bwrap", "none"),
        ),
        share_outputs=Key("bool", True, "Share a job's outputs/ with the submitting DS."),
        share_logs=Key("bool", True, "Share stdout/stderr/return code with the submitting DS."),
        memory_mb=Key(
            "int",
            4096,
            "Memory (address space, RLIMIT_AS) each job process may use, in MiB.",
            minimum=16,
        ),
        cpu_seconds=Key(
            "int",
            3600,
            "CPU time each job process may use (RLIMIT_CPU), in seconds.",
            minimum=1,
        ),
        file_size_mb=Key(
            "int",
            1024,
            "Largest file a job may write (RLIMIT_FSIZE), in MiB.",
            minimum=1,
        ),
        max_processes=Key(
            "int",
            256,
            "Processes a job may run at once (RLIMIT_NPROC on top of what its user already "
            "runs; the supervisor also stops a job that exceeds it).",
            minimum=4,
        ),
        output_cap_kb=Key(
            "int",
            1024,
            "KiB of stdout and of stderr kept per job; longer output keeps its head and "
            "tail with a marker where it was cut.",
            minimum=4,
        ),
        outputs_cap_mb=Key(
            "int",
            1024,
            "MiB of a job's code/outputs/ published to its results; files beyond it are "
            "left out, and stderr.txt says so.",
            minimum=1,
        ),
        disk_mb=Key(
            "int",
            1024,
            "MiB of disk a run may fill: under bwrap its $HOME and /tmp are tmpfs mounts "
            "of this size (memory-backed) and its job folder may hold this much; without "
            "bwrap job folder, home and tmp together; every file counts as at least 4 KiB. "
            "A job past it is stopped, and the data scientist is told.",
            minimum=1,
        ),
        min_free_disk_mb=Key(
            "int",
            256,
            "MiB that stay free on the disk of the run folders: jobs wait rather than "
            "start without execute.disk_mb above it, and a running job is stopped when "
            "free space falls below it (free inodes count as 4 KiB each), so the app's own "
            "writes keep working.",
            minimum=0,
        ),
        keep_days=Key(
            "int",
            7,
            "Days a finished run's folder (its logs and status, under "
            "/var/tmp/syft-bg-runs-*) is kept; the results in the datasite stay.",
            minimum=0,
        ),
        tools=Key(
            "list_str",
            ["uv"],
            "Programs from the app's PATH that jobs may run (syft-job python jobs need uv).",
        ),
        package_index_url=Key(
            "url",
            None,
            "Package index jobs install from (uv's UV_DEFAULT_INDEX; pip's PIP_INDEX_URL), "
            "e.g. a mirror on your network; jobs see it, so it holds no password. "
            "Empty: uv's default, PyPI.",
        ),
        ro_paths=Key(
            "list_path",
            [],
            "Extra host folders jobs may read (read-only under bwrap), e.g. a dataset folder.",
        ),
        backend=Key(
            "choice",
            "local",
            "Where approved jobs run: local (this machine) or slurm (a Slurm cluster, through "
            "sbatch; needs execute.slurm.run_folder). The pass does not hand runs to Slurm "
            "yet: see 'Running jobs on a cluster' in the README.",
            choices=("local", "slurm"),
        ),
        slurm=section(
            "Running jobs on a Slurm cluster (execute.backend: slurm).",
            partition=Key("str", None, "Partition jobs are submitted to; empty: the default."),
            account=Key("str", None, "Account jobs are charged to; empty: your default."),
            run_folder=Key(
                "path",
                None,
                "Folder for the runs' files, on a filesystem the compute nodes share with "
                "this machine; required with slurm.",
            ),
            sbatch_options=Key(
                "list_str",
                [],
                "Extra sbatch options, each written --name=value (e.g. --qos=normal); "
                "options the app sets itself (time, memory, partition, output ...) are "
                "refused.",
            ),
            commands_timeout=Key(
                "int",
                30,
                "Seconds to wait for a Slurm command (sbatch, squeue, sacct, scancel); one "
                "that does not answer leaves the run's state unknown until a later pass.",
                minimum=1,
            ),
        ),
    ),
    "schedule": section(
        "When passes run by themselves (syft-bg install: a systemd user timer or a crontab line).",
        interval=Key(
            "int",
            60,
            "Seconds between passes; cron counts in whole minutes, so there it is rounded up "
            "to a minute. Run syft-bg install again after changing it.",
            minimum=10,
        ),
        idle_check=Key(
            "bool",
            True,
            "Start each pass with a check of a few file stats: when nothing the last full "
            "pass depended on changed and nothing time-based is due, the pass ends there. "
            "Off: every pass runs in full.",
        ),
    ),
    "log": section(
        "Log files in <app home>/logs.",
        level=Key(
            "choice",
            "info",
            "Log level.",
            choices=("debug", "info", "warning", "error"),
        ),
        max_bytes=Key("int", 1_000_000, "Size at which a log file is rotated.", minimum=10_000),
        backups=Key("int", 5, "Rotated log files kept.", minimum=0),
    ),
}


def _default_tree(fields: dict[str, Key]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, key in fields.items():
        if key.kind == "section":
            tree[name] = _default_tree(key.fields)
        else:
            tree[name] = _copy(key.default)
    return tree


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass
class Config:
    """A validated configuration: every key present, defaults filled in."""

    data: dict[str, Any]
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def do_email(self) -> str:
        return self.data["do_email"]

    @property
    def syftbox_root(self) -> Path:
        return Path(os.path.expanduser(self.data["syftbox_root"]))

    def step_enabled(self, step: str) -> bool:
        return bool(self.data[step]["enabled"])


class _Problems:
    """Collects every problem so the user sees all of them at once."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, dotted: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f"{dotted}: " if dotted else ""
        self.items.append(f"{self.filename}{line}: {where}{message}")


_SCALAR_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALAR_LOADER.construct_object(node, deep=True)


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = _scalar(node)
    if value is None:
        return "empty"
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (allowed: {', '.join(allowed)})"


def _mapping_items(
    node: yaml.MappingNode, dotted: str, problems: _Problems
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    seen: set[str] = set()
    items = []
    for key_node, value_node in node.value:
        key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            problems.add(key_node, dotted, f"keys must be words, got {_describe(key_node)}")
            continue
        if key in seen:
            problems.add(key_node, _join(dotted, key), "appears twice")
            continue
        seen.add(key)
        items.append((key, key_node, value_node))
    return items


def _join(dotted: str, name: str) -> str:
    return f"{dotted}.{name}" if dotted else name


def _check_fields(
    node: yaml.Node, fields: dict[str, Key], dotted: str, problems: _Problems
) -> dict[str, Any]:
    out = _default_tree(fields)
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, dotted, f"must be a mapping of keys, got {_describe(node)}")
        return out
    present = set()
    for name, key_node, value_node in _mapping_items(node, dotted, problems):
        here = _join(dotted, name)
        spec = fields.get(name)
        if spec is None:
            problems.add(key_node, here, "unknown key" + _did_you_mean(name, list(fields)))
            continue
        present.add(name)
        if spec.kind == "section":
            out[name] = _check_fields(value_node, spec.fields, here, problems)
        else:
            out[name] = _check_value(value_node, spec, here, problems)
    for name, spec in fields.items():
        if spec.required and name not in present:
            problems.add(node if node.value else None, _join(dotted, name), "is required")
    return out


def _check_list(
    node: yaml.Node,
    dotted: str,
    problems: _Problems,
    item: Callable[[yaml.Node, str], Any],
) -> list[Any]:
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, dotted, f"must be a list, got {_describe(node)}")
        return []
    return [item(child, f"{dotted}[{i}]") for i, child in enumerate(node.value)]


def _check_value(node: yaml.Node, spec: Key, dotted: str, problems: _Problems) -> Any:
    kind = spec.kind
    if kind.startswith("list_") and kind != "list_rule":
        scalar_kind = kind[len("list_") :]
        one = Key(scalar_kind)
        return _check_list(node, dotted, problems, lambda n, d: _check_value(n, one, d, problems))
    if kind == "list_rule":
        return _check_list(
            node,
            dotted,
            problems,
            lambda n, d: _check_fields(n, spec.fields, d, problems),
        )
    if kind == "hash_map":
        return _check_hash_map(node, dotted, problems)
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, dotted, f"must be a single value, got {_describe(node)}")
        return _copy(spec.default)
    value = _scalar(node)
    if value is None and not spec.required:
        return _copy(spec.default)
    checker = _SCALAR_CHECKS[kind]
    ok, result, message = checker(value, spec)
    if not ok:
        problems.add(node, dotted, message)
        return _copy(spec.default)
    return result


def _check_hash_map(node: yaml.Node, dotted: str, problems: _Problems) -> dict[str, str]:
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, dotted, f"must map file paths to sha256 hashes, got {_describe(node)}")
        return {}
    out = {}
    for name, key_node, value_node in _mapping_items(node, dotted, problems):
        here = f"{dotted}[{name!r}]"
        ok, path, message = _check_path_like(name, Key("path"))
        if not ok:
            problems.add(key_node, here, message)
            continue
        value = _scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not HASH_RE.match(value):
            problems.add(
                value_node,
                here,
                f"must be 'sha256:' followed by 64 lowercase hex digits, got "
                f"{_describe(value_node)} (print one with: syft-bg hash FILE)",
            )
            continue
        out[path] = value
    return out


def _check_str(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value.strip():
        return True, value.strip(), ""
    return (
        False,
        None,
        f"must be a non-empty text, got {type(value).__name__} {value!r}",
    )


def _check_url(value: Any, spec: Key) -> tuple[bool, Any, str]:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        return False, None, f"must be an http(s) URL, got {type(value).__name__} {value!r}"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, None, f"must be an http(s) URL, got {value!r}"
    if parts.username or parts.password:
        # Jobs see this URL: a password in it would reach every job.
        return False, None, "must not hold a user name or password (jobs see it)"
    return True, value.strip(), ""


def _check_email(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and EMAIL_RE.fullmatch(value.strip()):
        return True, value.strip().lower(), ""
    return False, None, f"must be an email address like name@example.org, got {value!r}"


def _check_domain(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str):
        candidate = value.strip().lower()
        if candidate.startswith("@"):
            return (
                False,
                None,
                f"must be a bare domain like openmined.org, got {value!r}",
            )
        if DOMAIN_RE.match(candidate):
            return True, candidate, ""
    return False, None, f"must be a domain like openmined.org, got {value!r}"


def _check_path(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value.strip():
        return True, value.strip(), ""
    return False, None, f"must be a path, got {type(value).__name__} {value!r}"


def _check_path_like(value: Any, spec: Key) -> tuple[bool, Any, str]:
    """A path inside a job folder: relative, no '..', forward slashes."""
    if not isinstance(value, str) or not value.strip():
        return False, None, f"must be a relative path, got {value!r}"
    parts = value.strip().replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or "" in parts or "." in parts:
        return (
            False,
            None,
            f"must be a plain relative path inside the job folder, got {value!r}",
        )
    return True, "/".join(parts), ""


def _check_int(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return (
            False,
            None,
            f"must be a whole number, got {type(value).__name__} {value!r}",
        )
    if spec.minimum is not None and value < spec.minimum:
        return False, None, f"must be at least {spec.minimum}, got {value}"
    if spec.maximum is not None and value > spec.maximum:
        return False, None, f"must be at most {spec.maximum}, got {value}"
    return True, value, ""


def _check_bool(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, bool):
        return True, value, ""
    return False, None, f"must be true or false, got {type(value).__name__} {value!r}"


def _check_choice(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value in spec.choices:
        return True, value, ""
    close = difflib.get_close_matches(str(value), list(spec.choices), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return False, None, f"must be one of {', '.join(spec.choices)}, got {value!r}{hint}"


_SCALAR_CHECKS: dict[str, Callable[[Any, Key], tuple[bool, Any, str]]] = {
    "str": _check_str,
    "email": _check_email,
    "domain": _check_domain,
    "path": _check_path,
    "relpath": _check_path_like,
    "int": _check_int,
    "bool": _check_bool,
    "choice": _check_choice,
    "url": _check_url,
}


def parse_config(text: str, filename: str = "config.yaml") -> Config:
    """Validate config text; raise ConfigError listing every problem."""
    problems = _Problems(filename)
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise ConfigError(
            f"{filename}{line}: not valid YAML: {exc.problem or exc}{context}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: not valid YAML: {exc}") from None
    if root is None:
        raise ConfigError(
            f"{filename}: the file is empty; write one with: syft-bg init -e YOUR_EMAIL"
        )
    # Older approval forms become canonical first, so validation sees (and its
    # errors name the lines of) what the user wrote.
    from syft_bg_app.config.migrate import migrate, review_rules

    migration = migrate(root, filename)
    problems.items.extend(migration.errors)
    try:
        data = _check_fields(root, SCHEMA, "", problems)
    except yaml.MarkedYAMLError as exc:
        # A node the safe loader cannot build (an unknown tag such as '=' or '!!python').
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{filename}{line}: unsupported YAML value: {exc.problem}") from None
    _check_backend(root, data, problems)
    if problems.items:
        raise ConfigError("\n".join(problems.items))
    warnings = migration.warnings + review_rules(
        root, data["approve"]["auto_approvals"], filename, migration
    )
    return Config(data=data, path=Path(filename), warnings=warnings)


def _node_at(root: yaml.Node, dotted: str) -> yaml.Node | None:
    """The YAML node of ``dotted`` (the deepest one written), for an error's line."""
    node = root
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        child = next(
            (value for key, value in node.value if getattr(key, "value", None) == part), None
        )
        if child is None:
            break
        node = child
    return node


def _check_backend(root: yaml.Node, data: dict[str, Any], problems: _Problems) -> None:
    """Keys that depend on execute.backend."""
    slurm = data["execute"]["slurm"]
    if data["execute"]["backend"] == "slurm" and not slurm["run_folder"]:
        problems.add(
            _node_at(root, "execute.backend"),
            "execute.slurm.run_folder",
            "is required with execute.backend: slurm",
        )
    from syft_bg_app.execution.backends.slurm import sbatch_option_problem

    for index, option in enumerate(slurm["sbatch_options"]):
        problem = sbatch_option_problem(option)
        if problem:
            dotted = f"execute.slurm.sbatch_options[{index}]"
            options = _node_at(root, "execute.slurm.sbatch_options")
            if isinstance(options, yaml.SequenceNode) and index < len(options.value):
                options = options.value[index]
            problems.add(options, dotted, problem)


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration yet. Create one with:\n"
            f"  syft-bg init -e YOUR_EMAIL [-r SYFTBOX_FOLDER]\n"
            f"or try the app on a throwaway datasite with: ./run.sh --demo"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    config = parse_config(text, str(path))
    config.path = path
    return config


def config_from_values(**values: Any) -> Config:
    """A Config from keyword values (tests, the Python API), validated like a file."""
    return parse_config(yaml.safe_dump(values), "<values>")


# -- documentation generated from the schema ---------------------------------


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def render_sample(do_email: str, syftbox_root: str) -> str:
    """The commented config.yaml that ``init`` writes."""
    lines = [
        "# syft-bg configuration. Every key is optional except do_email;",
        "# the values below are the defaults. Reference: README.md, 'Configuration'.",
    ]
    given = {"do_email": do_email, "syftbox_root": syftbox_root}

    def emit(fields: dict[str, Key], indent: str) -> None:
        for name, key in fields.items():
            lines.append(f"{indent}# {key.doc}")
            if key.kind == "section":
                lines.append(f"{indent}{name}:")
                emit(key.fields, indent + "  ")
            else:
                value = given.get(name, key.default) if not indent else key.default
                lines.append(f"{indent}{name}: {_yaml_value(value)}")

    emit(SCHEMA, "")
    return "\n".join(lines) + "\n"


def reference_rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every key, for the README table."""
    rows: list[tuple[str, str, str]] = []

    def row(dotted: str, key: Key) -> None:
        default = "(required)" if key.required else _yaml_value(key.default)
        doc = key.doc + (f" One of: {', '.join(key.choices)}." if key.choices else "")
        rows.append((dotted, default, doc))

    def walk(fields: dict[str, Key], prefix: str) -> None:
        for name, key in fields.items():
            dotted = _join(prefix, name)
            if key.kind == "section":
                walk(key.fields, dotted)
                continue
            row(dotted, key)
            if key.kind == "list_rule":
                for sub, subkey in key.fields.items():
                    row(f"{dotted}[].{sub}", subkey)

    walk(SCHEMA, "")
    return rows


def render_reference() -> str:
    """The README's configuration table (kept identical by a test)."""
    out = ["| key | default | meaning |", "|---|---|---|"]
    for dotted, default, doc in reference_rows():
        doc = doc.replace("<", "&lt;").replace(">", "&gt;")
        out.append(f"| `{dotted}` | `{default}` | {doc} |")
    return "\n".join(out) + "\n"


README_START = (
    "<!-- config-reference:start (generated: .venv/bin/python -m syft_bg_app.config.load) -->"
)
README_END = "<!-- config-reference:end -->"
EXAMPLE_EMAIL, EXAMPLE_ROOT = "you@example.org", "~/SyftBox"


def write_docs(repo: Path) -> None:
    """Regenerate the README's key table and examples/config.yaml from the schema."""
    readme = repo / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(README_START + "\n")
    _, _, tail = rest.partition(README_END)
    readme.write_text(f"{head}{README_START}\n{render_reference()}{README_END}{tail}")
    (repo / "examples" / "config.yaml").write_text(render_sample(EXAMPLE_EMAIL, EXAMPLE_ROOT))


if __name__ == "__main__":
    write_docs(Path(__file__).resolve().parents[2])
