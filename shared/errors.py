"""The job system's errors that the API and the CLI turn into answers (404, 409)."""

from __future__ import annotations


class JobError(ValueError):
    """A request that does not fit the job's state (e.g. retrying a running job)."""


class JobNotFound(JobError, LookupError):
    """No job with that id (the API answers 404, a state conflict 409)."""


class Displaced(JobError):
    """A job attempt wrote after it stopped owning its job (the reconciler gave the job to
    another attempt, or a user cancelled it): the write is refused and the attempt stops."""
