"""The app installed from its wheel, away from the checkout: the email templates
come with it, and a data owner's own templates still win."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
# Long enough for a wheel build on a loaded machine; speed is not what is tested.
BUILD_SECONDS = 600

RENDER = """
import json, sys
from pathlib import Path
import syft_bg_app
from syft_bg_app.mail.templates import Templates, builtin_dir

custom = Path(sys.argv[1]) if len(sys.argv) > 1 else None
text, html = Templates(custom).render(
    "test",
    {
        "host": "wheel-host", "now": "2026-01-02 03:04", "transport": "outbox",
        "do_email": "owner@example.org", "app_command": "syft-bg",
    },
)
print(json.dumps({
    "package": syft_bg_app.__file__, "builtin": str(builtin_dir()), "text": text, "html": html,
}))
"""


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=BUILD_SECONDS, check=False
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A fresh venv with only the app's wheel installed; its dependencies are the
    ones of the test environment (reached through a .pth file, never the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    # A copy, so the build leaves no build/ or egg-info behind in the checkout.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("syft_bg_app", "templates"):
        shutil.copytree(CHECKOUT / name, source / name, ignore=ignore)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, "."],
        source,
    )
    (wheel,) = wheels.glob("syft_bg_app-*.whl")
    env = base / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], base)
    python = env / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], base)
    env_site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base
        ).stdout.strip()
    )
    # Only a path: the .pth files there (this checkout's editable install) are not run.
    (env_site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def _render(env: Path, cwd: Path, *custom: Path) -> dict:
    # -I: no PYTHONPATH, no current folder on the path; only what the venv installed.
    argv = [str(env / "bin" / "python"), "-I", "-c", RENDER, *map(str, custom)]
    return json.loads(_run(argv, cwd).stdout)


def test_a_wheel_install_carries_the_email_templates(wheel_env, tmp_path):
    out = _render(wheel_env, tmp_path)
    assert Path(out["package"]).is_relative_to(wheel_env)
    assert Path(out["builtin"]) == (wheel_env / "share" / "syft-bg" / "templates").resolve()
    assert "This is a test email from syft-bg on wheel-host" in out["text"]
    assert "wheel-host" in out["html"]
    shipped = sorted(p.name for p in (CHECKOUT / "templates").glob("*.j2"))
    assert sorted(p.name for p in Path(out["builtin"]).glob("*.j2")) == shipped


def test_a_wheel_install_still_prefers_the_data_owners_templates(wheel_env, tmp_path):
    custom = tmp_path / "my-templates"
    custom.mkdir()
    (custom / "test.txt.j2").write_text("Mine, from {{ host }}.\n")
    out = _render(wheel_env, tmp_path, custom)
    assert out["text"] == "Mine, from wheel-host.\n"
    assert "wheel-host" in out["html"]  # the HTML part still comes from the wheel
