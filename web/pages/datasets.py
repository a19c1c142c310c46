"""Datasets: the corpus files a training run may use, and uploading a new one.

Uploads land in DATASET_ROOT/uploads (the only place jobs may read local files from), are
size-limited (MAX_UPLOAD_MB), checked (a known format; text files must be UTF-8), written to
a temporary file and renamed into place, so a failed upload leaves nothing half-written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import flash, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import secure_filename

from shared.settings import get_settings
from web.pages import bp
from web.queries.datasets import FORMATS, list_datasets

TEXT_FORMATS = (".txt", ".jsonl", ".json", ".csv")


class UploadError(ValueError):
    status = 400


class UploadTooLarge(UploadError):
    status = 413


def save_upload(storage, root: Path, limit: int) -> Path:
    """Write an uploaded file to root/uploads atomically; `UploadError` says what is wrong."""
    if storage is None or not storage.filename:
        raise UploadError("choose a file to upload")
    name = secure_filename(storage.filename)
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise UploadError(f"{storage.filename!r}: expected one of {', '.join(FORMATS)}")
    folder = root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        raise UploadError(f"uploads/{name} exists already: rename the file or pick that one")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=suffix)
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := storage.stream.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise UploadTooLarge(f"the file is larger than the {limit >> 20} MB limit")
                out.write(chunk)
        if written == 0:
            raise UploadError("the file is empty")
        if suffix in TEXT_FORMATS:
            with open(tmp, "rb") as f:
                head = f.read(1 << 20)
            try:
                head.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.start < len(head) - 4:  # not just a character cut at the 1 MB mark
                    raise UploadError(
                        f"not UTF-8 text (byte {exc.start}): save it as UTF-8 and upload again"
                    ) from None
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@bp.route("/datasets", methods=["GET", "POST"])
def datasets():
    settings = get_settings()
    root = settings.dataset_root
    limit = settings.max_upload_mb << 20
    error, status = None, 200
    if request.method == "POST":
        try:
            target = save_upload(request.files.get("file"), root, limit)
        except RequestEntityTooLarge:
            error, status = f"the file is larger than the {settings.max_upload_mb} MB limit", 413
        except UploadError as exc:
            error, status = str(exc), exc.status
        else:
            name = target.relative_to(root)
            flash(f"Uploaded {name}: use it as the dataset of a new run.", "success")
            return redirect(url_for("pages.new_run", dataset=str(name)))
    return (
        render_template(
            "datasets.html",
            files=list_datasets(root),
            root=root,
            error=error,
            max_mb=settings.max_upload_mb,
            formats=FORMATS,
        ),
        status,
    )
