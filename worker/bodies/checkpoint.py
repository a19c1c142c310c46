"""Loading a stored checkpoint for a job that reads one (generate, evaluate)."""

from __future__ import annotations

from typing import Any

from shared.db import session_scope
from shared.models import Checkpoint
from shared.storage import ArtifactStore
from worker.bodies.errors import named_inputs


def load_checkpoint_row(
    checkpoint_id: int, *, allow_causal: bool = False
) -> tuple[Any, Any, dict[str, Any], Checkpoint]:
    """(model, tokenizer, meta, checkpoint row) of a stored checkpoint, the model in eval
    mode on the inference device. `LookupError` if the row is gone. With `allow_causal`,
    an AR run's checkpoint loads as its causal LM (`model.config.is_decoder` tells)."""
    from worker.diffusion.causal import is_causal_checkpoint, load_causal_checkpoint
    from worker.diffusion.modeling import inference_device, load_checkpoint

    with session_scope() as s:
        ckpt = s.get(Checkpoint, checkpoint_id)
        if ckpt is None:
            raise LookupError(f"checkpoint {checkpoint_id} no longer exists")
    with named_inputs(model=f"checkpoint {checkpoint_id} ({ckpt.url})"):
        directory = ArtifactStore().get_dir(ckpt.url)
        if allow_causal and is_causal_checkpoint(directory):
            model, tokenizer, meta = load_causal_checkpoint(directory)
        else:
            model, tokenizer, meta = load_checkpoint(directory)
    model.to(inference_device()).eval()
    return model, tokenizer, meta, ckpt
