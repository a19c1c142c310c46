"""An evaluation job: CE(t) per mask ratio and the ELBO bound of a checkpoint; for an AR
run's checkpoint, its exact NLL per token instead (no ratios apply; `exact: true`).

On the checkpoint's own validation split (no dataset given) the points are also stored as
the run's eval points at the checkpoint's step; on another dataset they live in the job's
result and the checkpoint's metrics, keyed by dataset.
"""

from __future__ import annotations

from dataclasses import asdict

from shared import jobs
from shared.contracts.specs import EvalSpec, TrainSpec
from shared.models import Job
from worker import results
from worker.bodies.checkpoint import load_checkpoint_row
from worker.bodies.errors import named_inputs
from worker.stopping import StopControl


def run_evaluate(claim: jobs.Claim, job: Job, stop: StopControl) -> None:
    from worker.diffusion import data as data_lib
    from worker.diffusion.causal import evaluate_causal
    from worker.diffusion.evaluation import bound_of, evaluate_ratios

    spec = EvalSpec.model_validate(job.spec)
    model, tokenizer, meta, ckpt = load_checkpoint_row(int(spec.checkpoint), allow_causal=True)
    train = TrainSpec.model_validate(meta["spec"]) if "spec" in meta else TrainSpec()
    named = spec.dataset or f"{train.dataset} (its validation split)"
    with named_inputs(dataset=named):
        texts = data_lib.evaluation_texts(train, spec.dataset, spec.dataset_config)
    stop.raise_if_stopped()
    blocks = data_lib.pack(texts, tokenizer, train.seq_len)
    if getattr(model.config, "is_decoder", False):  # an AR run's checkpoint: exact, no grid
        exact = evaluate_causal(
            model,
            blocks,
            tokenizer,
            batch_size=spec.batch_size,
            max_batches=spec.batches,
            prefix_length=train.masking.prefix_length,
        )
        grid, bound = [], {**asdict(exact), "exact": True}
    else:
        grid = evaluate_ratios(
            model,
            blocks,
            tokenizer,
            spec.ratios,
            batch_size=spec.batch_size,
            max_batches=spec.batches,
            seed=train.seed,
            prefix_length=train.masking.prefix_length,
        )
        bound = asdict(bound_of(grid))
    dataset = spec.dataset or "validation"
    result = {
        "checkpoint": ckpt.id,
        "step": ckpt.step,
        "dataset": dataset,
        "eval": [asdict(r) for r in grid],
        "bound": bound,
    }
    if spec.dataset is None and grid:
        results.put_eval_points(
            claim,
            ckpt.run_id,
            ckpt.step,
            [{"ratio": r.ratio, "loss": r.loss, "accuracy": r.accuracy} for r in grid],
        )
    evaluations = dict((ckpt.metrics or {}).get("evaluations", {}))
    evaluations[dataset] = {"bound": bound, "job": job.id}
    results.merge_checkpoint_metrics(claim, ckpt.id, {"evaluations": evaluations})
    jobs.set_result(claim, result)
