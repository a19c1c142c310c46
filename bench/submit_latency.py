"""Submit -> running latency of a job, on Redis and on the embedded broker.

One idle worker; each sample submits a job and measures from just before `submit` until
the worker has claimed it (the job row's `started_at`, written in the same transaction
that marks it running), then cancels it and waits for the worker to be idle again.
Prints and writes bench/results/submit_latency.json with `redis_median_s`, `redis_p95_s`,
`embedded_median_s` (goal: under 0.5 s median on Redis).

    python bench/submit_latency.py             # 30 samples per broker
    python bench/submit_latency.py --quick     # 3 samples, bench/results/submit_latency_quick.json
    TD_BENCH_REDIS_URL=redis://host:6379/0 python bench/submit_latency.py
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import command, machine, write_result
from _jobs_env import job_system, wait_job


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(mode: str, samples: int) -> list[float]:
    """Seconds from submit to claimed, one per sample, on broker `mode`."""
    from shared import job_reads, jobs, submit
    from shared.contracts.specs import TrainSpec
    from shared.models import JobStatus, utcnow

    # A cancel then stops the job at once: it is SIGKILLed without a grace period.
    with job_system(mode, CANCEL_GRACE_SECONDS="0") as env:
        env.start_workers(1)
        spec = TrainSpec.from_preset("tiny", max_steps=100_000)
        latencies = []
        for _ in range(samples):
            t0 = utcnow()
            job = submit.submit_train(spec)
            while (row := job_reads.get_job(job.id)).status == JobStatus.QUEUED:
                time.sleep(0.005)
            latencies.append((row.started_at - t0).total_seconds())
            jobs.cancel(job.id)
            wait_job(job.id, timeout=120)
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 samples: checks that it runs")
    parser.add_argument("--samples", type=int, help="samples per broker (default 30)")
    args = parser.parse_args()
    samples = args.samples or (3 if args.quick else 30)
    result: dict[str, object] = {}
    for mode in ("redis", "embedded"):
        values = measure(mode, samples)
        result[f"{mode}_median_s"] = round(statistics.median(values), 4)
        result[f"{mode}_p95_s"] = round(_percentile(values, 0.95), 4)
        result[f"{mode}_samples_s"] = [round(v, 4) for v in values]
        median, p95 = result[f"{mode}_median_s"], result[f"{mode}_p95_s"]
        print(f"{mode:>8}: median {median:.3f}s  p95 {p95:.3f}s")
    result["goal"] = "redis_median_s < 0.5"
    result["samples"] = samples
    result["command"] = command()
    result["machine"] = machine()
    path = write_result("submit_latency_quick" if args.quick else "submit_latency", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
