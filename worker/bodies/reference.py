"""Human text as the yardstick: held-out text measured exactly as a judged sample set is.

For a judged generation job, `human_reference` finds (or measures once and stores) the
`HumanReference` of its (held-out split, judge, tokenizer, length): `REFERENCE_TEXTS`
snippets of the samples' token length, in the generating model's tokenizer and decoded
through it, scored by the same judge (perplexity, unigram entropy, repetition), and MAUVE
against the held-out snippets the sample sets are compared with (a disjoint set of them).
Two jobs that measure it at once both succeed: the second keeps the first's row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import HumanReference

# Snippets of human text judged per reference: the samples a frontier point has by default.
REFERENCE_TEXTS = 100


def split_key(train: TrainSpec) -> str:
    """Names the held-out split a run of `train` saw (what `data.corpus_for` depends on)."""
    parts = [train.dataset]
    if train.dataset_config:
        parts.append(f"config={train.dataset_config}")
    if train.text_column != "text":
        parts.append(f"column={train.text_column}")
    if train.max_texts:
        parts.append(f"max_texts={train.max_texts}")
    parts.append(f"validation={train.val_fraction:g}")
    parts.append(f"seed={train.seed}")
    return " · ".join(parts)[:500]


def tokenizer_key(tokenizer) -> str:
    """A short hash of the tokenizer's class and vocabulary: two runs that share a
    tokenizer share their human references."""
    vocab = sorted(tokenizer.get_vocab().items())
    raw = json.dumps([type(tokenizer).__name__, vocab], ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _measure(pool: list[str], judge, n: int) -> dict[str, Any]:
    """The measures of human snippets `pool[n:2n]` (or `pool[:n]` when the split holds
    too few for a disjoint set), MAUVE against `pool[:n]`."""
    from worker.diffusion.mauve import MIN_TEXTS
    from worker.diffusion.quality import sample_set_quality

    if not pool:
        return {
            "texts": 0,
            "judge_ppl": None,
            "reason": "the held-out split has no snippet this long",
        }
    references, disjoint = pool[:n], pool[n : 2 * n]
    texts = disjoint or references
    q = sample_set_quality(
        texts,
        judge=(judge.model, judge.tokenizer),
        references=references if disjoint else None,
    )
    reason = q.mauve_reason
    if not disjoint:
        reason = (
            f"the held-out split has {len(pool)} snippets of this length: too few for a set "
            f"apart from the {MIN_TEXTS} references"
        )
    return {
        "texts": len(texts),
        "judge_ppl": q.judge_ppl,
        "unigram_entropy": q.entropy,
        "repetition": q.repetition,
        "mauve": q.mauve,
        "mauve_reason": reason,
        "mauve_at_floor": q.mauve_at_floor,
        "mauve_featurizer": q.mauve_featurizer,
    }


def human_reference(
    train: TrainSpec,
    tokenizer,
    judge,
    length: int,
    held_out: Callable[[int], list[str]],
) -> tuple[int, dict[str, Any]]:
    """(row id, metrics) of the human reference for this split, `judge` (a loaded
    `worker.bodies.quality.Judge`), `tokenizer` and `length`, measured and stored on
    first use. `held_out(k)` gives up to k held-out snippets of `length` tokens in a fixed
    order whose first ones are what the sample sets' MAUVE compares with."""
    key = {
        "dataset": split_key(train),
        "judge": judge.name[:500],
        "tokenizer": tokenizer_key(tokenizer),
        "length": length,
    }

    def find() -> HumanReference | None:
        with session_scope() as s:
            row = s.scalars(select(HumanReference).filter_by(**key)).first()
            if row is not None:
                s.expunge(row)
            return row

    row = find()
    if row is not None:
        return row.id, row.metrics
    metrics = _measure(held_out(2 * REFERENCE_TEXTS), judge, REFERENCE_TEXTS)
    try:
        with session_scope() as s:
            row = HumanReference(**key, metrics=metrics)
            s.add(row)
            s.flush()
            return row.id, metrics
    except IntegrityError:  # measured at the same time by another job: keep its row
        row = find()
        assert row is not None
        return row.id, row.metrics
