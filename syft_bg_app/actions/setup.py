"""Setting the app up: ``init`` (config.yaml and the datasite's folders) and the
``syft-bg`` launcher on PATH."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from syft_bg_app.config.load import EMAIL_RE, load_config, render_sample
from syft_bg_app.datasite.layout import Datasite
from syft_bg_app.errors import UsageError
from syft_bg_app.invocation import LinkResult, command, link_bin, link_bin_problem
from syft_bg_app.store.fsutil import atomic_write_text
from syft_bg_app.store.home import AppHome
from syft_bg_app.sync.syftbox_client import client_folder

DEFAULT_SYFTBOX_ROOT = "~/SyftBox"


@dataclass
class InitResult:
    """What ``init`` wrote, and the launcher when one was asked for."""

    config_file: Path
    datasite: Datasite
    launcher: LinkResult | None = None
    notes: list[str] = field(default_factory=list)


def init_app(
    home: AppHome,
    email: str,
    syftbox_root: str | None,
    force: bool,
    create: bool = False,
) -> tuple[Path, Datasite]:
    """Write config.yaml and the datasite's base layout.

    A SyftBox folder that does not exist is created only with ``create``: a
    mistyped ``-r`` must not quietly become a new, empty SyftBox folder.
    """
    email = email.strip()
    root = check_init(home, email, syftbox_root, force, create)
    text = render_sample(email.lower(), root)
    home.ensure()
    config_path = home.config_file
    atomic_write_text(config_path, text, mode=0o600)
    config = load_config(config_path)
    datasite = Datasite(config.syftbox_root, config.do_email)
    datasite.ensure_base_layout()
    return config_path, datasite


def check_init(
    home: AppHome,
    email: str,
    syftbox_root: str | None,
    force: bool,
    create: bool = False,
) -> str:
    """Everything ``init_app`` checks before writing, all of it local: the SyftBox folder
    ``init_app`` will use, or a clear refusal."""
    email = email.strip()
    if not EMAIL_RE.fullmatch(email):
        raise UsageError(f"-e/--email: {email!r} is not an email address")
    if home.config_file.exists() and not force:
        raise UsageError(
            f"{home.config_file} already exists; edit it, or pass --force to replace it"
        )
    root = _syftbox_root(syftbox_root)
    folder = Path(root).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-r/--syftbox-root: {folder} is not a folder (nothing was written)")
    if not folder.is_dir() and not create:
        raise UsageError(_missing_root_message(home, email, folder, syftbox_root is None))
    return root


def init(
    home: AppHome,
    email: str,
    syftbox_root: str | None = None,
    *,
    force: bool = False,
    create: bool = False,
    launcher: bool = False,
    bin_dir: Path | None = None,
) -> InitResult:
    """``init_app``, and with ``launcher`` a ``syft-bg`` launcher in ``bin_dir``.

    A launcher that would be refused is refused before anything is written
    (exit 2 means nothing changed).
    """
    if launcher:
        problem = link_bin_problem(bin_dir)
        if problem:
            raise UsageError(problem)
    config_path, datasite = init_app(home, email, syftbox_root, force, create=create)
    linked = link_launcher(bin_dir) if launcher else None
    return InitResult(config_path, datasite, linked)


def link_launcher(bin_dir: Path | None = None) -> LinkResult:
    """Put a ``syft-bg`` launcher of this app in ``bin_dir`` (default ~/.local/bin)."""
    return link_bin(bin_dir)


def _syftbox_root(given: str | None) -> str:
    """-r as given; without it the folder the SyftBox client's config names, else ~/SyftBox."""
    if given:
        return str(Path(given).expanduser())
    found = client_folder()
    return str(found.data_dir) if found is not None else DEFAULT_SYFTBOX_ROOT


def _missing_root_message(home: AppHome, email: str, folder: Path, defaulted: bool) -> str:
    what = "the default SyftBox folder" if defaulted else "-r/--syftbox-root"
    lines = [f"{what}: {folder} does not exist (nothing was written)"]
    init_words = f"init -e {shlex.quote(email)} -r"
    found = client_folder()
    if found is not None and found.data_dir is not None:
        lines.append(
            f"the SyftBox client's config {found.path} names {found.data_dir}; use it with:\n"
            f"  {command(f'{init_words} {shlex.quote(str(found.data_dir))}', home)}"
        )
    lines.append(
        "if the folder is right and SyftBox has not made it yet, create it with:\n"
        f"  {command(f'{init_words} {shlex.quote(str(folder))} --create', home)}"
    )
    return "\n".join(lines)
