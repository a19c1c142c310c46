"""Corpus files under DATASET_ROOT: what a training run may name as its dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

FORMATS = (".txt", ".jsonl", ".json", ".csv", ".parquet")
MAX_LISTED = 500


def list_datasets(root: Path) -> list[dict]:
    """Files under the data root, newest first, with the name to type in a spec."""
    if not root.is_dir():
        return []
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [
        {
            "name": str(p.relative_to(root)),
            "bytes": p.stat().st_size,
            "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M"),
        }
        for p in files[:MAX_LISTED]
    ]
