"""What the pruner saves: one TPE sweep over the `tiny` preset's learning rate and mask
settings, run twice on the real job system (2 workers), without and then with the
Hyperband pruner, one after the other (never at once: on 2 cores each would get half). The pruner is
asynchronous successive halving (default) or Hyperband (`--pruner hyperband`).

    python bench/sweep.py                          # 24 trials each way (about 15 minutes)
    python bench/sweep.py --trials 6 --steps 40    # a quick check

Both sweeps are sweep 1 of a fresh database, so TPE's seeded start is the same for both.
Reported each way: trials run, pruned, best metric (held-out NLL, nats per token), compute
(trained steps, all trials) and wall time; then `compute_saved` (the fraction of steps the
pruner saved) and `best_gap` (the pruned sweep's best relative to the unpruned one's,
0.01 = 1% worse). Goal: compute_saved >= 0.40 with best_gap <= 0.02.
Writes bench/results/sweep.json (sweep_quick.json at other sizes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import command, cpu_flags, machine, write_result
from _jobs_env import job_system

GOALS = {"compute_saved": 0.40, "best_gap": 0.02}
FULL = {"trials": 24, "steps": 120, "eval_every": 20}


def _spec(corpus: Path, args: argparse.Namespace, pruned: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "bench-pruned" if pruned else "bench-unpruned",
        "base": {
            "preset": "tiny",
            "dataset": str(corpus),
            "seq_len": 32,
            "batch_size": 8,
            "max_steps": args.steps,
            "eval_every": args.eval_every,
            "save_every": args.steps,
            "log_every": 10,
            "eval_batches": 2,
            "eval_ratios": [0.25, 0.5, 0.75, 1.0],
            "mixed_precision": "no",
            "scratch": {"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 400},
        },
        "method": "tpe",
        "metric": {"name": "val_nll", "goal": "minimize"},
        "parameters": {
            "lr": {"min": 1e-4, "max": 3e-2, "distribution": "log_uniform_values"},
            "warmup_steps": {"values": [0, 10, 30]},
            "masking.mode": {"values": ["uniform", "grid"]},
        },
        "run_cap": args.trials,
        "concurrency": args.workers,
    }
    if pruned:
        spec["early_terminate"] = {"type": args.pruner, "min_iter": 1, "eta": 3}
    return spec


def _run(args: argparse.Namespace, pruned: bool) -> dict[str, Any]:
    from shared import sweeps
    from shared.contracts.sweep import SweepSpec
    from shared.db import read_scope
    from shared.models import Sweep, SweepStatus
    from tests.corpus import paragraphs
    from web.queries.sweeps import sweep_detail

    with job_system("embedded") as env:
        corpus = env.data_dir / "datasets" / "corpus.txt"
        corpus.parent.mkdir(parents=True, exist_ok=True)
        corpus.write_text("\n".join(paragraphs(400, seed=1)) + "\n")
        env.start_workers(args.workers, threads=1)
        t0 = time.monotonic()
        sweep_id, _ = sweeps.create(SweepSpec.model_validate(_spec(corpus, args, pruned)))
        while True:
            with read_scope() as s:
                status = s.get(Sweep, sweep_id).status
            if status == SweepStatus.FINISHED:
                break
            if time.monotonic() - t0 > args.timeout_s:
                raise RuntimeError(f"sweep not finished after {args.timeout_s} s")
            time.sleep(1.0)
        wall = time.monotonic() - t0
        with read_scope() as s:
            detail = sweep_detail(s, sweep_id)
    states = [t["state"] for t in detail["trials"]]
    return {
        "trials": len(states),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("failed"),
        "best": detail["best"],
        "compute_steps": sum(t["steps"] for t in detail["trials"]),
        "wall_s": round(wall, 1),
        "best_params": min(
            (t for t in detail["trials"] if t["value"] is not None),
            key=lambda t: t["value"],
            default={"params": None},
        )["params"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=FULL["trials"])
    p.add_argument("--steps", type=int, default=FULL["steps"], help="max steps per trial")
    p.add_argument("--eval-every", type=int, default=FULL["eval_every"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout-s", type=float, default=3600)
    p.add_argument(
        "--pruner",
        choices=["successive_halving", "hyperband"],
        default="successive_halving",
        help="early_terminate.type of the pruned sweep (min_iter 1, eta 3)",
    )
    args = p.parse_args()

    unpruned = _run(args, pruned=False)
    print(f"without the pruner: {unpruned}", flush=True)
    pruned = _run(args, pruned=True)
    print(f"with the pruner:    {pruned}", flush=True)
    saved = 1 - pruned["compute_steps"] / unpruned["compute_steps"]
    gap = (pruned["best"] - unpruned["best"]) / unpruned["best"]
    result = {
        "unpruned": unpruned,
        "pruned": pruned,
        "compute_saved": round(saved, 3),
        "best_gap": round(gap, 4),
        "goals": GOALS,
        "met": {
            "compute_saved": saved >= GOALS["compute_saved"],
            "best_gap": gap <= GOALS["best_gap"],
        },
        "config": {**vars(args), "method": "tpe", "pruner": f"{args.pruner} (min_iter 1, eta 3)"},
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "command": command(),
    }
    name = "sweep" if {k: getattr(args, k) for k in FULL} == FULL else "sweep_quick"
    if args.pruner != "successive_halving":
        name += f"_{args.pruner}"
    path = write_result(name, result)
    print(f"compute_saved {saved:.1%}, best_gap {gap:+.2%} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
