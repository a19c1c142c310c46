"""The learning-rate sweeps of the offline default, AR and diffusion at equal budgets: the
fair basis of the AR-vs-diffusion comparison (the AR baseline's perplexity once moved from
343 to 161 with its learning rate alone, so a comparison needs both objectives tuned with
the same effort).

Two grid sweeps on the real job system (`shared.sweeps`, one worker, one trial at a time:
never two trainings at once on 2 cores), one per objective, one after the other, over the
same grid of body and head learning rates. Every trial is the `minilm` preset (the packaged
MiniLM on the built-in KJV) trained for `--steps` steps on the same batches and tokens,
scored by the sweep metric `val_nll` at its last evaluation: the diffusion bound (nats per
token) or the AR run's exact NLL, on the same held-out batches. Reported: every trial, each
objective's best, and `bound_ratio`, the best diffusion bound's perplexity over the best AR
perplexity (at equal steps: the comparison `bench/ar_vs_diffusion.py` makes at equal
wall-clock).

    python bench/lr_sweeps.py                            # 2 x 3 trials of 120 steps (~30 min)
    python bench/lr_sweeps.py --steps 10 --lrs 1e-3 --head-lrs 3e-3   # smoke (runs/...)

Writes bench/results/lr_sweeps.json (at the defaults; runs/lr_sweeps_smoke.json otherwise),
after each sweep, so a stopped run keeps the first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, ROOT, command, cpu_flags, machine
from _jobs_env import job_system

DEFAULTS = {"steps": 120, "lrs": "3e-4,1e-3,3e-3", "head_lrs": "3e-3"}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def sweep_spec(objective: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": f"lr-{objective}",
        "base": {
            "preset": "minilm",
            "objective": objective,
            "max_steps": args.steps,
            "eval_every": args.steps,  # one evaluation, at the end: the metric
            "save_every": args.steps,
            "eval_batches": args.eval_batches,
            "seed": 0,
        },
        "method": "grid",
        "metric": {"name": "val_nll"},
        "parameters": {
            "lr": {"values": _floats(args.lrs)},
            "head_lr": {"values": _floats(args.head_lrs)},
        },
        "run_cap": len(_floats(args.lrs)) * len(_floats(args.head_lrs)),
        "concurrency": 1,
    }


def run_sweep(env, objective: str, args: argparse.Namespace) -> dict[str, Any]:
    from shared import sweeps
    from shared.contracts.sweep import SweepSpec
    from shared.db import read_scope
    from shared.models import Run, Sweep, SweepStatus, SweepTrial

    t0 = time.monotonic()
    sweep_id, _ = sweeps.create(SweepSpec.model_validate(sweep_spec(objective, args)))
    while True:
        with read_scope() as s:
            status = s.get(Sweep, sweep_id).status
            done = s.query(Run).join(SweepTrial).filter(SweepTrial.sweep_id == sweep_id)
            finished = sum(r.finished_at is not None for r in done)
        if status == SweepStatus.FINISHED:
            break
        if time.monotonic() - t0 > args.timeout_s:
            raise RuntimeError(f"sweep {objective} not finished after {args.timeout_s} s")
        print(f"  {objective}: {finished} trials done, {time.monotonic() - t0:.0f} s", flush=True)
        time.sleep(30)
    wall = time.monotonic() - t0
    with read_scope() as s:
        sweep = s.get(Sweep, sweep_id)
        spec = SweepSpec.model_validate(sweep.spec)
        trials = []
        for trial in sweep.trials:
            view = sweeps.trial_view(spec, trial)
            (run,) = trial.runs
            summary = run.summary or {}
            trials.append(
                {
                    "lr": view.params["lr"],
                    "head_lr": view.params["head_lr"],
                    "state": view.state,
                    "nll": view.value,
                    "ppl": math.exp(view.value) if view.value is not None else None,
                    "exact": summary.get("exact"),
                    "steps": run.step,
                    "tokens_seen": run.tokens_seen,
                    "train_seconds": summary.get("train_seconds"),
                    "tokens_per_s": summary.get("tokens_per_s"),
                    "error": None if view.value is not None else _error(run),
                }
            )
    scored = [t for t in trials if t["nll"] is not None]
    best = min(scored, key=lambda t: t["nll"]) if scored else None
    print(f"  {objective}: best {best} ({wall:.0f} s)", flush=True)
    return {"trials": trials, "best": best, "wall_s": round(wall, 1)}


def _error(run) -> str | None:
    errors = [j.error for j in run.jobs if j.error]
    return errors[-1].strip().splitlines()[-1] if errors else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="steps per trial")
    p.add_argument("--lrs", default=DEFAULTS["lrs"], help="body learning rates (the grid)")
    p.add_argument("--head-lrs", default=DEFAULTS["head_lrs"], help="head learning rates")
    p.add_argument("--eval-batches", type=int, default=8, help="held-out batches per ratio")
    p.add_argument("--threads", type=int, default=2, help="compute threads of the worker's jobs")
    p.add_argument("--objectives", default="diffusion,ar")
    p.add_argument("--timeout-s", type=float, default=4 * 3600)
    args = p.parse_args()
    full = all(getattr(args, k) == v for k, v in DEFAULTS.items())
    out = RESULTS / "lr_sweeps.json" if full else ROOT / "runs" / "lr_sweeps_smoke.json"
    result: dict[str, Any] = {
        "command": command(),
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "settings": {
            "preset": "minilm",
            "steps": args.steps,
            "grid": {"lr": _floats(args.lrs), "head_lr": _floats(args.head_lrs)},
            "metric": "val_nll at the last evaluation (diffusion: bound; AR: exact NLL)",
            "eval_batches": args.eval_batches,
            "training": "one trial at a time, one sweep after the other, 1 worker",
            "threads": args.threads,
        },
        "sweeps": {},
    }
    with job_system("embedded", WORKER_PRELOAD_JUDGE="none") as env:
        env.start_workers(1, threads=args.threads)
        for objective in args.objectives.split(","):
            result["sweeps"][objective] = run_sweep(env, objective, args)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
    bests = {k: v["best"] for k, v in result["sweeps"].items()}
    if bests.get("ar") and bests.get("diffusion"):
        result["bound_ratio"] = bests["diffusion"]["ppl"] / bests["ar"]["ppl"]
        print(
            f"best diffusion bound ppl {bests['diffusion']['ppl']:.1f} "
            f"(lr {bests['diffusion']['lr']:g}/{bests['diffusion']['head_lr']:g}), best AR ppl "
            f"{bests['ar']['ppl']:.1f} (lr {bests['ar']['lr']:g}/{bests['ar']['head_lr']:g}): "
            f"ratio {result['bound_ratio']:.2f}"
        )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
