"""GPU check: train the offline default, generate a batch, then the same through a worker.

    python bench/gpu_check.py                         # on a GPU machine, ~3 minutes
    python bench/gpu_check.py --num-processes 2       # the worker's job in 2 ranks (2 GPUs)
    python bench/gpu_check.py --allow-cpu --steps 10 --samples 8 --job-steps 5   # smoke run

1. direct: the Trainer on the offline default (packaged all-MiniLM-L6-v2 + the built-in
   corpus) for --steps steps, timed after a warm-up -> training tokens/s; then `generate`
   from its checkpoint, --samples samples of --length tokens -> samples/s, tokens/s.
2. worker: the job system (embedded: SQLite + a filesystem broker, in a temporary folder)
   with one worker on the gpu and cpu queues; a training job for device cuda (auto with
   --allow-cpu) and a generation job on its checkpoint, each timed from submit to done.
   Afterwards the worker process's memory map must hold no CUDA library: only job
   processes may touch the GPU.

Writes bench/results/gpu_check.json when it ran on a GPU (a CPU smoke run writes nothing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import ROOT, command, machine, write_result


def device_info(allow_cpu: bool) -> dict:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "device": "cuda",
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "bf16": torch.cuda.is_bf16_supported(),
        }
    if not allow_cpu:
        raise SystemExit(
            "no GPU is visible (torch.cuda.is_available() is False); run this on a GPU "
            "machine, or pass --allow-cpu for a smoke run on the CPU"
        )
    return {"device": "cpu", "name": "cpu", "count": 0}


def direct(args: argparse.Namespace, on_gpu: bool, out: Path) -> dict:
    """Train the offline default for a fixed number of steps; generate a batch."""
    import torch

    from shared.contracts.grid import SamplerSpec
    from shared.contracts.specs import TrainSpec
    from worker.diffusion.generate import generate
    from worker.diffusion.modeling import inference_device, load_checkpoint
    from worker.diffusion.training import BaseCallback, Trainer

    warmup = min(10, max(1, args.steps // 5))
    spec = TrainSpec.from_preset(
        "minilm",
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        max_steps=warmup + args.steps,
        warmup_steps=warmup,
        eval_every=10**6,
        save_every=10**6,
        log_every=1,
        eval_batches=2,
        eval_ratios=[0.15, 0.5, 1.0],
    )
    stamps: dict[int, float] = {}

    class Clock(BaseCallback):
        def on_log(self, step, metrics):
            if on_gpu:
                torch.cuda.synchronize()
            stamps[step] = time.perf_counter()

    summary = Trainer(spec, out / "direct", [Clock()]).train()
    seconds = stamps[warmup + args.steps] - stamps[warmup]
    train = {
        "steps": args.steps,
        "batch_size": spec.batch_size,
        "seq_len": spec.seq_len,
        "mixed_precision": summary["mixed_precision"],
        "seconds": round(seconds, 3),
        "tokens_per_s": round(args.steps * spec.batch_size * spec.seq_len / seconds, 1),
        "final_loss_bound_nats": round(summary["bound"]["nats_per_token"], 4),
    }
    print(
        f"train     {train['tokens_per_s']:>10,.0f} tokens/s  ({args.steps} steps of "
        f"{spec.batch_size}x{spec.seq_len}, {train['mixed_precision']}, {seconds:.1f} s)"
    )

    model, tokenizer, _ = load_checkpoint(summary["checkpoint"])
    model.to(inference_device())
    sampler = SamplerSpec(steps=10)
    prompts = ["And God said", "In the beginning", "The LORD is my shepherd", ""]
    per_prompt = max(1, args.samples // len(prompts))
    kwargs = dict(length=args.length, num_samples=per_prompt, batch_size=args.gen_batch)
    generate(model, tokenizer, prompts[:1], sampler, length=args.length)  # warm-up
    if on_gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    samples = generate(model, tokenizer, prompts, sampler, **kwargs)
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    gen = {
        "samples": len(samples),
        "length": args.length,
        "sampler_steps": sampler.steps,
        "batch_size": args.gen_batch,
        "seconds": round(seconds, 3),
        "samples_per_s": round(len(samples) / seconds, 2),
        "tokens_per_s": round(len(samples) * args.length / seconds, 1),
        "example": samples[0].text[:200],
    }
    print(
        f"generate  {gen['samples_per_s']:>10,.2f} samples/s, {gen['tokens_per_s']:,.0f} "
        f"tokens/s  ({len(samples)} samples of {args.length} tokens, {sampler.steps} steps)"
    )
    return {"train": train, "generate": gen}


def libraries_mapped(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def worker_path(args: argparse.Namespace, on_gpu: bool) -> dict:
    """A training job and a generation job through a real worker; times from submit to done."""
    from _jobs_env import job_system, wait_job
    from sqlalchemy import select

    from shared import db, submit
    from shared.contracts.specs import GenerateSpec, TrainSpec
    from shared.models import Checkpoint, JobStatus, Run

    device = "cuda" if on_gpu else "auto"
    with job_system("embedded") as env:
        env.start_workers(1, threads=args.threads, queues="gpu,cpu")
        spec = TrainSpec.from_preset(
            "minilm",
            max_steps=args.job_steps,
            warmup_steps=1,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            eval_every=10**6,
            save_every=10**6,
            log_every=1,
            eval_batches=2,
            eval_ratios=[0.5, 1.0],
            num_processes=args.num_processes,
            device=device,
        )
        t0 = time.perf_counter()
        job = submit.submit_train(spec, name="gpu-check")
        done = wait_job(job.id, timeout=1800, poll_s=0.1)
        train_s = time.perf_counter() - t0
        if done.status != JobStatus.SUCCEEDED:
            raise SystemExit(f"training job {done.status}: {done.error}")
        with db.read_scope() as s:
            run_summary = s.get(Run, job.run_id).summary
            last = select(Checkpoint.id).where(Checkpoint.run_id == job.run_id)
            ckpt_id = s.scalars(last.order_by(Checkpoint.step.desc())).first()
        gen_spec = GenerateSpec(
            checkpoint=ckpt_id,
            prompts=["And God said", ""],
            length=args.length,
            num_samples=max(1, args.samples // 2),
            device=device,
            judge=None,  # measures generation on the GPU, not the judge
        )
        t0 = time.perf_counter()
        gen = submit.submit_generate(gen_spec)
        gen_done = wait_job(gen.id, timeout=1800, poll_s=0.1)
        gen_s = time.perf_counter() - t0
        if gen_done.status != JobStatus.SUCCEEDED:
            raise SystemExit(f"generation job {gen_done.status}: {gen_done.error}")
        worker_pid = env.workers[0].pid
        result = {
            "train_job": {
                "queue": done.queue,
                "steps": args.job_steps,
                "num_processes": args.num_processes,
                "submit_to_done_s": round(train_s, 2),
                "device": run_summary.get("device"),
                "tokens_per_s": run_summary.get("tokens_per_s"),
            },
            "generate_job": {
                "queue": gen_done.queue,
                "samples": 2 * gen_spec.num_samples,
                "submit_to_done_s": round(gen_s, 2),
            },
            "worker_process_maps_cuda": libraries_mapped(worker_pid, "libcuda"),
        }
    t = result["train_job"]
    print(
        f"worker    train job on {t['queue']} ({t['device']}, {t['num_processes']} process(es)): "
        f"{t['submit_to_done_s']} s submit->done, {t['tokens_per_s']} tokens/s in the job"
    )
    g = result["generate_job"]
    print(f"worker    generate job on {g['queue']}: {g['submit_to_done_s']} s submit->done")
    print(
        f"worker    CUDA mapped in the Celery worker process: {result['worker_process_maps_cuda']}"
    )
    if result["worker_process_maps_cuda"]:
        raise SystemExit("the Celery worker process loaded CUDA; only job processes may")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true", help="smoke run without a GPU")
    parser.add_argument("--steps", type=int, help="timed training steps (default 200; CPU 10)")
    parser.add_argument("--batch-size", type=int, help="default 64 (CPU 16)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--samples", type=int, help="samples generated (default 256; CPU 8)")
    parser.add_argument("--length", type=int, default=64, help="tokens per sample")
    parser.add_argument("--gen-batch", type=int, default=64, help="sequences per model call")
    parser.add_argument("--job-steps", type=int, default=50, help="steps of the worker's job")
    parser.add_argument("--num-processes", type=int, default=1, help="ranks of that job")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per job")
    parser.add_argument("--skip-worker", action="store_true", help="the direct part only")
    args = parser.parse_args()

    info = device_info(args.allow_cpu)
    on_gpu = info["device"] == "cuda"
    args.steps = args.steps or (200 if on_gpu else 10)
    args.batch_size = args.batch_size or (64 if on_gpu else 16)
    args.samples = args.samples or (256 if on_gpu else 8)
    print(f"device: {info['name']} x{info['count']}" if on_gpu else "device: CPU (smoke run)")

    with tempfile.TemporaryDirectory(prefix="td-gpu-check-") as tmp:
        result = {"device": info, **direct(args, on_gpu, Path(tmp))}
    if not args.skip_worker:
        result["worker"] = worker_path(args, on_gpu)
    if not on_gpu:
        print("CPU smoke run: no result file written")
        return
    result.update(command=command(), machine=machine())
    path = write_result("gpu_check", result)
    print(f"wrote {path.relative_to(ROOT)}")
    print(json.dumps(result["device"]))


if __name__ == "__main__":
    main()
