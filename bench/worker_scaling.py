"""Throughput of many small generation jobs with 1 vs 2 worker processes.

Each worker is limited to one compute thread (OMP_NUM_THREADS=1, so torch uses one), so
two workers have two cores between them. Both runs use the embedded broker and the same
tiny checkpoint; each job generates a few short samples. `ratio` is jobs/s with two
workers over jobs/s with one (goal >= 1.8). Writes bench/results/worker_scaling.json.

    python bench/worker_scaling.py             # 100 jobs per run
    python bench/worker_scaling.py --quick     # 6 jobs, bench/results/worker_scaling_quick.json
"""

from __future__ import annotations

import argparse
import time

from _common import command, machine, write_result
from _jobs_env import job_system, tiny_checkpoint, wait_job


def throughput(n_workers: int, n_jobs: int) -> dict[str, float]:
    """Jobs per second of `n_workers` single-thread workers over `n_jobs` generation jobs."""
    from shared import jobs
    from shared.models import JobStatus
    from shared.specs import GenerateSpec

    with job_system("embedded") as env:
        checkpoint = tiny_checkpoint(env.data_dir)
        env.start_workers(n_workers, threads=1)
        spec = GenerateSpec(
            checkpoint=checkpoint,
            prompts=["The king"],
            length=16,
            num_samples=2,
            grid={"steps": [8]},
            record_trajectory=False,
        )
        t0 = time.perf_counter()
        ids = [jobs.submit_generate(spec).id for _ in range(n_jobs)]
        done = [wait_job(i, timeout=3600, poll_s=0.1) for i in ids]
        seconds = time.perf_counter() - t0
    failed = [j.id for j in done if j.status != JobStatus.SUCCEEDED]
    if failed:
        raise RuntimeError(f"jobs {failed} did not succeed: {done[0].error}")
    return {
        "workers": n_workers,
        "jobs": n_jobs,
        "seconds": seconds,
        "jobs_per_s": n_jobs / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 jobs: checks that it runs")
    parser.add_argument("--jobs", type=int, help="jobs per run (default 100)")
    args = parser.parse_args()
    n_jobs = args.jobs or (6 if args.quick else 100)
    one = throughput(1, n_jobs)
    two = throughput(2, n_jobs)
    ratio = two["jobs_per_s"] / one["jobs_per_s"]
    for r in (one, two):
        rate = f"{r['jobs_per_s']:.2f} jobs/s"
        print(f"{r['workers']} worker(s): {r['jobs']} jobs in {r['seconds']:.1f}s = {rate}")
    print(f"ratio {ratio:.2f} (goal >= 1.8)")
    result = {
        "ratio": round(ratio, 3),
        "goal": "ratio >= 1.8",
        "one_worker": one,
        "two_workers": two,
        "threads_per_worker": 1,
        "command": command(),
        "machine": machine(),
    }
    print(
        f"wrote {write_result('worker_scaling_quick' if args.quick else 'worker_scaling', result)}"
    )


if __name__ == "__main__":
    main()
