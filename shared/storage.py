"""The artifact store: checkpoint folders addressed by URL, through fsspec.

Every artifact a job writes or reads goes through here, so moving from a local folder
(`file://`, the default ARTIFACT_URL) to a bucket (`s3://...`, with s3fs installed) is a
setting, not a code change.

    store = ArtifactStore()                       # at settings.artifact_url
    url = store.put_dir(Path("out/checkpoint-20"), "runs/3/checkpoint-20")
    local = store.get_dir(url)                    # a local folder with the same files
    store.list("runs/3")                          # ['.../runs/3/checkpoint-20', ...]

Local URLs are read in place; remote ones are copied once into `settings.cache_dir`.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from shared.settings import get_settings


class ArtifactStore:
    """Folders of files under one base URL."""

    def __init__(self, base_url: str | None = None, cache_dir: Path | None = None) -> None:
        settings = get_settings()
        self.base_url = (base_url or settings.artifact_url).rstrip("/")
        self.cache_dir = cache_dir or settings.cache_dir
        self.fs, self.root = fsspec.core.url_to_fs(self.base_url)

    # ------------------------------------------------------------------ addressing
    def url(self, key: str) -> str:
        """The URL of `key` (a relative, '/'-separated name) in this store."""
        key = key.strip("/")
        if not key or ".." in key.split("/"):
            raise ValueError(f"bad artifact key {key!r}")
        return f"{self.base_url}/{key}"

    @staticmethod
    def is_local(url: str) -> bool:
        """True for a store on this machine's file system (`worker.roots` confines reads
        to it)."""
        return isinstance(fsspec.core.url_to_fs(url)[0], LocalFileSystem)

    # ------------------------------------------------------------------ operations
    def put_dir(self, local: Path, key: str) -> str:
        """Copy the folder `local` to `key`, replacing what was there; return its URL.

        On a local store the copy lands beside the target and is renamed over it, so a
        reader never sees half a checkpoint.
        """
        url = self.url(key)
        fs, path = fsspec.core.url_to_fs(url)
        if isinstance(fs, LocalFileSystem):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
            shutil.copytree(local, tmp)
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if fs.exists(path):
                fs.rm(path, recursive=True)
            fs.put(str(local).rstrip("/") + "/", path, recursive=True)
        return url

    def get_dir(self, url: str) -> Path:
        """A local folder holding the artifact at `url` (the folder itself if local)."""
        fs, path = fsspec.core.url_to_fs(url)
        if isinstance(fs, LocalFileSystem):
            if not Path(path).is_dir():
                raise FileNotFoundError(f"no artifact at {url}")
            return Path(path)
        target = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()[:24]
        if not target.is_dir():
            if not fs.exists(path):
                raise FileNotFoundError(f"no artifact at {url}")
            tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
            fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
            tmp.rename(target)
        return target

    def exists(self, url: str) -> bool:
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.exists(path))

    def list(self, prefix: str = "") -> list[str]:
        """URLs of the entries directly under `prefix` (default: the store's root), sorted."""
        url = self.url(prefix) if prefix.strip("/") else self.base_url
        fs, path = fsspec.core.url_to_fs(url)
        if not fs.exists(path):
            return []
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        return [f"{url}/{n}" for n in names if not n.startswith(".")]

    def delete(self, url: str) -> None:
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
