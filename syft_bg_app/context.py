"""What every step of a pass works with."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from .config import Config
from .datasite import Datasite
from .home import AppHome
from .state import State


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
