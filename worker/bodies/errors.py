"""Errors about a job's inputs, in one line that names the input.

A job that fails on its inputs (an empty dataset folder, corrupt model weights) raises deep
inside `datasets`, pandas, safetensors or transformers, with a message that names neither
the input nor the problem ("SchemaInferenceError: Please pass `features`...", "header too
large"). The bodies run their work inside `named_inputs(dataset=..., model=...)`, which
turns such an exception into a `JobInputError` whose message is what the user reads first
("dataset X has no text rows", "model weights in X are corrupt: ..."); the original stays
chained to it, so the job's log keeps the whole traceback. Anything not recognised here
passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager


class JobInputError(Exception):
    """A job's dataset or model cannot be used; the message is one line naming it."""


# Library errors (by class name: importing pandas or safetensors here to name them would
# be the only reason to import them) and what they mean for the input they came from.
_EMPTY_DATA = {"SchemaInferenceError", "EmptyDataError"}  # datasets, pandas: nothing to read
_CORRUPT_WEIGHTS = {"SafetensorError", "UnpicklingError", "HeaderTooLarge"}
# The libraries a dataset is read through: their errors are about the file.
_READERS = ("datasets", "pyarrow")
# `datasets` when a split has no rows; our loader when no non-empty text is left.
_NO_ROWS_MESSAGES = re.compile(r"corresponds to no data|need at least 2 texts .*got 0\b")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ran_out_in_datasets(exc: BaseException) -> bool:
    """A StopIteration raised inside `datasets` (its JSON reader on an empty file)."""
    if not isinstance(exc, StopIteration):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if "datasets" in tb.tb_frame.f_globals.get("__name__", "").split("."):
            return True
        tb = tb.tb_next
    return False


def explain(exc: BaseException, *, dataset: str | None, model: str | None) -> str | None:
    """One line that says what is wrong with `dataset` or `model`, if `exc` is about one
    of them; None if it is not recognised."""
    from worker.diffusion.data import DatasetSourceError
    from worker.diffusion.modeling import ModelSourceError

    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    root = chain[-1]
    if model is not None:
        if names & _CORRUPT_WEIGHTS:
            broken = next(e for e in chain if type(e).__name__ in _CORRUPT_WEIGHTS)
            return f"model weights in {model} are corrupt: {_first_line(broken)}"
        if any("not a valid JSON file" in str(e) for e in chain if isinstance(e, OSError)):
            return f"model in {model} is corrupt: its config.json is not valid JSON"
        if any("no file named" in str(e) for e in chain if isinstance(e, OSError)):
            return f"model {model} holds no weights (model.safetensors or pytorch_model.bin)"
        source = next((e for e in chain if isinstance(e, ModelSourceError)), None)
        if source is not None:
            return f"model {model} cannot be used: {_first_line(source)}"
    if dataset is not None:
        if names & _EMPTY_DATA or _ran_out_in_datasets(root):
            return f"dataset {dataset} has no text rows"
        if any(_NO_ROWS_MESSAGES.search(str(e)) for e in chain):
            return f"dataset {dataset} has no text rows"
        source = next((e for e in chain if isinstance(e, DatasetSourceError)), None)
        if source is not None:
            return f"dataset {dataset} cannot be used: {_first_line(source)}"
        # `datasets` itself, or the Arrow reader under it (a file that is no Parquet).
        reading = next((e for e in chain if type(e).__module__.startswith(_READERS)), None)
        if reading is not None:
            return f"dataset {dataset} cannot be read: {_first_line(root)}"
    return None


@contextmanager
def named_inputs(*, dataset: str | None = None, model: str | None = None) -> Iterator[None]:
    """Re-raise an exception about `dataset` or `model` as a `JobInputError` naming it."""
    try:
        yield
    except JobInputError:
        raise
    except Exception as exc:
        line = explain(exc, dataset=dataset, model=model)
        if line is None:
            raise
        raise JobInputError(line) from exc
