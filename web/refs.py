"""References in a spec that the job system could not look up, refused before submitting.

The API and the forms call `check_refs` before `shared.submit.submit_*`, so such a value is a
422 naming its field rather than an error deep in a driver or a worker.
"""

from __future__ import annotations

from pathlib import Path

from shared.contracts.limits import MAX_ID
from shared.contracts.specs import EvalSpec, GenerateSpec, SpecError, TrainSpec
from web.errors import spec_error


def check_refs(spec: TrainSpec | GenerateSpec | EvalSpec) -> None:
    """Refuse, as `ApiError` 422s: a checkpoint id past the id range (or in non-ASCII
    digits), a dataset under a home directory that does not exist (`~nobody/x`)."""
    ref = getattr(spec, "checkpoint", None)
    if isinstance(ref, str) and ref.isdigit():
        if not ref.isascii():
            raise spec_error(SpecError("checkpoint", f"expected an id or a URL, got {ref!r}"))
        ref = int(ref)
    if isinstance(ref, int) and ref > MAX_ID:
        raise spec_error(SpecError("checkpoint", f"no checkpoint with id {ref}"))
    dataset = getattr(spec, "dataset", None)
    if isinstance(dataset, str) and dataset.startswith("~"):
        try:
            Path(dataset).expanduser()
        except RuntimeError:
            reason = f"no such home directory in {dataset!r}"
            raise spec_error(SpecError("dataset", reason)) from None
