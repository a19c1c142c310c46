"""text-diffusion: train, sample and compare masked diffusion language models."""

__version__ = "0.1.0"
