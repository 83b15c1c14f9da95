"""Every key of config.yaml, declared once: type, default, allowed values, doc.

This module is the leaf of the config package: it imports nothing of the app,
so anything (rules, migration, the CLI's cheap start) may import it. Loading
and validation (``load``), migration of older forms (``migrate``), the
generated documentation (``docs``) and the editor (``editor``) all read the
declaration here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)+$")
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

# The file that runs: a rule approves nothing unless it pins this by content.
RUN_SH = "run.sh"
# How to pin run.sh into rule {name}; shown wherever a rule still needs it.
PIN_HINT = (
    "syft-bg auto-approve --from-job <a job you trust> -n {name}  "
    "(or: syft-bg auto-approve <job folder>/run.sh -b <job folder> -n {name})"
)


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
    "datasets": Key(
        "list_str",
        [],
        "Datasets (by name) a job this rule approves may declare in its config.yaml; a "
        "job that declares any other stays pending.",
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
        transport=Key(
            "choice",
            "local",
            "What keeps the datasite folder up to date: local (a SyftBox client syncs the "
            "folder; the app only reads it) or drive (the app is the data owner's side of "
            "the syft-client Google Drive protocol, see drive.*).",
            choices=("local", "drive"),
        ),
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
    "drive": section(
        "Sync over Google Drive (sync.transport: drive), in the protocol of syft-client.",
        generation=Key(
            "choice",
            "0.10",
            "Which syft-client generation the data scientists run: '0.10' (the syft "
            "package, 0.10.x) or '0.1' (syft-client 0.1.x). Quote it: YAML reads 0.10 "
            "unquoted as the number 0.1.",
            choices=("0.10", "0.1"),
        ),
        token=Key(
            "path",
            "drive_token.json",
            "Where the Google Drive sign-in token is kept (an authorized-user JSON file, "
            "mode 0600; relative paths are under the app home).",
        ),
        api_endpoint=Key(
            "str",
            None,
            "Base URL every Drive call goes to instead of https://www.googleapis.com/ "
            "(uploads and batches included); empty means Google's (set only to test "
            "against a local server).",
        ),
        retry_budget=Key(
            "int",
            60,
            "Seconds one pass may spend waiting to retry Drive requests that failed for a "
            "reason Drive calls temporary (429, 5xx, rate limits, no connection); past it a "
            "failing request fails the sync step and the next pass tries again.",
            minimum=1,
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
            auto_share_datasets=Key(
                "list_str",
                [],
                "Datasets (by name, see `syft-bg datasets`) shared with each peer as it is "
                "accepted, automatically or by hand.",
            ),
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
        email_replies=section(
            "Deciding jobs by replying to their 'job submitted' email.",
            enabled=Key(
                "bool",
                False,
                "Read the data owner's replies to 'job submitted' emails each pass: a reply "
                "from do_email whose first line is approve, auto-approve or deny REASON "
                "decides the job (Gmail with notify.transport: gmail, else IMAP).",
            ),
            imap=section(
                "The mailbox replies are read from (for notify.transport smtp or outbox).",
                host=Key("str", None, "IMAP server name, e.g. imap.example.org."),
                port=Key(
                    "int",
                    None,
                    "IMAP port (default 993 for ssl, 143 for starttls and none).",
                    minimum=1,
                ),
                security=Key(
                    "choice",
                    "ssl",
                    "ssl (TLS from the start), starttls (upgrade a plain connection) or "
                    "none (only for a server on this machine).",
                    choices=("ssl", "starttls", "none"),
                ),
                username=Key("str", None, "Login name (default notify.smtp.username)."),
                password_env=Key(
                    "str",
                    None,
                    "Name of the environment variable that holds the IMAP password.",
                ),
                password_file=Key(
                    "path",
                    None,
                    "File holding the IMAP password (mode 0600; relative paths are under the "
                    "app home). With neither, the SMTP password is used.",
                ),
                ca_file=Key(
                    "path",
                    None,
                    "Extra CA certificate (PEM) to trust for the server.",
                ),
                folder=Key("str", "INBOX", "The folder replies arrive in."),
                timeout=Key("int", 30, "Seconds to wait for the IMAP server.", minimum=1),
            ),
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
            "sockets); when the app runs as root, nor this machine's other addresses and "
            "private networks (nftables); without slirp4netns or bwrap they run with "
            "network off. off: nothing but the job's own loopback. host: the host's network, "
            "127.0.0.1 included (only when you write it). The old true became internet, "
            "false off.",
            choices=("off", "internet", "host"),
        ),
        network_allow=Key(
            "list_cidr",
            [],
            "Networks (CIDR, e.g. 192.168.1.0/24) that jobs under network internet may reach "
            "although they are private or this machine's own, e.g. a package mirror on your "
            "LAN. Only an app run as root blocks private networks at all (nftables).",
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
        prepare=Key(
            "choice",
            "none",
            "uv: before a job runs, the app fetches the packages of its run.sh's literal uv "
            "pip install / pip install lines (and a python job's config.yaml dependencies), "
            "wheels only, into a uv cache shared by all jobs; the job then runs with network "
            "off, uv offline from that cache. none: jobs fetch what they need themselves, "
            "over execute.network.",
            choices=("none", "uv"),
        ),
        ro_paths=Key(
            "list_path",
            [],
            "Extra host folders every job may read (read-only under bwrap), e.g. a Python "
            "environment; private data belongs in `syft-bg datasets`, shown only to the jobs "
            "that declare it. The app home and the SyftBox folder are never shown through "
            "them.",
        ),
        backend=Key(
            "choice",
            "local",
            "Where approved jobs run: local (this machine) or slurm (a Slurm cluster, through "
            "sbatch, in the same sandbox on the node; needs execute.slurm.run_folder): see "
            "'Running jobs on a cluster' in the README.",
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
                "this machine at the same path; required with slurm.",
            ),
            cpus=Key(
                "int",
                1,
                "CPUs each run gets on its node (sbatch --cpus-per-task).",
                minimum=1,
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


def default_tree(fields: dict[str, Key]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, key in fields.items():
        if key.kind == "section":
            tree[name] = default_tree(key.fields)
        else:
            tree[name] = copy_default(key.default)
    return tree


def copy_default(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def join_key(dotted: str, name: str) -> str:
    """``name`` under the dotted key ``dotted`` ("" is the top)."""
    return f"{dotted}.{name}" if dotted else name


def find_key(dotted: str) -> Key | None:
    """The declaration of a dotted key (a section or a value), or None.

    ``approve.auto_approvals[].name`` names a field of each rule.
    """
    fields: dict[str, Key] = SCHEMA
    found: Key | None = None
    for part in dotted.split("."):
        found = fields.get(part.removesuffix("[]"))
        if found is None:
            return None
        if part.endswith("[]"):
            if found.kind != "list_rule":
                return None
            fields = found.fields
        else:
            # Only a section has keys under it; a rule's fields are reached with "[]".
            fields = found.fields if found.kind == "section" else {}
    return found
