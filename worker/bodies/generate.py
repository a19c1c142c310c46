"""A generation job: one sample set per sampler combination, with metrics and trajectories.

Combinations already stored (by an earlier attempt) are skipped; progress is reported
after each one, and a stop request is honoured between them.
"""

from __future__ import annotations

import time
from typing import Any

from shared import jobs
from shared.contracts.options import applicable_settings
from shared.contracts.specs import GenerateSpec, TrainSpec
from shared.models import Job
from worker import results
from worker.bodies.checkpoint import load_checkpoint_row
from worker.bodies.errors import JobInputError, named_inputs
from worker.bodies.quality import load_judge_source, quality_metrics
from worker.bodies.reference import human_reference
from worker.stopping import StopControl


def _trajectory(tokenizer, sample) -> dict[str, Any] | None:
    """The denoising trajectory as the dashboard's viewer draws it, or None if not recorded.

    Special tokens are dropped; every other position keeps its index across steps:
    `steps[i]["tokens"][p]` is position p's text piece after pass i, None while masked.
    `given[p]` marks prompt positions and `committed_at[p]` is the pass that committed p
    (-1 for given ones), so a viewer can colour tokens by when they appeared.
    """
    if sample.trajectory is None:
        return None
    special = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}
    keep = [p for p, t in enumerate(sample.token_ids) if t not in special]
    mask_id = tokenizer.mask_token_id
    steps = [
        {
            "step": i,
            "text": tokenizer.decode(step.tokens, skip_special_tokens=False),
            "tokens": [
                None if step.tokens[p] == mask_id else tokenizer.decode([step.tokens[p]])
                for p in keep
                if p < len(step.tokens)
            ],
        }
        for i, step in enumerate(sample.trajectory)
    ]
    return {
        "steps": steps,
        "given": [sample.given[p] for p in keep],
        "committed_at": [sample.committed_at[p] for p in keep],
    }


def _references(train: TrainSpec, tokenizer, length: int):
    """`references(n)`: n held-out snippets of `length` tokens from the validation split
    of the checkpoint's run (loaded once, on the first call), always in the same order."""
    from worker.diffusion import data as data_lib
    from worker.diffusion.mauve import reference_snippets

    held_out: list[str] = []

    def references(n: int) -> list[str]:
        if not held_out:
            with named_inputs(dataset=f"{train.dataset} (its validation split)"):
                held_out.extend(data_lib.evaluation_texts(train))
        return reference_snippets(held_out, tokenizer, n, length)

    return references


def run_generate(claim: jobs.Claim, job: Job, stop: StopControl) -> None:
    from worker.diffusion.ar_generate import generate_causal
    from worker.diffusion.evaluation import sample_metrics
    from worker.diffusion.generate import generate

    spec = GenerateSpec.model_validate(job.spec)
    model, tokenizer, meta, ckpt = load_checkpoint_row(int(spec.checkpoint), allow_causal=True)
    causal = bool(getattr(model.config, "is_decoder", False))
    sample_fn = generate_causal if causal else generate
    judge = load_judge_source(spec.judge) if spec.judge else None
    train = TrainSpec.model_validate(meta["spec"]) if "spec" in meta else TrainSpec()
    references = _references(train, tokenizer, spec.length)
    human: dict[str, Any] = {}
    if judge is not None:
        try:
            reference_id, _ = human_reference(train, tokenizer, judge, spec.length, references)
            human = {"human_reference_id": reference_id}
        except JobInputError as exc:  # the held-out text is gone: judge the sets anyway
            human = {"human_reference_reason": str(exc)}
    combinations = spec.combinations()
    done = results.done_combinations(job.id)
    for k, combo in enumerate(combinations):
        if combo.index in done:
            continue
        stop.raise_if_stopped()
        t0 = time.perf_counter()
        samples = sample_fn(
            model,
            tokenizer,
            spec.prompts,
            combo.sampler,
            length=spec.length,
            num_samples=spec.num_samples,
            seed=combo.seed,
            batch_size=spec.batch_size,
            record_trajectory=spec.record_trajectory,
        )
        seconds = time.perf_counter() - t0
        completions = [s.completion for s in samples]
        quality, per_sample = quality_metrics(
            completions, [s.prompt for s in samples], tokenizer, judge, references, spec.length
        )
        metrics = {
            **sample_metrics(completions),
            "seconds": seconds,
            "seconds_per_sample": seconds / len(samples),
            "forward_passes": sum(s.forward_passes for s in samples) / len(samples),
            "objective": "ar" if causal else "diffusion",
            **quality,
            **human,
        }
        rows = [
            {
                "prompt": s.prompt,
                "text": s.text,
                "seed": s.seed,
                "trajectory": _trajectory(tokenizer, s),
                "metrics": {
                    "forward_passes": s.forward_passes,
                    "completion": s.completion,
                    **judged,
                },
            }
            for s, judged in zip(samples, per_sample, strict=True)
        ]
        settings = applicable_settings(combo.settings(), metrics["objective"])
        results.add_sample_set(claim, ckpt.id, combo.index, settings, metrics, rows)
        jobs.set_progress(claim, (k + 1) / len(combinations))
    jobs.set_result(claim, {"sample_sets": len(combinations), "checkpoint": ckpt.id})
