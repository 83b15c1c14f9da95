"""What every step of a pass works with."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from syft_bg_app.config.load import Config
from syft_bg_app.datasite.layout import Datasite
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.state import State


@dataclass
class Context:
    home: AppHome
    config: Config
    state: State
    datasite: Datasite
    counts: Counter = field(default_factory=Counter)

    def log(self, step: str) -> logging.Logger:
        return logging.getLogger(f"syft_bg.{step}")

    @classmethod
    def open(cls, home: AppHome, config: Config) -> Context:
        return cls(
            home=home,
            config=config,
            state=State.load(home.state_file),
            datasite=Datasite(config.syftbox_root, config.do_email),
        )
