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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    preloaded: bool = False  # by the warm process, before this job was forked


# Judges loaded in this process, by the source a spec names: a frontier's job scores all
# its sample sets with one load. A job runs in a process of its own, forked from the warm
# process; the warm process preloads WORKER_PRELOAD_JUDGE (`preload_judge`), so a job
# judging with it starts with it loaded, and any other judge is loaded by the job (the
# packaged judge's conversion is cached on disk, JUDGE_CACHE_DIR, which makes that load
# about a second).
_LOADED: dict[str, Judge] = {}


def preload_judge(source: str) -> str:
    """Load judge `source` on the CPU into this process (the warm process, before it forks
    jobs), touching neither CUDA nor the database nor the network; returns a line for the
    log saying what was done.

    Only judges that load from this machine's disk are preloaded: a packaged judge whose
    conversion is cached, or a causal model directory under MODEL_ROOT. Anything else (a
    packaged judge not converted yet, a hub name, an AR run's checkpoint) is left to the
    job, which loads it as it always does."""
    from shared.contracts import sources
    from worker.diffusion.judge import load_judge
    from worker.diffusion.packaged_judge import PACKAGED_JUDGES, is_converted

    settings = get_settings()
    if source in PACKAGED_JUDGES:
        if not is_converted(source, settings.judge_cache_dir):
            return (
                f"judge {source} not preloaded yet: not converted (the first generation job "
                "converts it; the warm process preloads it when that job has ended)"
            )
        resolved = source
    else:
        only = "only packaged judges and model directories under MODEL_ROOT are"
        if sources.checkpoint_ref(source) is not None:
            return f"judge {source} not preloaded: {only}"
        resolved = sources.resolve_model(source, settings.model_root, field="judge")
        if not Path(resolved).is_dir():
            return f"judge {source} not preloaded: {only}"
    t0 = time.perf_counter()
    with named_inputs(model=f"judge {source}"):
        model, tokenizer = load_judge(resolved, "cpu", cache_dir=settings.judge_cache_dir)
    _LOADED[source] = Judge(model, tokenizer, source, preloaded=True)
    return f"judge {source} preloaded in {time.perf_counter() - t0:.1f} s"


def load_judge_source(source: str) -> Judge:
    """Load the judge a spec names (checked again here: `submit.judge_source`); an artifact
    URL (an AR run's checkpoint) is fetched to a local copy first, a packaged judge is
    converted once into JUDGE_CACHE_DIR. A judge already in this process (preloaded by the
    warm process, or loaded by an earlier call) is moved to the inference device and kept."""
    from worker.diffusion.judge import load_judge
    from worker.diffusion.modeling import inference_device

    device = inference_device()
    if source in _LOADED:
        judge = _LOADED[source]
        judge.model.to(device)
        if judge.preloaded:
            print(f"judge {judge.name}: preloaded by the warm process", flush=True)
        return judge
    t0 = time.perf_counter()
    resolved = submit.judge_source(source)
    name = source
    if "://" in resolved:
        with session_scope() as s:
            ckpt = submit.resolve_checkpoint(s, resolved, field="judge")
            name = f"checkpoint {ckpt.id} (run {ckpt.run_id}, step {ckpt.step})"
        resolved = str(ArtifactStore().get_dir(resolved))
    with named_inputs(model=f"judge {name}"):
        model, tokenizer = load_judge(resolved, device, cache_dir=get_settings().judge_cache_dir)
    _LOADED[source] = Judge(model, tokenizer, name)
    print(f"judge {name}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
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
