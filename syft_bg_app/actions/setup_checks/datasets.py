"""setup-status: private dataset files must not sit inside the synced folder."""

from __future__ import annotations

from syft_bg_app.actions.setup_checks import Check
from syft_bg_app.config.load import Config
from syft_bg_app.datasite import datasets as store
from syft_bg_app.datasite.layout import PERMISSION_FILE, Datasite

# Files the syft client writes beside private data that hold no data themselves.
METADATA_NAMES = frozenset({PERMISSION_FILE, "private_metadata.yaml"})


def private_datasets_check(config: Config) -> Check | None:
    """A ✗ when the datasite holds private dataset files (a SyftBox client uploads the
    whole datasite folder); nothing to say when it holds none."""
    datasite = Datasite(config.syftbox_root, config.do_email)
    root = store.synced_private_root(datasite)
    if not root.is_dir():
        return None
    found = [
        path.relative_to(root)
        for path in sorted(root.rglob("*"))
        if (path.is_file() or path.is_symlink()) and path.name not in METADATA_NAMES
    ]
    if not found:
        return None
    shown = ", ".join(str(rel) for rel in found[:5]) + (" ..." if len(found) > 5 else "")
    return Check(
        False,
        "private datasets",
        f"{len(found)} private dataset file(s) inside the synced folder {root}: {shown}",
        "recreate each dataset with: syft-bg datasets create NAME --mock PATH --private PATH "
        f"(which keeps the private files outside the synced folder), then remove {root}",
    )
