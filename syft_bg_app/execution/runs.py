"""What the rest of the app calls of the execution area.

The execute step itself is ``steps/execute.py``; the job's life is in
``start`` (claim, prepare, hand over), ``reap`` (collect), ``publish``
(results to the review folder), ``housekeeping``, ``rerun`` and ``status``;
``backends/`` runs the supervisors.
"""

from syft_bg_app.execution.housekeeping import CLEANUP_EVERY
from syft_bg_app.execution.rerun import RerunError, rerun
from syft_bg_app.execution.status import status_lines

__all__ = ["CLEANUP_EVERY", "RerunError", "rerun", "status_lines"]
