"""Pictures of masking, unmasking schedules and denoising trajectories.

Each picture has a console twin (`render_*`, returning a string) and a PNG (`plot_*`,
returning the path written). matplotlib is imported inside the plotting functions with the
Agg backend, so importing this module costs nothing and works on a headless worker.

Positions and `prefix_length` count the sequence as the model sees it, special tokens
included: with `[CLS] w1 w2 ...`, prefix_length=4 keeps CLS and the first three tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from shared.contracts.specs import MaskingSpec

from .masking import mask_tokens, seeded_generator, special_ids

# Cell colours: one per kind of position in the masking and trajectory pictures.
COLOURS = {
    "special": "#ffffff",
    "prefix": "#9ecae1",
    "kept": "#e0e0e0",
    "masked": "#fd8d3c",
}
TRAJECTORY_MASKED = "#bdbdbd"  # grey: still masked after a pass
MAX_LABELLED_CELLS = 48  # beyond this, token labels in cells are unreadable


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _render_ids(tokenizer, ids: Sequence[int], hidden: Sequence[bool] | None = None) -> str:
    """Text of `ids` without special tokens; the mask token (and any position in `hidden`)
    is shown as the tokenizer's mask token, so a masked position is never silently dropped.
    """
    special = set(tokenizer.all_special_ids)
    mask_id = tokenizer.mask_token_id
    pieces: list[str] = []
    run: list[int] = []
    for i, tok in enumerate(ids):
        masked = tok == mask_id or (hidden is not None and hidden[i])
        if masked or tok in special:
            if run:
                pieces.append(tokenizer.decode(run))
                run = []
            if masked:
                pieces.append(tokenizer.mask_token)
        else:
            run.append(int(tok))
    if run:
        pieces.append(tokenizer.decode(run))
    return "".join(pieces)


# ---------------------------------------------------------------------------------------
# Masking


def mask_text(
    tokenizer, text: str, ratios: Sequence[float], *, prefix_length: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask one text at each ratio, as training and evaluation would.

    Returns ids (T,), maskable (T,) bool and masked (R, T) bool: row r is the mask at
    ratios[r], drawn with `masking.seeded_generator(seed, r)` as evaluation draws it.
    """
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)  # (T,)
    spec = MaskingSpec(mode="grid", prefix_length=prefix_length)
    batches = [
        mask_tokens(
            ids[None],
            spec,
            special_ids=special_ids(tokenizer),
            mask_token_id=tokenizer.mask_token_id,
            generator=seeded_generator(seed, r),
            ratios=torch.tensor([float(ratio)], dtype=torch.float64),
        )
        for r, ratio in enumerate(ratios)
    ]
    masked = torch.stack([batch.masked[0] for batch in batches])  # (R, T)
    return ids, batches[0].maskable[0], masked


def render_masking(
    tokenizer,
    text: str,
    ratios: Sequence[float] = (0.1, 0.5, 1.0),
    *,
    prefix_length: int = 0,
    seed: int = 0,
) -> str:
    """One line per mask ratio: `text` with masked tokens shown as the mask token.

    The first `prefix_length` positions (special tokens included) are never masked; the
    header line shows them.
    """
    ids, maskable, masked = mask_text(
        tokenizer, text, ratios, prefix_length=prefix_length, seed=seed
    )
    n = int(maskable.sum())
    prefix = _render_ids(tokenizer, ids[:prefix_length].tolist())
    lines = [f"prefix ({prefix_length} positions, kept): {prefix!r}; {n} maskable tokens"]
    for ratio, row in zip(ratios, masked, strict=True):
        noisy = torch.where(row, tokenizer.mask_token_id, ids)
        label = f"{float(ratio):4.0%} ({int(row.sum())}/{n})"
        lines.append(f"{label:>14} | {_render_ids(tokenizer, noisy.tolist())}")
    return "\n".join(lines)


def _cell_kinds(ids: torch.Tensor, maskable: torch.Tensor, masked: torch.Tensor, prefix: int):
    """(R, T) list of COLOURS keys for the masking grid."""
    positions = torch.arange(ids.shape[0])
    kinds = []
    for row in masked:
        kind = []
        for t in positions.tolist():
            if row[t]:
                kind.append("masked")
            elif t < prefix:
                kind.append("prefix")
            elif maskable[t]:
                kind.append("kept")
            else:
                kind.append("special")
        kinds.append(kind)
    return kinds


def plot_masking(
    tokenizer,
    text: str,
    path: str | Path,
    ratios: Sequence[float] = (0.1, 0.5, 1.0),
    *,
    prefix_length: int = 0,
    seed: int = 0,
) -> Path:
    """PNG of `render_masking`: one row of coloured cells per ratio, one column per token
    (prefix blue, kept grey, masked orange, special tokens white)."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    plt = _pyplot()
    ids, maskable, masked = mask_text(
        tokenizer, text, ratios, prefix_length=prefix_length, seed=seed
    )
    kinds = _cell_kinds(ids, maskable, masked, prefix_length)
    image = [[to_rgb(COLOURS[k]) for k in row] for row in kinds]  # (R, T, 3)
    T = ids.shape[0]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * T), 0.6 * len(ratios) + 1.2))
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(ratios)), [f"{float(r):.0%}" for r in ratios])
    ax.set_ylabel("mask ratio")
    if T <= MAX_LABELLED_CELLS:
        tokens = [tokenizer.decode([int(i)]) for i in ids]
        ax.set_xticks(range(T), tokens, rotation=90, fontsize=7)
    ax.set_xlabel("token position")
    ax.legend(
        handles=[Patch(facecolor=c, edgecolor="#757575", label=k) for k, c in COLOURS.items()],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    ax.set_title("Variable-ratio masking")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------
# Schedules


def schedule_fractions(name: str, steps: int) -> list[float]:
    """Fraction of the generated positions still masked after each of `steps` passes,
    from `schedules.get_schedule(name)`; (steps + 1,) starting at 1.0 before any pass."""
    from .schedules import get_schedule

    schedule = get_schedule(name)
    return [float(schedule(k / steps)) for k in range(steps + 1)]


def plot_schedules(path: str | Path, steps: int = 10, names: Sequence[str] | None = None) -> Path:
    """PNG comparing unmasking schedules: fraction still masked vs denoising step.

    names: schedule names in `schedules.SCHEDULES` (default: all of them).
    """
    from .schedules import SCHEDULES

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names or list(SCHEDULES):
        ax.plot(range(steps + 1), schedule_fractions(name, steps), marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction still masked")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Unmasking schedules, {steps} steps")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------
# Trajectories. `sample` follows generate.Sample (duck-typed: attributes token_ids, given,
# committed_at, trajectory with steps holding tokens and confidences).


def _states(tokenizer, sample: Any) -> list[tuple[list[int], list[float]]]:
    """(tokens (T,), confidences (T,)) after each pass.

    Without a recorded trajectory the states are rebuilt from `committed_at`: a position
    shows its final token from the pass that last committed it. Re-masking that undid an
    earlier commit is then invisible, which the recorded trajectory would show.
    """
    if sample.trajectory:
        return [(list(s.tokens), list(s.confidences)) for s in sample.trajectory]
    mask_id = tokenizer.mask_token_id
    passes = max(sample.forward_passes, max(sample.committed_at, default=-1) + 1)
    states = []
    for p in range(passes):
        tokens = [
            tok if given or 0 <= at <= p else mask_id
            for tok, given, at in zip(
                sample.token_ids, sample.given, sample.committed_at, strict=True
            )
        ]
        states.append((tokens, [0.0] * len(tokens)))
    return states


def render_trajectory(tokenizer, sample: Any) -> str:
    """One line per denoising pass: the text so far, masks shown as the mask token."""
    states = _states(tokenizer, sample)
    mask_id = tokenizer.mask_token_id
    source = "recorded" if sample.trajectory else "rebuilt from committed_at"
    lines = [f"prompt: {sample.prompt!r}; {len(states)} passes ({source})"]
    for p, (tokens, _) in enumerate(states):
        left = sum(
            tok == mask_id for tok, given in zip(tokens, sample.given, strict=True) if not given
        )
        lines.append(f"pass {p:>3} ({left:>3} masked) | {_render_ids(tokenizer, tokens)}")
    lines.append(f"final | {sample.text}")
    return "\n".join(lines)


def plot_trajectory(tokenizer, sample: Any, path: str | Path) -> Path:
    """PNG of one generation: rows are passes, columns positions. A committed cell's colour
    is the confidence of its token (viridis, 0 to 1); masked cells are grey, positions given
    by the prompt or template blue. The final tokens label the columns."""
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize, to_rgb

    plt = _pyplot()
    states = _states(tokenizer, sample)
    mask_id = tokenizer.mask_token_id
    given = np.asarray(sample.given, dtype=bool)  # (T,)
    conf = np.array([c for _, c in states], dtype=float)  # (P, T)
    masked = np.array([[t == mask_id for t in tokens] for tokens, _ in states]) & ~given
    mappable = ScalarMappable(Normalize(0.0, 1.0), plt.get_cmap("viridis"))
    image = mappable.to_rgba(conf)[..., :3]  # (P, T, 3)
    image[masked] = to_rgb(TRAJECTORY_MASKED)
    image[:, given] = to_rgb(COLOURS["prefix"])
    P, T = conf.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * T), 0.3 * P + 1.5))
    ax.imshow(image, aspect="auto", interpolation="nearest")
    fig.colorbar(mappable, ax=ax, label="confidence")
    ax.set_yticks(range(P))
    ax.set_ylabel("after pass")
    ax.set_xlabel("position")
    if T <= MAX_LABELLED_CELLS:
        labels = [tokenizer.decode([int(i)]) for i in sample.token_ids]
        ax.set_xticks(range(T), labels, rotation=90, fontsize=7)
    ax.set_title(f"Denoising trajectory (seed {sample.seed}, {sample.forward_passes} passes)")
    return _save(fig, path)
