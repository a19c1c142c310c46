"""What the job system costs on top of the diffusion core.

1. Per-job overhead of a small generation job: wall time from submit to succeeded through
   an idle worker (embedded broker), minus the time of the same work done by calling the
   core directly in a fresh process (load the checkpoint, generate). The difference is the
   queue, the job process's start (Python + torch imports) and the database writes.
2. The database cost of loss logging: a training job run in this process with every
   database write of its callback timed (loss points, progress), as a share of the
   training time; logging every step is the worst case (goal < 2%).

Writes bench/results/job_overhead.json.

    python bench/job_overhead.py             # 10 generation jobs, 200 training steps
    python bench/job_overhead.py --quick     # 2 jobs, 20 steps: job_overhead_quick.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, command, machine, write_result
from _jobs_env import job_system, tiny_checkpoint, tiny_train_spec, wait_job

# The direct baseline runs in a fresh process, as a job's body does.
DIRECT = """
import sys, time
t0 = time.perf_counter()
from worker.diffusion.generate import generate
from worker.diffusion.modeling import load_checkpoint
from shared.contracts.specs import GenerateSpec
spec = GenerateSpec.model_validate_json(sys.argv[2])
model, tokenizer, _ = load_checkpoint(sys.argv[1])
model.eval()
for combo in spec.combinations():
    generate(model, tokenizer, spec.prompts, combo.sampler, length=spec.length,
             num_samples=spec.num_samples, seed=combo.seed, batch_size=spec.batch_size,
             record_trajectory=spec.record_trajectory)
print(time.perf_counter() - t0)
"""


def _spec(checkpoint: int):
    from shared.contracts.specs import GenerateSpec

    return GenerateSpec(
        checkpoint=checkpoint,
        prompts=["The king"],
        length=16,
        num_samples=2,
        grid={"steps": [8]},
        judge=None,  # job overhead, not judging
    )


def generation_overhead(n_jobs: int) -> dict[str, Any]:
    from shared import submit
    from shared.db import session_scope
    from shared.models import Checkpoint, JobStatus
    from shared.storage import ArtifactStore

    with job_system("embedded") as env:
        checkpoint = tiny_checkpoint(env.data_dir)
        with session_scope() as s:
            local = ArtifactStore().get_dir(s.get(Checkpoint, checkpoint).url)
        spec = _spec(checkpoint)
        direct = []
        for _ in range(n_jobs):
            t0 = time.perf_counter()
            argv = [sys.executable, "-c", DIRECT, str(local), spec.model_dump_json()]
            subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, env=env.env_for_jobs())
            direct.append(time.perf_counter() - t0)
        env.start_workers(1)
        through_jobs = []
        for _ in range(n_jobs):
            t0 = time.perf_counter()
            job = wait_job(submit.submit_generate(spec).id, timeout=600)
            through_jobs.append(time.perf_counter() - t0)
            assert job.status == JobStatus.SUCCEEDED, job.error
    direct_s, job_s = statistics.median(direct), statistics.median(through_jobs)
    return {
        "direct_median_s": round(direct_s, 3),
        "job_median_s": round(job_s, 3),
        "overhead_s": round(job_s - direct_s, 3),
        "overhead_share": round((job_s - direct_s) / job_s, 3),
        "jobs": n_jobs,
    }


def logging_cost(steps: int) -> dict[str, Any]:
    from shared import job_reads, jobs, submit
    from worker import results
    from worker.bodies import train as train_job
    from worker.execute import load_job
    from worker.stopping import StopControl

    spent = {"seconds": 0.0, "calls": 0}

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - t0
                spent["calls"] += 1

        return wrapper

    with job_system("embedded") as env:
        # Logging every step is the worst case for the database's share.
        spec = tiny_train_spec(
            env.data_dir, steps, log_every=1, eval_every=steps + 1, save_every=steps + 1
        )
        job = submit.submit_train(spec)
        claim = jobs.claim(job.id, "bench")
        assert claim is not None
        # The callback's database writes: loss points + run progress, and job progress.
        originals = (results.add_loss_points, jobs.set_progress)
        results.add_loss_points = timed(results.add_loss_points)
        jobs.set_progress = timed(jobs.set_progress)
        try:
            train_job.run_train(claim, load_job(job.id), StopControl(claim))
        finally:
            results.add_loss_points, jobs.set_progress = originals
        summary = job_reads.get_job(job.id)
        from shared.db import session_scope
        from shared.models import Run

        with session_scope() as s:
            train_s = s.get(Run, summary.run_id).summary["train_seconds"]
    return {
        "steps": steps,
        "log_every": 1,
        "train_seconds": round(train_s, 3),
        "db_seconds": round(spent["seconds"], 4),
        "db_calls": spent["calls"],
        "db_share": round(spent["seconds"] / train_s, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args()
    gen = generation_overhead(2 if args.quick else 10)
    log = logging_cost(20 if args.quick else 200)
    print(
        f"generation job: {gen['job_median_s']:.2f}s vs direct {gen['direct_median_s']:.2f}s "
        f"-> overhead {gen['overhead_s']:.2f}s per job"
    )
    print(f"loss logging: {log['db_share']:.2%} of training time (goal < 2%)")
    result = {
        "job_overhead_s": gen["overhead_s"],
        "loss_logging_db_share": log["db_share"],
        "goal": "loss_logging_db_share < 0.02",
        "generation": gen,
        "loss_logging": log,
        "command": command(),
        "machine": machine(),
    }
    print(f"wrote {write_result('job_overhead_quick' if args.quick else 'job_overhead', result)}")


if __name__ == "__main__":
    main()
