"""Bounds on what one job may ask for, declared once (the specs check them, the API and
the forms show them)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

# Row ids (runs, jobs, checkpoints, sample sets) are 32-bit signed integers in both databases:
# every id a user may type is checked against this one bound, so none reaches a driver that
# would overflow on it.
MAX_ID = 2**31 - 1

CheckpointId = Annotated[int, Field(ge=1, le=MAX_ID)]

# Limits that keep one job to minutes on a laptop and a row set the dashboard can show.
MAX_GRID = 64  # sampler combinations per generation job
MAX_FRONTIER_CHARS = 64
MAX_FRONTIER_CHECKPOINTS = 8
FRONTIER_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
FRONTIER_NAME = re.compile(FRONTIER_NAME_PATTERN)
MAX_PROMPTS = 32
MAX_PROMPT_CHARS = 2000
MAX_SAMPLES = 4096  # combinations x prompts x num_samples
MAX_NUM_SAMPLES = 256  # samples per prompt and combination
# MAUVE's fewest texts on either side (`worker.diffusion.mauve`): fewer, and it is not computed.
MAUVE_MIN_TEXTS = 100

# Seeds: sample j of a set uses seed + j, stored in a 32-bit column of both databases, so
# the largest base seed leaves room for MAX_NUM_SAMPLES of them.
MAX_SEED = MAX_ID - MAX_NUM_SAMPLES

# A model, dataset or judge name, or a path: longer than any real one (file systems take
# 255 bytes a name), short enough that no check of it fails on the length itself.
MAX_SOURCE_CHARS = 1024
