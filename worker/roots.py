"""The roots a job's process may read its local inputs from (`worker.diffusion.confine`).

Datasets: DATASET_ROOT. Models: MODEL_ROOT, and the folders the product itself writes
models to (the artifact store when it is local, the cache of remote ones, the packaged
judges converted once), which hold only what earlier jobs saved. Set once at the start
of every job process (`worker.execute`, and each rank of a multi-process job in
`worker.train_rank`), before anything is read, so every loader of the ML core checks each
file as it opens it.
"""

from __future__ import annotations

from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from shared.settings import Settings, get_settings
from shared.storage import ArtifactStore
from worker.diffusion.confine import Roots, set_roots


def job_roots(settings: Settings) -> Roots:
    models = [settings.model_root, settings.cache_dir, settings.judge_cache_dir]
    store = ArtifactStore()
    if isinstance(store.fs, LocalFileSystem):
        models.append(Path(store.root))
    return Roots(datasets=(settings.dataset_root,), models=tuple(models))


def confine_job_reads() -> None:
    """Confine this process's dataset and model reads to the worker's roots."""
    set_roots(job_roots(get_settings()))
