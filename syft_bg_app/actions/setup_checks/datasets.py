"""setup-status: private dataset files must not sit inside a folder a SyftBox client
syncs, nor the sources they were copied from; datasets the syft client made are named."""

from __future__ import annotations

import os
from pathlib import Path

from syft_bg_app.actions.setup_checks import Check
from syft_bg_app.config.load import Config
from syft_bg_app.datasite import datasets as store
from syft_bg_app.datasite.layout import PERMISSION_FILE, Datasite
from syft_bg_app.store.home import AppHome

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


def private_sources_check(home: AppHome, config: Config) -> Check | None:
    """A ✗ when a dataset's private files were copied from inside the SyftBox folder and
    that source is still there (a SyftBox client uploads it); nothing to say otherwise.
    Only datasets whose record remembers the source can be told."""
    found = []
    for name in store.dataset_names(home):
        try:
            source = store.load_record(home, name).private_source
        except store.DamagedDataset:
            continue  # said by `datasets list`
        if source is None or not os.path.lexists(source):
            continue
        if store.synced_source_warning(Path(source), config.syftbox_root):
            found.append(f"{name} (from {source})")
    if not found:
        return None
    return Check(
        False,
        "private dataset sources",
        f"{len(found)} dataset(s) whose private files were copied from inside the SyftBox "
        f"folder {config.syftbox_root}, which a SyftBox client uploads: {', '.join(found)}",
        "move each source out of the SyftBox folder (or delete it): jobs read the copy "
        "under the app home",
    )


def client_made_check(home: AppHome, config: Config) -> Check | None:
    """A ⚠ naming datasets the syft client made that this app does not serve."""
    datasite = Datasite(config.syftbox_root, config.do_email)
    names = store.client_made_names(home, datasite)
    if not names:
        return None
    return Check(
        True,
        "datasets made by the syft client",
        f"{', '.join(names)}: this app has no record of who may read them, so a job naming "
        "one is rejected as not shared",
        "\n".join(store.recreate_command(datasite, name) for name in names),
        warning=True,
    )


def dataset_checks(home: AppHome, config: Config) -> list[Check]:
    """The dataset lines of setup-status."""
    if config.get("sync.transport") == "drive":
        # No SyftBox client uploads the folder: what leaves it is what the app sends.
        found = [
            Check(
                True,
                "private datasets",
                "this app syncs the datasite over Google Drive and never sends private files",
            )
        ]
    else:
        found = [private_datasets_check(config), private_sources_check(home, config)]
    return [check for check in [*found, client_made_check(home, config)] if check is not None]
