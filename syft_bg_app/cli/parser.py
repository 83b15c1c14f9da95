"""Every command's argparse definition, in one place.

A command's handler is named as ``"module.function"`` under ``syft_bg_app.cli``
and imported only when that command runs, so building the parser imports no
action.
"""

from __future__ import annotations

import argparse

from syft_bg_app import __version__
from syft_bg_app.datasite.layout import JOB_STATUSES
from syft_bg_app.steps import STEPS
from syft_bg_app.store.home import AppHome

JOB_HELP = "the job: DS_EMAIL/JOB_NAME, or JOB_NAME when only one DS used that name"


def app_home(args: argparse.Namespace) -> AppHome:
    """The app home a command works on: --home, else $SYFT_BG_HOME, else ~/.syft-bg."""
    return AppHome.resolve(getattr(args, "home", None))


def _add(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: str | None,
    help_text: str,
    example: str,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def _group(parser: argparse.ArgumentParser, name: str) -> argparse._SubParsersAction:
    return parser.add_subparsers(title=f"{name} commands", metavar="ACTION", required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syft-bg",
        description=(
            "Background app for a SyftBox data owner: each pass receives peer requests "
            "and jobs, emails about them, auto-approves what your rules trust, and runs "
            "approved jobs in a sandbox."
        ),
        epilog=(
            "examples:\n"
            "  syft-bg init -e you@example.org -r ~/SyftBox\n"
            "  syft-bg run --once\n"
            "  syft-bg jobs list --status pending\n"
            "  syft-bg jobs approve alice@uni.edu/my-analysis\n"
            "app home: ~/.syft-bg (override with SYFT_BG_HOME or --home)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"syft-bg {__version__}")
    parser.add_argument("--home", help="app home folder (default: $SYFT_BG_HOME or ~/.syft-bg)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _setup_commands(sub)
    _job_commands(sub)
    _peer_commands(sub)
    _dataset_commands(sub)
    _rule_commands(sub)
    _mail_commands(sub)
    _operating_commands(sub)
    _schedule_commands(sub)
    _data_scientist_commands(sub)
    p = _add(
        sub,
        "demo",
        "owner.demo",
        "Build a throwaway datasite with a peer request and a job, and run passes on it.",
        "syft-bg demo",
    )
    p.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    return parser


def _setup_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(
        sub,
        "init",
        "owner.init",
        "Write config.yaml and prepare the datasite's job folders and permission files.",
        "syft-bg init -e you@example.org -r ~/SyftBox",
    )
    p.epilog = (
        "example:\n"
        "  syft-bg init -e you@example.org -r ~/SyftBox\n"
        "over Google Drive (the SyftBox folder is created; no SyftBox client needed):\n"
        "  syft-bg init -e you@example.org -r ~/SyftBox -t ~/.syft-bg-0.3/token.json\n"
        "  syft-bg init -e you@example.org -r ~/SyftBox --drive client_secret.json --port 8765\n"
        "an existing config.yaml switched to Google Drive:\n"
        "  syft-bg init -t TOKEN_JSON"
    )
    p.add_argument(
        "-e",
        "--email",
        help="your (the data owner's) email; needed to write a new config.yaml, not with "
        "-t/--drive/--gmail on an existing one",
    )
    p.add_argument(
        "-r",
        "--syftbox-root",
        help="SyftBox folder (default: the one the SyftBox client's config names, "
        "else ~/SyftBox); it must exist unless --create (with -t/--drive it is created: "
        "over Google Drive the app syncs it)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing config.yaml")
    p.add_argument(
        "--create",
        action="store_true",
        help="create the SyftBox folder when it does not exist yet",
    )
    p.add_argument(
        "--link-bin",
        action="store_true",
        help="put a syft-bg launcher of this app in ~/.local/bin (alone: only that)",
    )
    p.add_argument("--bin-dir", help="where --link-bin writes syft-bg (default ~/.local/bin)")
    p.add_argument(
        "--gmail",
        metavar="CREDENTIALS_JSON",
        help="sign in to Gmail with this OAuth client file (Desktop app, from the Google "
        "Cloud console) and send notifications through Gmail; with an existing "
        "config.yaml only the sign-in is done",
    )
    p.add_argument(
        "--gmail-port",
        "--port",
        dest="gmail_port",
        type=int,
        default=0,
        metavar="PORT",
        help="local port for Google's redirect during the --gmail or --drive sign-in "
        "(default: a free one)",
    )
    drive = p.add_mutually_exclusive_group()
    drive.add_argument(
        "-t",
        "--token-path",
        metavar="TOKEN_JSON",
        help="sync over Google Drive with this authorized-user token (as syft-bg 0.3 keeps "
        "at ~/.syft-bg/token.json): checked, copied to drive.token (0600), and "
        "sync.transport set to drive",
    )
    drive.add_argument(
        "--drive",
        metavar="CREDENTIALS_JSON",
        help="sign in to Google Drive with this OAuth client file (Desktop app): prints an "
        "address to open in any browser; with --gmail or notify.transport: gmail one "
        "token carries both; sets sync.transport: drive",
    )

    p = _add(
        sub,
        "run",
        "main.pass_command",
        "Run one pass: sync, notify, approve, execute; then exit.",
        "syft-bg run --once",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one pass (the default; every pass is one-shot)",
    )
    _add(
        sub,
        "status",
        "owner.status",
        "Show the last pass, each step and what is waiting.",
        "syft-bg status",
    )


def _job_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "jobs", None, "List, inspect, approve and reject jobs.", "syft-bg jobs list")
    jobs = _group(p, "jobs")
    q = _add(
        jobs,
        "list",
        "owner.jobs_list",
        "List jobs and their status.",
        "syft-bg jobs list --status pending",
    )
    q.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    q.add_argument("--tag", help="only jobs their data scientist tagged with TAG")
    q.add_argument("--json", action="store_true", help="print the jobs as a JSON list")
    q = _add(
        jobs,
        "show",
        "owner.jobs_show",
        "Show a job's state, why it is pending, its files with the text of run.sh and "
        "code/, and its results (paged on a terminal).",
        "syft-bg jobs show alice@uni.edu/my-analysis --files",
    )
    q.add_argument("job", help=JOB_HELP)
    shown = q.add_mutually_exclusive_group()
    shown.add_argument(
        "--files",
        action="store_true",
        help="list the files and their sizes only, without their text",
    )
    shown.add_argument(
        "--code",
        action="store_true",
        help="print the text of run.sh and code/ (the default; bidi controls marked)",
    )
    q.add_argument(
        "--json",
        action="store_true",
        help="print the page as one JSON object (files with their SHA-256; code unless --files)",
    )
    q = _add(
        jobs,
        "approve",
        "owner.jobs_approve",
        "Approve a pending job; the next pass runs it.",
        "syft-bg jobs approve alice@uni.edu/my-analysis",
    )
    q.add_argument("job", help=JOB_HELP)
    q.add_argument("-r", "--reason", help="note recorded with the approval")
    q = _add(
        jobs,
        "reject",
        "owner.jobs_reject",
        "Reject a job; the reason is sent to the data scientist.",
        'syft-bg jobs reject alice@uni.edu/my-analysis -r "reads raw rows"',
    )
    q.add_argument("job", help=JOB_HELP)
    q.add_argument("-r", "--reason", help="why (sent to the data scientist)")
    q = _add(
        jobs,
        "rerun",
        "owner.jobs_rerun",
        "Run a done or failed job again (from its approval snapshot) in the next pass.",
        "syft-bg jobs rerun alice@uni.edu/my-analysis",
    )
    q.add_argument("job", help=JOB_HELP)
    q.add_argument(
        "--fresh-snapshot",
        action="store_true",
        help="run the job's current files instead of the approval snapshot "
        "(review them first; for jobs approved outside syft-bg)",
    )
    q = _add(
        jobs,
        "mine",
        "ds.jobs_mine",
        "List the jobs you submitted to any data owner, their status and results.",
        "syft-bg jobs mine --as alice@uni.edu",
    )
    q.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    _identity_options(q)


def _peer_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "peers", None, "List, accept, reject and block peers.", "syft-bg peers list")
    peers = _group(p, "peers")
    _add(peers, "list", "owner.peers_list", "List peers and peer requests.", "syft-bg peers list")
    q = _add(
        peers,
        "accept",
        "owner.peers_accept",
        "Accept a peer: creates their inbox (write) and review (read) folders.",
        "syft-bg peers accept alice@uni.edu",
    )
    q.add_argument("email")
    q = _add(
        peers,
        "reject",
        "owner.peers_reject",
        "Reject a peer request.",
        'syft-bg peers reject mallory@evil.example -r "unknown to us"',
    )
    q.add_argument("email")
    q.add_argument("-r", "--reason", help="why (written to the requester's folder)")
    q = _add(
        peers,
        "block",
        "owner.peers_block",
        "Ignore a data scientist for good: no request is read, no job received.",
        "syft-bg peers block mallory@evil.example",
    )
    q.add_argument("email")
    q.add_argument("-r", "--reason", help="why (kept in the audit log, not sent)")
    q = _add(
        peers,
        "unblock",
        "owner.peers_unblock",
        "Undo 'peers block': the data scientist is what they were before.",
        "syft-bg peers unblock mallory@evil.example",
    )
    q.add_argument("email")
    q = _add(
        peers,
        "request",
        "ds.peers_request",
        "Ask a data owner to accept you as a peer (so you may submit jobs).",
        'syft-bg peers request owner@datasite.org -m "Alice, Uni stats group"',
    )
    q.add_argument("do_email", metavar="DO_EMAIL")
    q.add_argument("-m", "--message", help="a note the data owner sees")
    _identity_options(q)


def _dataset_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(
        sub,
        "datasets",
        None,
        "Publish mock data to chosen peers; keep the private data for their jobs.",
        "syft-bg datasets list",
    )
    datasets = _group(p, "datasets")
    q = _add(
        datasets,
        "create",
        "datasets.create",
        "Create a dataset: mock files published in the datasite for the users it is "
        "shared with, private files copied under the app home (never synced).",
        "syft-bg datasets create census --mock ./mock.csv --private ./census.csv --share any",
    )
    q.add_argument(
        "name",
        help="the dataset's name, as jobs ask for it (letters, digits, '_', '-', '.'; at most 64)",
    )
    q.add_argument("--mock", required=True, metavar="PATH", help="mock file or folder")
    q.add_argument("--private", required=True, metavar="PATH", help="private file or folder")
    q.add_argument(
        "--share",
        action="append",
        default=[],
        metavar="EMAIL|any",
        help="who may read the mock data ('any': every accepted peer, also later ones); "
        "repeat it for more users",
    )
    q.add_argument("--summary", help="one line describing the dataset")
    q = _add(datasets, "list", "datasets.list_", "List datasets.", "syft-bg datasets list")
    q.add_argument("--json", action="store_true", help="print the datasets as a JSON list")
    q = _add(
        datasets,
        "show",
        "datasets.show",
        "Show a dataset: files, who it is shared with, who reads it now.",
        "syft-bg datasets show census",
    )
    q.add_argument("name")
    q.add_argument("--json", action="store_true", help="print the dataset as JSON")
    for action, verb, help_text in (
        ("share", "datasets.share", "Let more users read a dataset's mock data."),
        ("unshare", "datasets.unshare", "Stop users reading a dataset's mock data."),
    ):
        q = _add(
            datasets, action, verb, help_text, f"syft-bg datasets {action} census alice@uni.edu"
        )
        q.add_argument("name")
        q.add_argument("people", nargs="+", metavar="EMAIL|any")
    q = _add(
        datasets,
        "delete",
        "datasets.delete",
        "Delete a dataset: its published mock data and its private copy.",
        "syft-bg datasets delete census",
    )
    q.add_argument("name")


def _rule_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(
        sub,
        "hash",
        "owner.hash_files",
        "Print sha256:<hex> of each file's raw bytes (what rules pin).",
        "syft-bg hash run.sh code/main.py",
    )
    p.add_argument("files", nargs="+", metavar="FILE")

    p = _add(
        sub,
        "auto-approve",
        "owner.auto_approve",
        "Trust exact job contents: a job whose files are exactly these (by content, "
        "-f ones by name) is approved without you. A rule approves nothing until it pins run.sh.",
        "syft-bg auto-approve --from-job alice@uni.edu/mean-age -n mean-age",
    )
    p.add_argument("contents", nargs="*", metavar="CONTENTS", help="files or folders to trust")
    p.add_argument(
        "-p", "--peer", action="append", default=[], help="data scientist it applies to (repeat)"
    )
    p.add_argument("-n", "--name", help="rule name (an existing rule is extended)")
    p.add_argument(
        "-f",
        "--name-only",
        action="append",
        default=[],
        metavar="NAME_ONLY",
        help="file matched by name only, any content (repeat)",
    )
    p.add_argument("-b", "--base-dir", help="folder CONTENTS are relative to (default: .)")
    p.add_argument(
        "--from-job",
        metavar="JOB",
        help="trust exactly the files of this job (DS_EMAIL/JOB_NAME); peers default to "
        "its submitter",
    )

    p = _add(
        sub,
        "list-auto-approvals",
        "owner.list_auto_approvals",
        "List auto-approval rules and whether each can approve anything.",
        "syft-bg list-auto-approvals -n mean-age",
    )
    p.add_argument("-n", "--name", help="only this rule")

    p = _add(
        sub,
        "remove-auto-approval",
        "owner.remove_auto_approval",
        "Remove files from a rule (a rule left with no files is removed).",
        "syft-bg remove-auto-approval code/utils.py -n my_analysis",
    )
    p.add_argument("files", nargs="+", metavar="FILES")
    p.add_argument("-n", "--name", required=True, help="the rule")

    p = _add(
        sub,
        "remove-peer",
        "owner.remove_peer",
        "Remove a data scientist from rules (a rule losing its last peer is disabled, "
        "never widened to everyone).",
        "syft-bg remove-peer alice@uni.edu",
    )
    p.add_argument("peer", metavar="PEER")
    p.add_argument("-n", "--name", help="only this rule")

    p = _add(
        sub,
        "audit",
        "owner.audit",
        "Show the audit log: every decision on jobs and peers, with rule and hashes.",
        "syft-bg audit alice@uni.edu/mean-age",
    )
    p.add_argument("job", nargs="?", metavar="JOB", help="a job (or a peer's email)")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    p.add_argument("--limit", type=int, help="only the last N entries")


def _mail_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "mail", None, "Show, retry and test email delivery.", "syft-bg mail list")
    mail = _group(p, "mail")
    _add(
        mail,
        "list",
        "operate.mail_list",
        "List the emails waiting to be sent and any delivery problem.",
        "syft-bg mail list",
    )
    _add(
        mail,
        "retry",
        "operate.mail_retry",
        "Forget past delivery failures and try to send the queued emails now.",
        "syft-bg mail retry",
    )
    q = _add(
        mail,
        "test",
        "operate.mail_test",
        "Send a test email now through the configured transport.",
        "syft-bg mail test -t you@example.org",
    )
    q.add_argument("-t", "--to", help="recipient (default: do_email)")


def _operating_commands(sub: argparse._SubParsersAction) -> None:
    one_service = {
        "nargs": "?",
        "choices": ("all", *STEPS),
        "metavar": "SERVICE",
        "help": f"one of {', '.join(STEPS)} (default: all)",
    }
    p = _add(
        sub,
        "start",
        "operate.start",
        "Switch a service (a step of the pass) or all of them on, and make sure passes "
        "run: the schedule is switched on, or installed if there is none.",
        "syft-bg start notify",
    )
    p.add_argument("service", **one_service)
    p = _add(
        sub,
        "stop",
        "operate.stop",
        "Switch a service or all of them off; with all off the schedule is switched "
        "off too (it stays installed).",
        "syft-bg stop approve",
    )
    p.add_argument("service", **one_service)
    p = _add(
        sub,
        "restart",
        "operate.restart",
        "Start a service or all of them, and run a pass now (every pass reads config.yaml "
        "afresh, so this applies an edited config at once).",
        "syft-bg restart",
    )
    p.add_argument("service", **one_service)
    p = _add(
        sub,
        "ensure-running",
        "operate.ensure_running",
        "Start the named services unless they already run; says which it started.",
        "syft-bg ensure-running notify approve",
    )
    p.add_argument("services", nargs="+", metavar="SERVICE", help=f"from {', '.join(STEPS)}")
    p.add_argument("--restart", action="store_true", help="also run a pass now")
    p = _add(
        sub,
        "logs",
        "operate.logs",
        "Show the log of one service (or all) from logs/syft-bg.log.",
        "syft-bg logs notify -f",
    )
    p.add_argument(
        "service",
        choices=("all", *STEPS, "pass"),
        metavar="SERVICE",
        help=f"one of {', '.join(STEPS)}, pass (the pass itself) or all",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=50,
        metavar="N",
        help="how many of the last records to show (default 50; a traceback stays with its record)",
    )
    p = _add(
        sub,
        "setup-status",
        "operate.setup_status",
        "Check the environment: config, SyftBox folder, permission files, mail and its "
        "credentials, bwrap, the schedule, the last pass. Exit 0 when all is well.",
        "syft-bg setup-status",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="rewrite missing or wrong permission files and job folders first",
    )


def _schedule_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(
        sub,
        "install",
        "operate.install",
        "Run a pass every schedule.interval seconds by itself: a systemd user timer, or a "
        "crontab line where no systemd user instance runs. Running it again is harmless.",
        "syft-bg install --dry-run",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print exactly what would be written and where, and change nothing",
    )
    p.add_argument(
        "--interval",
        type=int,
        metavar="SECONDS",
        help="seconds between passes (stored as schedule.interval; default: its value, 60)",
    )
    p.add_argument(
        "--method",
        choices=("auto", "systemd", "cron"),
        default="auto",
        help="auto (default): systemd when its user instance answers, else cron",
    )
    p = _add(
        sub,
        "uninstall",
        "operate.uninstall",
        "Remove what install wrote for this app home (other crontab lines are untouched).",
        "syft-bg uninstall",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be removed")


def _identity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as",
        dest="as_email",
        metavar="DS_EMAIL",
        help="your email as a data scientist (default: do_email of this app's config)",
    )
    parser.add_argument(
        "-r",
        "--syftbox-root",
        help="SyftBox folder (default: syftbox_root of the config, else ~/SyftBox)",
    )


def _data_scientist_commands(sub: argparse._SubParsersAction) -> None:
    p = _add(
        sub,
        "submit",
        "ds.submit",
        "Submit a job (a folder, or one .py or .sh script) to a data owner, as a data "
        "scientist. Written in the syft-job v1 layout.",
        "syft-bg submit owner@datasite.org ./analysis --name mean-age",
    )
    p.add_argument("do_email", metavar="DO_EMAIL", help="the data owner to run it")
    p.add_argument("path", metavar="PATH", help="a folder, or a single .py or .sh script")
    p.add_argument("-n", "--name", help="job name (default: the folder or script name)")
    p.add_argument(
        "--entrypoint",
        help="for a folder: the .py or .sh file that runs (default: main.py, the only "
        ".py file, main.sh, or the only .sh file)",
    )
    p.add_argument("-d", "--description", help="what the job does, shown to the data owner")
    p.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        dest="tags",
        metavar="TAG",
        help="a tag the data owner can filter on (jobs list --tag); repeatable",
    )
    _identity_options(p)
