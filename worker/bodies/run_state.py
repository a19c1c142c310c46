"""The on-disk layout of a training run's resumable state, for the job side.

A run's output directory (`WORK_DIR/run-ID`) holds:

    state/                 the latest resumable training state (Accelerate's format)
      trainer_state.json   its step, tokens seen, elapsed time
    .old-state/            the previous state while a new one is swapped in
    results.json           rank 0's summary, once training ended (multi-process jobs)
    checkpoint-STEP/       model checkpoints

The trainer (`worker.diffusion.training`) writes this layout; the names are its own
constants, and this module is the only job-side code that reads them. The artifact
store keeps the published copy of `state/` at `runs/ID/state` (`publish_state`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.storage import ArtifactStore
from worker.diffusion.training import OLD_STATE_DIR, RESULTS_FILE, STATE_DIR, STATE_FILE

__all__ = [
    "OLD_STATE_DIR",
    "RESULTS_FILE",
    "STATE_DIR",
    "STATE_FILE",
    "publish_state",
    "restore_state",
    "results_file",
    "saved_step",
]


def results_file(output_dir: Path) -> Path:
    return output_dir / RESULTS_FILE


def saved_step(state_dir: Path) -> int:
    """The step of the training state in `state_dir`, or -1 if it holds none."""
    path = state_dir / STATE_FILE
    return json.loads(path.read_text())["step"] if path.is_file() else -1


def _published_key(run_id: int) -> str:
    return f"runs/{run_id}/{STATE_DIR}"


def publish_state(store: ArtifactStore, run_id: int, output_dir: Path) -> None:
    """Copy the run's local state to the artifact store, where any machine resumes from it."""
    store.put_dir(output_dir / STATE_DIR, _published_key(run_id))


def restore_state(run_id: int, output_dir: Path) -> None:
    """Make the resumable state in `output_dir` the run's last published one, or none.

    Published: copied to the artifact store by `publish_state`, after the loss points up to
    its step were written. The local state can be ahead of it, when an attempt died
    between saving locally and publishing; resuming from that one would skip the steps
    whose loss points were never written. So the published state wins (the same on every
    machine), and without one the run starts over.
    """
    store = ArtifactStore()
    url = store.url(_published_key(run_id))
    remote = store.get_dir(url) if store.exists(url) else None
    local = output_dir / STATE_DIR
    if remote is not None and saved_step(remote) == saved_step(local):
        return
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(output_dir / OLD_STATE_DIR, ignore_errors=True)  # the trainer's fallback
    if remote is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(remote, local)
