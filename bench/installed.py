"""The app as an installed copy runs it: its modules compiled to bytecode.

A checkout may sit where Python never writes bytecode (PYTHONDONTWRITEBYTECODE);
then every pass would compile the app's modules again, which run.sh's install
does not leave to passes and no figure here should include.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import syft_bg_app


def compile_app() -> None:
    compileall.compile_dir(Path(syft_bg_app.__file__).parent, quiet=1)
