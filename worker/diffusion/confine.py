"""Read-time confinement: the files a job opens for a dataset or a model stay under their roots.

The job system checks a spec's sources when it is submitted (`shared.contracts.sources`),
but a folder's files, or a file swapped for a symbolic link after the check, are only
known when they are read. So every local dataset file and model directory is checked
again here, at the moment the loaders open them: each file must resolve (links followed)
to a path under one of its roots, and a folder is listed file by file, refusing any entry
that leads out. The loaders then read the resolved paths.

The roots are the process's (`set_roots`): a job's process sets them from the worker's
settings before it runs anything (`worker.roots`); a notebook or the local CLI sets none
and reads what it is given. Hard links and what a shared file system's other clients do
are out of reach of a path check (docs/deploy.md, threat model).

    set_roots(Roots(datasets=(Path("/data"),), models=(Path("/models"),)))
    dataset_files(Path("/data/corpus"))  # -> resolved files, or OutsideRoot
    model_dir(Path("/models/gpt2"))      # -> the resolved directory, or OutsideRoot
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class OutsideRoot(ValueError):
    """A dataset or model path, or an entry of its folder, leads outside its roots."""


@dataclass(frozen=True)
class Roots:
    """Where a process may read local inputs; None: anywhere (nothing is confined)."""

    datasets: tuple[Path, ...] | None = None
    models: tuple[Path, ...] | None = None


_roots = Roots()


def set_roots(roots: Roots) -> None:
    """Confine this process's reads from now on (resolved once: a root may be a link)."""
    global _roots

    def resolved(paths: tuple[Path, ...] | None) -> tuple[Path, ...] | None:
        return None if paths is None else tuple(Path(p).resolve() for p in paths)

    _roots = Roots(datasets=resolved(roots.datasets), models=resolved(roots.models))


def current_roots() -> Roots:
    return _roots


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _resolve(path: Path, roots: tuple[Path, ...], what: str, shown: str) -> Path:
    """`path` with every link followed, refused unless under one of `roots`."""
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise OutsideRoot(f"{shown} does not exist (a dangling link?)") from None
    except (OSError, RuntimeError) as exc:  # a link loop, a name too long
        raise OutsideRoot(f"{shown} cannot be resolved: {exc}") from None
    if not _inside(resolved, roots):
        listed = ", ".join(str(r) for r in roots)
        raise OutsideRoot(f"{shown} leads outside the {what} root ({listed})")
    return resolved


def _files(folder: Path, roots: tuple[Path, ...], what: str, top: Path) -> Iterator[Path]:
    """Every file under `folder` (resolved, sorted by name), each checked; a linked
    sub-folder is followed only if it resolves under a root, and only once."""
    seen: set[Path] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with os.scandir(current) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            shown = os.path.relpath(entry.path, top)
            target = _resolve(Path(entry.path), roots, what, shown)
            if target.is_dir():
                pending.append(target)
            elif target.is_file():
                yield target


def dataset_files(path: Path) -> list[Path]:
    """The files to read for the dataset at `path` (a file, or every file under a folder),
    resolved and checked against the dataset roots; `OutsideRoot` if any leads out."""
    roots = _roots.datasets
    if roots is None:
        if path.is_file():
            return [path]
        return sorted(p for p in path.rglob("*") if p.is_file())
    top = _resolve(path, roots, "data", str(path))
    if top.is_file():
        return [top]
    return sorted(_files(top, roots, "data", top))


def model_dir(path: Path) -> Path:
    """The model directory at `path`, resolved, with every file in it checked against the
    model roots (`OutsideRoot` if one leads out): what `from_pretrained` then reads."""
    roots = _roots.models
    if roots is None:
        return path
    top = _resolve(path, roots, "model", str(path))
    for _ in _files(top, roots, "model", top):
        pass
    return top
