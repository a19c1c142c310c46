"""A sample set's quality measures, as a generation job stores them in its metrics.

- `unigram_entropy`: always; the mean per-sample entropy (nats) of the generated tokens,
  in the judge's tokens when there is a judge, else in the generating model's
  (`entropy_tokens` says which). It stands beside the judge perplexity because
  low-entropy samples game that number.
- `judge_ppl`: the judge's perplexity of the generated parts given their prompts; None
  without a judge (nothing is invented).
- `mauve`: MAUVE against held-out text from the run's validation split, cut to the
  samples' token length, featurised by the packaged MiniLM; None with `mauve_reason`
  when there are too few texts on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared import submit
from shared.db import session_scope
from shared.settings import get_settings
from shared.storage import ArtifactStore
from worker.bodies.errors import named_inputs


@dataclass
class Judge:
    """A loaded judge: its model, tokenizer and the name it was given by."""

    model: Any
    tokenizer: Any
    name: str


# Judges loaded in this process, by the source a spec names: a frontier's job scores all
# its sample sets with one load. A job runs in a process of its own (forked from the warm
# process), so each job loads its judge once; the packaged judge's conversion is cached
# on disk (JUDGE_CACHE_DIR), which makes that load about a second.
_LOADED: dict[str, Judge] = {}


def load_judge_source(source: str) -> Judge:
    """Load the judge a spec names (checked again here: `submit.judge_source`); an artifact
    URL (an AR run's checkpoint) is fetched to a local copy first, a packaged judge is
    converted once into JUDGE_CACHE_DIR."""
    from worker.diffusion.judge import load_judge
    from worker.diffusion.modeling import inference_device

    if source in _LOADED:
        return _LOADED[source]
    resolved = submit.judge_source(source)
    name = source
    if "://" in resolved:
        with session_scope() as s:
            ckpt = submit.resolve_checkpoint(s, resolved, field="judge")
            name = f"checkpoint {ckpt.id} (run {ckpt.run_id}, step {ckpt.step})"
        resolved = str(ArtifactStore().get_dir(resolved))
    with named_inputs(model=f"judge {name}"):
        model, tokenizer = load_judge(
            resolved, inference_device(), cache_dir=get_settings().judge_cache_dir
        )
    _LOADED[source] = Judge(model, tokenizer, name)
    return _LOADED[source]


def quality_metrics(
    completions: Sequence[str],
    prompts: Sequence[str],
    tokenizer,
    judge: Judge | None,
    references: Callable[[int], list[str]],
    length: int,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The measures above for one sample set (`worker.diffusion.quality`), as stored in
    its metrics, and per sample its judge NLL per token (empty dicts without a judge).
    `references(n)` gives up to n held-out snippets of `length` tokens; it is called only
    when there are enough samples for MAUVE."""
    from worker.diffusion.quality import sample_set_quality

    q = sample_set_quality(
        completions,
        prompts,
        judge=(judge.model, judge.tokenizer) if judge else None,
        tokenizer=tokenizer,
        references=references,
    )
    out: dict[str, Any] = {
        "judge": judge.name if judge else None,
        "judge_ppl": q.judge_ppl,
        "unigram_entropy": q.entropy,
        "repetition": q.repetition,
        "entropy_tokens": q.entropy_tokens,
        "mauve_featurizer": q.mauve_featurizer,
        "mauve_length": length,
        "mauve": q.mauve,
        "mauve_reason": q.mauve_reason,
    }
    if q.mauve_references is not None:
        out["mauve_references"] = q.mauve_references
    if q.mauve_at_floor is not None:
        out["mauve_at_floor"] = q.mauve_at_floor
    per_sample = [{"judge_nll": x} if x is not None else {} for x in q.judge_nll or []]
    return out, per_sample or [{} for _ in completions]
