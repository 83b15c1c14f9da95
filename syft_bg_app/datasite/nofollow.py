"""The former name of ``linksafe``; new code imports ``syft_bg_app.datasite.linksafe``."""

from syft_bg_app.datasite.linksafe import *  # noqa: F403
from syft_bg_app.datasite.linksafe import FILE_FLAGS, UnsafePathError  # noqa: F401
