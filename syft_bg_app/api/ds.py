"""The data scientist's side of the Python API (the actions in ``actions.ds``)."""

from __future__ import annotations

from syft_bg_app.actions.ds import (
    RESULT_SKIP,
    Identity,
    MyJob,
    PeerRequest,
    Submission,
    SubmitError,
    identify,
    my_jobs,
    request_peer,
    submit,
)

__all__ = [
    "RESULT_SKIP",
    "Identity",
    "MyJob",
    "PeerRequest",
    "Submission",
    "SubmitError",
    "identify",
    "my_jobs",
    "request_peer",
    "submit",
]
