"""A training job: the diffusion Trainer with a callback that streams to the database.

Loss points are batched (one INSERT per FLUSH_SECONDS, at evaluations, checkpoints and
the end); per-ratio evaluations and the ELBO bound are written as they come; each
checkpoint is copied to the artifact store together with the resumable training state,
so a later attempt on any machine resumes from it. A resumed attempt re-logs the steps
after its checkpoint; the unique (run, step) key skips them, so none is duplicated, and
the job's log lists them (`SKIPPED_LOSS_POINTS`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from shared import jobs, submit, sweeps
from shared.contracts.specs import TrainSpec
from shared.models import Job, utcnow
from shared.settings import get_settings
from shared.storage import ArtifactStore
from worker import launch, results
from worker.bodies.errors import named_inputs
from worker.bodies.run_state import publish_state, restore_state, results_file
from worker.diffusion.training import BaseCallback, Trainer
from worker.stopping import Pruned, StopControl, Stopped

log = logging.getLogger(__name__)

# Starts the log line that lists the steps whose loss points were already stored.
SKIPPED_LOSS_POINTS = "loss points already stored, skipped steps:"
# Loss points are written at most this often: a few rows per INSERT, negligible DB time.
FLUSH_SECONDS = 1.0


class DatabaseCallback(BaseCallback):
    """Streams a run's progress, losses, evaluations and checkpoints to the database."""

    def __init__(self, claim: jobs.Claim, run_id: int, spec: TrainSpec, stop: StopControl) -> None:
        self.claim = claim
        self.run_id = run_id
        self.spec = spec
        self.stop = stop
        self.store = ArtifactStore()
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.progress: dict[str, Any] = {}
        self.last_loss: float | None = None
        self.pruned = False  # set when this run is a sweep trial its pruner stopped

    def flush(self) -> None:
        skipped = results.add_loss_points(self.claim, self.run_id, self.pending, self.progress)
        if skipped:
            log.info("%s %s", SKIPPED_LOSS_POINTS, ",".join(map(str, skipped)))
        if self.progress:
            jobs.set_progress(self.claim, self.progress["step"] / self.spec.max_steps)
        self.pending, self.progress = [], {}
        self.last_flush = time.monotonic()

    def on_train_begin(self, info: dict[str, Any]) -> None:
        results.merge_run_summary(
            self.claim,
            self.run_id,
            {
                "device": info["device"],
                "num_processes": info["num_processes"],
                "resumed_from_step": info["start_step"],
                # Where the run's ETA is measured from: loading the model and data is over.
                "train_started_at": utcnow().isoformat(),
                "train_start_step": info["start_step"],
            },
        )

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.last_loss = metrics["loss"]
        self.pending.append(
            {
                "step": step,
                "loss": metrics["loss"],
                "mask_ratio": metrics.get("mask_ratio"),
                "lr": metrics.get("lr"),
                "tokens_seen": int(metrics.get("tokens_seen", 0)),
                "elapsed_s": metrics.get("elapsed_s"),
            }
        )
        self.progress = {"step": step, "tokens_seen": int(metrics.get("tokens_seen", 0))}
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def on_evaluate(self, step: int, results_: list, bound: dict) -> None:
        self.flush()
        results.put_eval_points(
            self.claim,
            self.run_id,
            step,
            [{"ratio": r.ratio, "loss": r.loss, "accuracy": r.accuracy} for r in results_],
        )
        results.merge_run_summary(
            self.claim,
            self.run_id,
            {
                "bound_step": step,
                "nll_bound": bound["nats_per_token"],
                "ppl_bound": bound["perplexity"],
                "bits_per_token": bound["bits_per_token"],
                # An AR run's figure is its exact perplexity, in the bound's place.
                "exact": bool(bound.get("exact", False)),
            },
        )
        # A sweep trial reports its held-out NLL (what its pruner compares; a judged metric is
        # read from its samples once it has trained); its pruner may stop it.
        self.pruned = sweeps.report(self.run_id, step, bound["nats_per_token"]) or self.pruned

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.flush()
        base = f"runs/{self.run_id}"
        url = self.store.put_dir(path, f"{base}/checkpoint-{step}")
        # The row before the state: a run only ever resumes from a step it lists (killed in
        # between, the next attempt resumes from the previous state and writes this row again).
        results.put_checkpoint(self.claim, self.run_id, step, url, {"loss": self.last_loss})
        publish_state(self.store, self.claim, self.run_id, path.parent)

    def should_stop(self) -> bool:
        return self.pruned or self.stop.should_stop()

    def on_train_end(self, summary: dict[str, Any]) -> None:
        self.flush()
        results.merge_run_summary(
            self.claim,
            self.run_id,
            {
                "steps": summary["steps"],
                "stopped_by": summary["stopped_by"],
                "final_loss": self.last_loss,
                "tokens_per_s": summary["tokens_per_s"],
                "train_seconds": summary["train_seconds"],
                "unigram_entropy": summary["unigram_entropy"],
                "eval": summary["eval"],
            },
        )


def loadable_model(spec: TrainSpec) -> TrainSpec:
    """`spec` with its model source checked again (`submit.model_source`: a row may predate
    the rules, or MODEL_ROOT may have changed since it was submitted) and a checkpoint's URL
    replaced by a local copy of it."""
    source = submit.model_source(spec.model)
    if "://" in source:
        source = str(ArtifactStore().get_dir(source))
    return spec.model_copy(update={"model": source})


def run_train(claim: jobs.Claim, job: Job, stop: StopControl) -> None:
    spec = loadable_model(TrainSpec.model_validate(job.spec))
    assert job.run_id is not None, "a training job belongs to a run"
    output_dir = get_settings().work_dir / f"run-{job.run_id}"
    restore_state(job.run_id, output_dir)
    with named_inputs(dataset=spec.dataset, model=spec.model):
        if spec.num_processes > 1:
            summary = _train_launched(claim, job, spec, output_dir)
        else:
            callback = DatabaseCallback(claim, job.run_id, spec, stop)
            summary = Trainer(spec, output_dir, [callback]).train()
            if callback.pruned:
                raise Pruned()
    if summary["stopped_by"] == "callback":
        raise Stopped()
    jobs.set_result(claim, {"bound": summary["bound"], "steps": summary["steps"]})


def _train_launched(claim: jobs.Claim, job: Job, spec: TrainSpec, output_dir: Path) -> dict:
    """Train in `spec.num_processes` ranks (`worker.launch`); return rank 0's summary."""
    cpu = launch.check_devices(spec.num_processes, spec.device)
    launch.write_launch_file(
        output_dir,
        {
            "spec": spec.model_dump(mode="json"),
            "job_id": claim.job_id,
            "attempt": claim.attempt,
            "worker": claim.worker,
            "run_id": job.run_id,
        },
    )
    summary_file = results_file(output_dir)
    # An earlier attempt's results and errors say nothing of this one.
    summary_file.unlink(missing_ok=True)
    launch.clear_rank_errors(output_dir)
    code = launch.run_launcher(spec.num_processes, "worker.train_rank", [str(output_dir)], cpu=cpu)
    if not summary_file.is_file():
        errors = launch.rank_errors(output_dir) or "(no rank left a traceback; see the log)"
        raise RuntimeError(
            f"accelerate launch exited with code {code} before rank 0 finished training\n" + errors
        )
    if code != 0:  # e.g. SIGTERM (a cancel): it reached the launcher too, after the ranks saved
        log.warning("accelerate launch exited with code %d after rank 0 finished", code)
    return json.loads(summary_file.read_text())
