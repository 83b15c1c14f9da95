"""Jinja2 templates: ``templates/<name>.txt.j2`` and ``<name>.html.j2`` per email.

Templates render with ``StrictUndefined``: a variable the code does not pass
is an error naming the template, never an empty gap in an email. A folder set
in ``notify.templates_dir`` is searched first, so a data owner may override
any template and keep the others.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from syft_bg_app.errors import ConfigError

TEMPLATE_NAMES = (
    "peer_requested_do",
    "peer_requested_ds",
    "peer_accepted_ds",
    "job_submitted_do",
    "job_submitted_ds",
    "job_approved_do",
    "job_approved_ds",
    "job_rejected_do",
    "job_rejected_ds",
    "job_finished_do",
    "job_finished_ds",
    "sandbox_unavailable_do",
    "reply_answer_do",
    "peer_other_generation_do",
    "digest",
    "heartbeat",
    "test",
)
PARTS = ("txt", "html")
# The name pyproject.toml gives the package; its wheel carries the templates.
DISTRIBUTION = "syft-bg-app"


def builtin_dir() -> Path:
    """The app's own templates: ``templates/`` of the app folder (a checkout, the
    SyftBox app bundle, an editable install), else the copy a wheel installed
    under ``<prefix>/share/syft-bg/templates``."""
    candidates = [Path(__file__).resolve().parents[2] / "templates"]
    installed = _installed_dir()
    if installed is not None:
        candidates.append(installed)
    candidates.append(Path(sys.prefix) / "share" / "syft-bg" / "templates")
    for candidate in candidates:
        if (candidate / "digest.txt.j2").is_file():
            return candidate
    raise ConfigError(
        "the email templates were not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set notify.templates_dir to a copy of the app's templates/ folder"
    )


def _installed_dir() -> Path | None:
    """Where the installed distribution put its templates, read from its file list, so
    any install scheme (a venv, ``--user``, ``--prefix``) is found."""
    from importlib import metadata

    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "digest.txt.j2" and file.parent.parts[-2:] == ("syft-bg", "templates"):
            return Path(file.locate()).resolve().parent
    return None


def resolve_dir(value: str | None, home_root: Path) -> Path | None:
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else home_root / path


class Templates:
    def __init__(self, custom_dir: Path | None = None) -> None:
        import jinja2

        if custom_dir is not None and not custom_dir.is_dir():
            raise ConfigError(f"notify.templates_dir: {custom_dir} is not a folder")
        folders = [str(custom_dir)] if custom_dir else []
        folders.append(str(builtin_dir()))
        self.folders = folders
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, name: str, variables: dict[str, Any]) -> tuple[str, str]:
        """(plain text, HTML) of template ``name``."""
        import jinja2

        out = []
        for part in PARTS:
            filename = f"{name}.{part}.j2"
            try:
                out.append(self.env.get_template(filename).render(**variables))
            except jinja2.TemplateNotFound:
                raise ConfigError(
                    f"email template {filename} is missing (looked in {', '.join(self.folders)})"
                ) from None
            except jinja2.UndefinedError as exc:
                raise ConfigError(f"email template {filename}: {exc.message}") from None
            except jinja2.TemplateError as exc:
                raise ConfigError(f"email template {filename}: {exc}") from None
        return out[0], out[1]

    def source(self, filename: str) -> str:
        return self.env.loader.get_source(self.env, filename)[0]
