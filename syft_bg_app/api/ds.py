"""The data scientist's side of the Python API (the actions in ``actions.ds``)."""

from __future__ import annotations

from syft_bg_app.actions.ds import (
    RESULT_SKIP,
    Identity,
    JobLogs,
    MyJob,
    PeerRequest,
    Submission,
    SubmitError,
    WaitTimeout,
    identify,
    my_job,
    my_jobs,
    request_peer,
    submit,
    submit_script,
    wait_for_completion,
)

__all__ = [
    "RESULT_SKIP",
    "Identity",
    "MyJob",
    "PeerRequest",
    "Submission",
    "SubmitError",
    "JobLogs",
    "WaitTimeout",
    "identify",
    "my_job",
    "my_jobs",
    "request_peer",
    "submit",
    "submit_script",
    "wait_for_completion",
]
