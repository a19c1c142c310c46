"""Training-recipe ablation for masked diffusion at equal steps, and the bound ratio to AR.

Ablation (the default mode). From the preset's defaults (the baseline), train one arm per
recipe option (TrainSpec's head_warmup_steps, stratified_t, t_distribution uniform, clipped
and bell, complementary_masks; an option that is already the preset's setting is the
baseline itself and is not trained again), one run at a time and all for the same number
of steps (so the comparison holds on a loaded machine, where wall-clock budgets would not),
then:

- score every arm on the whole held-out split with the stratified bound
  (`worker.diffusion.likelihood.stratified_bound`, the same seed and so the same masks for
  every arm) and compare each with the baseline by the paired difference and its standard
  error (per held-out block);
- combine the options that won (`wins`: a lower bound by more than 2 paired standard errors
  and at least 0.01 nats per token), train that;
- train the best arm and the baseline again on a second seed;
- train the AR objective at each of `--ar-lrs` (and with the head warm-up, which applies to
  it), scored exactly on the same tokens; every diffusion arm's `bound_ratio` is against the
  best AR run.

Ratio curve (`--ratio-curve --minutes 2.5,5,10`): the chosen recipe (`chosen` in the results
file, else the preset's defaults) against AR at its best learning rate, each trained for
each wall-clock budget, one after the other (never two at once: each would get half the
cores), appended to the results as `ratio_curve`. Wall-clock budgets are only comparable on
a quiet machine.

    python bench/recipe.py                                # tiny preset, 200 steps per arm
    python bench/recipe.py --preset minilm --steps 150    # the packaged MiniLM (slow on 2 cores)
    python bench/recipe.py --ratio-curve --minutes 2.5,5,10
    python bench/recipe.py --ratio-curve --minutes 0.1 --out runs/recipe_smoke.json  # smoke
    python bench/recipe.py --judge-arms baseline,clipped_t,ar-lr-3e-3   # after an ablation

Judged samples (`--judge-arms A,B,...`): from each named arm's checkpoint (trained by an
ablation into `--work`), unconditional samples at each of `--temperatures` (top-k 50;
diffusion arms by entropy unmasking over `--unmask-steps` passes), scored by the packaged
judge (judge perplexity, unigram entropy, repeated 4-grams) and MAUVE against held-out
text, with held-out human text measured the same way, and each arm's judge perplexity read
at the human text's entropy (`shared.contracts.matched`). Appended as `judged`.

Writes bench/results/recipe.json (or `--out`), after every arm, so a stopped run keeps what
it measured and a rerun skips the arms already there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, command, machine

OPTIONS: dict[str, dict[str, Any]] = {
    "stratified_t": {"stratified_t": True},
    "uniform_t": {"t_distribution": "uniform"},  # every ratio in (eps, 1]
    "clipped_t": {"t_distribution": "clipped"},  # t_low / t_high: the spec's 0.3 / 0.8
    "bell_t": {"t_distribution": "bell"},
    "complementary_masks": {"complementary_masks": True},
}
# An option wins when it lowers the bound by more than 2 paired standard errors (a real
# effect) and by at least 0.01 nats per token (1% of perplexity: one the product would notice).
WIN_SE, MIN_GAIN = 2.0, 0.01


def wins(c: dict[str, float]) -> bool:
    """Whether the paired comparison `c` (from `compare`) is a win over its baseline."""
    return c["nats"] < -max(WIN_SE * c["se"], MIN_GAIN)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", help="tiny (default: fast on 2 cores) or minilm")
    p.add_argument("--steps", type=int, default=200, help="training steps per ablation arm")
    p.add_argument("--head-warmup", type=int, help="head-only steps (default steps // 8)")
    p.add_argument("--ar-lrs", help="AR body[/head] learning rates (default per preset)")
    p.add_argument("--diffusion-lrs", default="", help="extra diffusion arms: body[/head] rates")
    p.add_argument("--only", default="", help="just the baseline and these options (a subset)")
    p.add_argument("--seed", type=int, default=0, help="with --only: train seed (arms '-seedN')")
    p.add_argument("--draws", type=int, default=4, help="stratified passes per held-out block")
    # 1: on the shared 2-core machine, 2 threads per process under load trained several times
    # slower than 1 (each op's threads wait on each other's time slices).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ratio-curve", action="store_true", help="chosen recipe vs AR over budgets")
    p.add_argument("--minutes", default="2.5,5,10", help="ratio curve: budgets per model")
    p.add_argument("--judge-arms", default="", help="judge these arms' samples (after an ablation)")
    p.add_argument("--temperatures", default="0.7,1.0,1.3", help="judged samples: top-k 50")
    p.add_argument("--unmask-steps", type=int, default=32, help="judged diffusion samples")
    p.add_argument("--samples", type=int, default=100, help="judged samples per set")
    p.add_argument("--length", type=int, default=32, help="tokens per judged sample")
    p.add_argument("--out", type=Path, default=RESULTS / "recipe.json")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "recipe")
    return p.parse_args()


def cpu_info() -> dict[str, Any]:
    """The CPU model and its flags, from /proc/cpuinfo, and the load when measured."""
    model, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = value.split()
                break
    except OSError:
        pass
    return {**machine(), "cpu_model": model, "cpu_flags": flags, "load_average": os.getloadavg()}


def base_spec(args: argparse.Namespace, **changes: Any):
    from shared.contracts.specs import TrainSpec

    # The whole corpus (the held-out split is then the same ~370 blocks for every preset);
    # evaluation and checkpoints only at the end.
    common = {"max_texts": None, "eval_every": 10**9, "save_every": 10**9, "log_every": 50}
    return TrainSpec.from_preset_data(args.preset, {**common, **changes})


def train_and_score(spec, work: Path, draws: int) -> tuple[dict[str, Any], Any]:
    """Train `spec` from scratch into `work`; score the whole held-out split."""
    import torch

    from worker.diffusion.likelihood import causal_scores, stratified_bound
    from worker.diffusion.training import Trainer

    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    trainer = Trainer(spec, work)
    summary = trainer.train()
    model, val = trainer._objective.model, trainer.prepared.val_blocks
    t1 = time.perf_counter()
    if spec.objective == "ar":
        scores = causal_scores(model, val, trainer.tokenizer)
    else:
        scores = stratified_bound(model, val, trainer.tokenizer, draws=draws, seed=0)
    torch.save({"nats": scores.nats, "tokens": scores.tokens}, work / "scores.pt")
    shutil.rmtree(work / "state", ignore_errors=True)  # keep the checkpoint, not the optimiser
    record = {
        "objective": spec.objective,
        "seed": spec.seed,
        "steps": summary["steps"],
        "tokens_per_s": summary["tokens_per_s"],
        "train_seconds": summary["train_seconds"],
        "eval_seconds": round(time.perf_counter() - t1, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "held_out_blocks": len(val),
        "held_out_tokens": int(scores.tokens.sum()),
        "nats_per_token": scores.nats_per_token,
        "perplexity": scores.perplexity,
        "standard_error": scores.standard_error,
        "exact": spec.objective == "ar",
        "loop_bound_ppl": summary["bound"]["perplexity"],  # the loop's own (grid) estimate
        "unigram_entropy": summary["unigram_entropy"],  # nats: a context-free model's loss
    }
    return record, scores


def load_scores(work: Path):
    import torch

    from worker.diffusion.likelihood import BlockScores

    saved = torch.load(work / "scores.pt")
    return BlockScores(saved["nats"], saved["tokens"])


class Ablation:
    """Arms by name, each trained once and saved as it finishes."""

    def __init__(self, args: argparse.Namespace, payload: dict[str, Any]) -> None:
        self.args, self.payload = args, payload
        self.arms: dict[str, dict[str, Any]] = payload.setdefault("arms", {})

    def run(self, name: str, changes: dict[str, Any], seed: int = 0):
        work = self.args.work / name
        if name in self.arms and (work / "scores.pt").is_file():
            print(f"  {name}: done before, {self.arms[name]['perplexity']:.2f}")
            return load_scores(work)
        spec = base_spec(self.args, max_steps=self.args.steps, seed=seed, **changes)
        record, scores = train_and_score(spec, work, self.args.draws)
        self.arms[name] = {"changes": changes, **record}
        kind = "exact" if record["exact"] else "bound"
        print(
            f"  {name}: {kind} ppl {record['perplexity']:.2f} (+- {record['standard_error']:.3f}"
            f" nats), {record['tokens_per_s']} tokens/s, {record['wall_seconds']:.0f}s"
        )
        save(self.payload, self.args.out)
        return scores


def lr_changes(item: str, ar: bool = True) -> dict[str, float]:
    """ "body[/head]" -> TrainSpec changes; AR arms without a head rate use the body's for
    both, diffusion arms keep the preset's head rate."""
    body, _, head = item.partition("/")
    if head or ar:
        return {"lr": float(body), "head_lr": float(head or body)}
    return {"lr": float(body)}


def compare(scores: dict[str, Any], name: str, against: str) -> dict:
    """Arm `name` against arm `against`, paired on the same held-out tokens."""
    from worker.diffusion.likelihood import paired_difference

    d = paired_difference(scores[name], scores[against])
    return {"against": against, "nats": d.nats_per_token, "se": d.standard_error, "ratio": d.ratio}


def ablation(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    steps, head = args.steps, args.head_warmup or max(1, args.steps // 8)
    default_ar = "1e-3,3e-3" if args.preset == "tiny" else "3e-4/2e-3,1e-3/3e-3"
    payload["settings"] = {
        "preset": args.preset,
        "steps_per_arm": steps,
        "head_warmup_steps": head,
        "eval": f"stratified bound, {args.draws} passes per held-out block, seed 0; AR exact",
        "win_rule": f"bound below the baseline's by more than {WIN_SE} paired SE and by at "
        f"least {MIN_GAIN} nats per token",
    }
    lab = Ablation(args, payload)
    if args.seed and not args.only:
        raise SystemExit("--seed is for --only subsets (the full ablation adds seed 1 itself)")
    sfx = f"-seed{args.seed}" if args.seed else ""
    scores = {f"baseline{sfx}": lab.run(f"baseline{sfx}", {}, seed=args.seed)}
    singles = {"head_warmup": {"head_warmup_steps": head}, **OPTIONS}
    for item in filter(None, args.diffusion_lrs.split(",")):
        singles[f"lr-{item.replace('/', '-')}"] = lr_changes(item, ar=False)
    baseline = base_spec(args)
    for name, changes in list(singles.items()):
        if base_spec(args, **changes) == baseline:  # e.g. clipped t, now the default
            print(f"  {name}: the baseline's own setting, not trained again")
            del singles[name]
        elif not args.only:
            scores[name] = lab.run(name, changes)
    if args.only:  # a subset: each named option against the baseline, nothing else
        for name in args.only.split(","):
            if name in OPTIONS and name not in singles:
                raise SystemExit(f"--only: {name} is the preset's own setting (the baseline)")
            if name not in singles:
                raise SystemExit(f"--only: unknown arm {name!r}; choose from {', '.join(singles)}")
            scores[name + sfx] = lab.run(name + sfx, singles[name], seed=args.seed)
            lab.arms[name + sfx]["vs_baseline"] = compare(scores, name + sfx, f"baseline{sfx}")
        save(payload, args.out)
        return
    ar_names = []
    for item in (args.ar_lrs or default_ar).split(","):
        name = f"ar-lr-{item.replace('/', '-')}"
        scores[name] = lab.run(name, {"objective": "ar", **lr_changes(item)})
        ar_names.append(name)
    best_ar = min(ar_names, key=lambda n: lab.arms[n]["nats_per_token"])
    name = "ar-head_warmup"
    scores[name] = lab.run(name, {**lab.arms[best_ar]["changes"], "head_warmup_steps": head})
    ar_names.append(name)
    best_ar = min(ar_names, key=lambda n: lab.arms[n]["nats_per_token"])

    gains = {}
    for option in singles:
        lab.arms[option]["vs_baseline"] = c = compare(scores, option, "baseline")
        if wins(c):
            gains[option] = c["nats"]
    payload["winners_alone"] = sorted(gains, key=gains.get)
    # Best first; an option setting a field a better one already set (clipped vs bell t) is
    # left out: they are alternatives, not parts.
    winners: dict[str, dict[str, Any]] = {}
    for option in payload["winners_alone"]:
        taken = {k for w in winners.values() for k in w}
        if not taken & set(singles[option]):
            winners[option] = singles[option]
    candidates = ["baseline", *singles]
    if len(winners) > 1:  # named by its parts, so a rerun with other winners trains anew
        combo = "+".join(winners)
        scores[combo] = lab.run(combo, {k: v for w in winners.values() for k, v in w.items()})
        lab.arms[combo]["vs_baseline"] = compare(scores, combo, "baseline")
        candidates.append(combo)
    best = min(candidates, key=lambda n: lab.arms[n]["nats_per_token"])
    if best != "baseline":  # the winner and the baseline again, on a second seed
        scores["baseline-seed1"] = lab.run("baseline-seed1", {}, seed=1)
        scores[f"{best}-seed1"] = lab.run(f"{best}-seed1", lab.arms[best]["changes"], seed=1)
        lab.arms[f"{best}-seed1"]["vs_baseline"] = compare(
            scores, f"{best}-seed1", "baseline-seed1"
        )
        second = lab.arms[f"{best}-seed1"]["vs_baseline"]
        holds = wins(second) and wins(lab.arms[best]["vs_baseline"])
    else:
        holds = False
    for name, arm in lab.arms.items():  # seed 1 holds out other blocks: no AR run on them
        if arm["objective"] == "diffusion" and arm["seed"] == 0:
            arm["vs_best_ar"] = compare(scores, name, best_ar)
            arm["bound_ratio"] = arm["vs_best_ar"]["ratio"]
    payload["best_ar"] = best_ar
    payload["best_diffusion"] = best
    payload["winner_holds_on_seed1"] = holds
    payload["chosen"] = lab.arms[best]["changes"] if holds else {}
    payload["ar_chosen"] = lab.arms[best_ar]["changes"]
    save(payload, args.out)
    print(f"best diffusion arm: {best} (holds on a second seed: {holds}); best AR: {best_ar}")


def ratio_curve(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    from worker.diffusion.likelihood import paired_difference

    # The ablation's choices hold for the preset it measured; `--ar-lrs` (its first pair)
    # overrides the AR rates.
    same = payload.get("settings", {}).get("preset") == args.preset
    chosen = payload.get("chosen", {}) if same else {}
    ar = (payload.get("ar_chosen") if same else None) or {"objective": "ar"}
    if args.ar_lrs:
        ar = {"objective": "ar", **lr_changes(args.ar_lrs.split(",")[0])}
    curve = payload.setdefault("ratio_curve", [])
    for minutes in [float(m) for m in args.minutes.split(",")]:
        runs = {}
        for name, changes in (("diffusion", chosen), ("ar", ar)):
            spec = base_spec(args, max_steps=10**9, minutes=minutes, **changes)
            work = args.work / f"curve-{minutes:g}-{name}"
            runs[name] = train_and_score(spec, work, args.draws)
        (d, d_scores), (a, a_scores) = runs["diffusion"], runs["ar"]
        diff = paired_difference(d_scores, a_scores)
        point = {
            "minutes": minutes,
            "steps": d["steps"],
            "ar_steps": a["steps"],
            "ar_ppl": a["perplexity"],
            "diffusion_bound_ppl": d["perplexity"],
            "bound_ratio": diff.ratio,
            "log_ratio_se": diff.standard_error,
            "preset": args.preset,
            "recipe": chosen,
            "ar": ar,
            "load_average": os.getloadavg(),
        }
        curve[:] = [p for p in curve if p["minutes"] != minutes] + [point]
        curve.sort(key=lambda p: p["minutes"])
        save(payload, args.out)
        print(
            f"  {minutes:g} min: diffusion {d['steps']} steps, bound ppl {d['perplexity']:.1f}; "
            f"AR {a['steps']} steps, ppl {a['perplexity']:.1f}; ratio {diff.ratio:.2f}"
        )


def judge_arms(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """Judged samples of the arms named in `--judge-arms` (module docstring)."""
    from shared.contracts.grid import SamplerSpec
    from shared.contracts.matched import LinePoint, matched_reading
    from shared.settings import get_settings
    from worker.diffusion import data
    from worker.diffusion.ar_generate import generate_causal
    from worker.diffusion.generate import generate
    from worker.diffusion.judge import load_judge
    from worker.diffusion.mauve import reference_snippets
    from worker.diffusion.modeling import load_checkpoint
    from worker.diffusion.quality import sample_set_quality

    judge_name = "smollm2-135m"
    judge = load_judge(judge_name, cache_dir=get_settings().judge_cache_dir)
    n, length = args.samples, args.length
    temperatures = [float(t) for t in args.temperatures.split(",")]
    reference: dict[str, Any] | None = None
    points: list[dict[str, Any]] = []
    for arm in args.judge_arms.split(","):
        found = sorted((args.work / arm).glob("checkpoint-*"))
        if arm not in payload.get("arms", {}) or not found:
            raise SystemExit(f"--judge-arms: no trained arm {arm!r} in {args.out} / {args.work}")
        record = payload["arms"][arm]
        causal = record["objective"] == "ar"
        if causal:  # an AR checkpoint is a causal LM: loaded as a judge would be
            model, tokenizer = load_judge(str(found[-1]))
        else:
            model, tokenizer, _ = load_checkpoint(str(found[-1]))
        if reference is None:  # every arm of an ablation shares the preset's tokenizer
            spec = base_spec(args)
            pool = reference_snippets(data.corpus_for(spec).validation, tokenizer, 2 * n, length)
            refs, human_texts = pool[:n], pool[n:] or pool[:n]
            human = sample_set_quality(human_texts, judge=judge, references=refs)
            reference = {
                "texts": len(human_texts),
                "judge_ppl": human.judge_ppl,
                "entropy": human.entropy,
                "repetition": human.repetition,
                "mauve": human.mauve,
            }
            print(f"  human text: judge ppl {human.judge_ppl:.1f}, entropy {human.entropy:.2f}")
        for temperature in temperatures:
            sampler = SamplerSpec(sampling="topk", temperature=temperature)
            if not causal:
                sampler = sampler.model_copy(
                    update={"strategy": "entropy", "steps": args.unmask_steps}
                )
            fn = generate_causal if causal else generate
            samples = fn(model, tokenizer, [""], sampler, length=length, num_samples=n)
            texts = [x.completion for x in samples]
            q = sample_set_quality(texts, [x.prompt for x in samples], judge=judge, references=refs)
            point = {
                "arm": arm,
                "objective": record["objective"],
                "temperature": temperature,
                "judge_ppl": q.judge_ppl,
                "entropy": q.entropy,
                "repetition": q.repetition,
                "mauve": q.mauve,
                "mauve_at_floor": q.mauve_at_floor,
                "examples": texts[:2],
            }
            points.append(point)
            print(
                f"  {arm} T={temperature:g}: judge ppl {q.judge_ppl:.1f}, entropy "
                f"{q.entropy:.2f}, repetition {q.repetition:.3f}, MAUVE {q.mauve}"
            )
    assert reference is not None
    matched = []
    for arm in args.judge_arms.split(","):
        line = [
            LinePoint(p["entropy"], p["judge_ppl"], p["repetition"], p["temperature"])
            for p in points
            if p["arm"] == arm
        ]
        reading = matched_reading(line, reference["entropy"])
        matched.append({"arm": arm, "judge_ppl": reading.judge_ppl, "reason": reading.reason})
    payload["judged"] = {
        "judge": judge_name,
        "samples": n,
        "length": length,
        "sampling": f"top-k 50; diffusion: entropy unmasking, {args.unmask_steps} passes",
        "reference": reference,
        "points": points,
        "matched": matched,
    }
    save(payload, args.out)


def save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    payload = json.loads(args.out.read_text()) if args.out.is_file() else {}
    payload["machine"] = cpu_info()
    payload["command"] = command()
    if args.ratio_curve:
        ratio_curve(args, payload)
    elif args.judge_arms:
        judge_arms(args, payload)
    else:
        ablation(args, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
