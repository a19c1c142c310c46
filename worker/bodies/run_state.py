"""The on-disk layout of a training run's resumable state, for the job side.

A run's output directory (`WORK_DIR/run-ID`) holds:

    state/                 the latest resumable training state (Accelerate's format)
      trainer_state.json   its step, tokens seen, elapsed time
    .old-state/            the previous state while a new one is swapped in
    results.json           rank 0's summary, once training ended (multi-process jobs)
    checkpoint-STEP/       model checkpoints

The trainer (`worker.diffusion.training`) writes this layout; the names are its own
constants, and this module is the only job-side code that reads them. The artifact
store keeps published copies of `state/` at `runs/ID/states/aATTEMPT-sSTEP`, and the run's
summary says which one is current (`publish_state`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from shared.errors import Displaced
from shared.jobs import Claim
from shared.storage import ArtifactStore
from worker import results
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


STATES = "states"  # under runs/ID/: one folder per published state, a{ATTEMPT}-s{STEP}


def _state_key(run_id: int, attempt: int, step: int) -> str:
    return f"runs/{run_id}/{STATES}/a{attempt}-s{step}"


def _legacy_key(run_id: int) -> str:
    """Where states were published before they were tagged with their attempt."""
    return f"runs/{run_id}/{STATE_DIR}"


def _tag(url: str) -> tuple[int, int] | None:
    """(attempt, step) of a published state's URL, or None for a name not ours."""
    match = re.fullmatch(r"a(\d+)-s(\d+)", url.rsplit("/", 1)[-1])
    return (int(match[1]), int(match[2])) if match else None


def publish_state(store: ArtifactStore, claim: Claim, run_id: int, output_dir: Path) -> None:
    """Copy the run's local state to the artifact store, where any machine resumes from it.

    The copy goes to a key of its own (tagged with the attempt and step: never overwritten,
    so nobody reads one half-replaced), and the run's pointer to it moves only if attempt
    `claim` still owns the job (`results.set_published_state`, fenced): a displaced
    attempt's state is never resumed from. Then the states it replaces are deleted: those
    of this attempt and earlier ones, and any of an earlier step (a retry numbers its
    attempts from 1 again). A later attempt's state is never among them: that attempt
    claimed the job after this pointer moved, so it resumed from here and is ahead.
    """
    state_dir = output_dir / STATE_DIR
    step = saved_step(state_dir)
    url = store.put_dir(state_dir, _state_key(run_id, claim.attempt, step))
    try:
        results.set_published_state(claim, run_id, url, step)
    except Displaced:
        store.delete(url)
        raise
    for old in store.list(f"runs/{run_id}/{STATES}"):
        tag = _tag(old)
        if old != url and tag is not None and (tag[0] <= claim.attempt or tag[1] < step):
            store.delete(old)
    legacy = store.url(_legacy_key(run_id))
    if store.exists(legacy):
        store.delete(legacy)


def restore_state(run_id: int, output_dir: Path) -> None:
    """Make the resumable state in `output_dir` the run's last published one, or none.

    Published: copied to the artifact store by `publish_state`, after the loss points up to
    its step were written, and recorded as the run's state by the attempt that owned the
    job. The local state can be ahead of it, when an attempt died between saving locally
    and publishing; resuming from that one would skip the steps whose loss points were
    never written. So the published state wins (the same on every machine), and without
    one the run starts over.
    """
    store = ArtifactStore()
    url = results.published_state(run_id)
    if url is None and store.exists(legacy := store.url(_legacy_key(run_id))):
        url = legacy  # published by a version before the states were tagged
    remote = store.get_dir(url) if url is not None else None
    local = output_dir / STATE_DIR
    if remote is not None and saved_step(remote) == saved_step(local):
        return
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(output_dir / OLD_STATE_DIR, ignore_errors=True)  # the trainer's fallback
    if remote is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(remote, local)
