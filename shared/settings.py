"""Settings, read from environment variables in this one place.

Every setting is a field of `Settings`; its environment variable is the field name in
upper case (`database_url` <- `DATABASE_URL`). Defaults are sized for one laptop: with
nothing set, everything lives under `DATA_DIR` (a SQLite file, an artifact folder) and no
server is needed. A bad value raises `SettingsError`, whose message names the variable.

    settings = get_settings()          # cached; read once per process
    get_settings.cache_clear()         # tests: re-read after changing os.environ
    Settings.from_env({"DATA_DIR": "/tmp/x"})   # build one from any mapping
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.contracts.options import DEFAULT_JUDGE

APP_NAME = "text-diffusion"


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use; the message names it."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/text-diffusion`, else `~/.local/share/text-diffusion`.

    A per-user folder rather than `./data`: the CLI, the web server and the worker then
    find the same database whichever directory they are started from, and an installed
    package never writes into the current directory.
    """
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / APP_NAME


class Settings(BaseModel):
    """Typed settings. Build with `from_env`, or get the process-wide one with `get_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Root of everything local; absolute, so a later chdir cannot move it.
    data_dir: Path
    # SQLite in the data dir: no server to install; PostgreSQL when several machines share it.
    database_url: str
    # None: the embedded broker (no server); set to redis://... for real workers elsewhere.
    redis_url: str | None = None
    # Prepended to every key the broker writes in Redis, so several deployments (or test
    # runs) can share one Redis database without taking or deleting each other's messages.
    redis_key_prefix: str = Field("", max_length=200)
    # Checkpoints and tokenizers; a local folder by default, s3://... across machines.
    artifact_url: str
    # Local dataset files a job may read: specs naming a path outside it are refused, so a
    # submitted job cannot read arbitrary files of the worker machine.
    dataset_root: Path
    # Remote dataset URLs a job may read, comma-separated prefixes (`s3://our-bucket/corpora/`).
    # Empty: none, because a worker fetches them with its own credentials.
    dataset_url_prefixes: str = ""
    # Local model directories a job may load: a model is code and data from disk, so a
    # path outside this folder is refused like a dataset outside DATASET_ROOT.
    model_root: Path
    # Packaged judges converted once from their GGUF file (20-40 s) and read from here
    # after (about a second): per machine, beside the other local state.
    judge_cache_dir: Path
    # Workers beat this often; a few seconds keeps the dashboard live at negligible DB cost.
    heartbeat_seconds: float = Field(5.0, gt=0.0, le=3600.0)
    # A running job whose heartbeat is older than this is presumed dead: 6 missed beats.
    stale_after_seconds: float = Field(30.0, gt=0.0)
    # A job that dies this many times ends `failed` instead of looping forever.
    max_attempts: int = Field(3, ge=1, le=100)
    # Between SIGTERM and SIGKILL on cancel: long enough to finish a step and save.
    cancel_grace_seconds: float = Field(10.0, ge=0.0, le=3600.0)
    # A queued job nobody has claimed after this long is sent again (a message lost to a
    # broker restart); duplicates are dropped when claimed, so resending is always safe.
    requeue_after_seconds: float = Field(120.0, gt=0.0)
    # Redis redelivers an unacknowledged message after this long. Longer than any job (two
    # days), so a long job is not redelivered; the database claim drops it if it were.
    visibility_timeout_seconds: float = Field(172_800.0, gt=0.0)
    # Concurrent jobs per worker: one, because a training job already uses every core.
    worker_concurrency: int = Field(1, ge=1, le=256)
    # The dashboard listens on loopback only unless told otherwise (no auth yet).
    web_host: str = "127.0.0.1"
    # 8000 rather than Flask's 5000, which macOS's AirPlay receiver takes.
    web_port: int = Field(8000, ge=1, le=65535)
    # Signs the dashboard's session cookies. Unset: a random key is generated once and kept
    # in DATA_DIR/secret_key, so logins survive restarts; set it when several web servers
    # share one load balancer.
    secret_key: str | None = Field(None, min_length=16)
    # The dashboard's `admin` password. Unset: one is generated on first start, printed
    # once, and only its hash is kept (DATA_DIR/admin_password.hash).
    admin_password: str | None = Field(None, min_length=8)
    # Failed logins one client address may make for one account name per
    # LOGIN_WINDOW_SECONDS; past it, that address's logins to that account (the right
    # password too) are refused until the window ends. Ten stops guessing and forgives typos.
    # Nothing is counted per account alone: failures from elsewhere never lock the owner out.
    login_failures_per_client: int = Field(10, ge=1, le=100_000)
    # Failed logins one address may make over all account names (a guesser trying names).
    login_failures_per_address: int = Field(30, ge=1, le=100_000)
    # Failed logins a browser that logged in before (its device cookie) may make; it is
    # counted apart from its address, so a guesser behind the same proxy cannot lock it out.
    login_failures_per_device: int = Field(10, ge=1, le=100_000)
    # Wrong API bearer tokens one address may send per window; past it, every token from
    # that address (the right one too) is answered 429 until the window ends.
    token_failures_per_client: int = Field(20, ge=1, le=100_000)
    login_window_seconds: int = Field(300, ge=1, le=86_400)
    # Send the session cookie over HTTPS only: set it when the dashboard is served behind
    # TLS (a plain-HTTP laptop dashboard would otherwise never keep a login).
    session_cookie_secure: bool = False
    # How long a login lasts: a working day, not Flask's 31 days.
    session_lifetime_hours: float = Field(12.0, gt=0.0, le=24.0 * 31)
    # Comma-separated bearer tokens the JSON API accepts (`Authorization: Bearer TOKEN`).
    api_tokens: str = ""
    # Fork each job from a warm process that has imported torch once (0.4 s to start a
    # small job instead of 7.6 s). None: on for Linux, off elsewhere (macOS's system
    # libraries are not fork-safe). False: a fresh Python per job.
    warm_jobs: bool | None = None
    # The judge each worker's warm process loads once (on the CPU, +578 MB shared by the
    # jobs it forks), so a generation job judged by it starts with it loaded instead of
    # loading it again (0.5-6 s). A packaged judge is preloaded once it is converted (the
    # first generation job converts it; the warm process looks again as each job ends); a
    # directory under MODEL_ROOT always. "none": off.
    worker_preload_judge: str = Field(DEFAULT_JUDGE, min_length=1, max_length=1000)
    # Largest corpus file the dashboard accepts as an upload (into DATASET_ROOT/uploads).
    max_upload_mb: int = Field(64, ge=1, le=100_000)
    # Log every SQL statement (debugging only; very noisy).
    sql_echo: bool = False

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("dataset_root", "model_root", "judge_cache_dir")
    @classmethod
    def _absolute_root(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("dataset_url_prefixes")
    @classmethod
    def _url_prefixes(cls, v: str) -> str:
        for prefix in (p.strip() for p in v.split(",") if p.strip()):
            scheme, sep, rest = prefix.partition("://")
            if not sep or not scheme or not rest.strip("/"):
                raise ValueError(
                    f"{prefix!r} is not a URL prefix with a host or bucket "
                    "(e.g. s3://bucket/corpora/)"
                )
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v.startswith("postgres://"):  # Heroku-style; SQLAlchemy only knows postgresql://
            v = "postgresql://" + v.removeprefix("postgres://")
        backend = v.split(":", 1)[0].split("+", 1)[0]
        if "://" not in v or backend not in ("sqlite", "postgresql"):
            raise ValueError(
                "expected sqlite:///PATH or postgresql://USER@HOST/DB "
                "(other databases are untested)"
            )
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected redis://HOST:PORT/DB, rediss://... or unix://PATH")
        return v

    @field_validator("artifact_url")
    @classmethod
    def _artifact_url(cls, v: str) -> str:
        if "://" not in v:
            # A bare path is friendlier to type than a file:// URL; turn it into one.
            return Path(v).expanduser().resolve().as_uri()
        return v.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from `environ` (default `os.environ`); unset ones take defaults."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for name in cls.model_fields:
            value = environ.get(name.upper())
            if value is not None:
                raw[name] = value
        if "data_dir" not in raw:
            raw["data_dir"] = default_data_dir(environ)
        data_dir = Path(raw["data_dir"]).expanduser().resolve()
        raw.setdefault("database_url", f"sqlite:///{data_dir / 'text-diffusion.db'}")
        raw.setdefault("artifact_url", (data_dir / "artifacts").as_uri())
        raw.setdefault("dataset_root", data_dir / "datasets")
        raw.setdefault("model_root", data_dir / "models")
        raw.setdefault("judge_cache_dir", data_dir / "judges")
        try:
            settings = cls.model_validate(raw)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, raw)) from None
        if settings.stale_after_seconds <= settings.heartbeat_seconds:
            raise SettingsError(
                f"STALE_AFTER_SECONDS={settings.stale_after_seconds:g} must be larger than "
                f"HEARTBEAT_SECONDS={settings.heartbeat_seconds:g}, or every job looks dead"
            )
        return settings

    @property
    def preload_judge(self) -> str | None:
        """The judge warm processes preload, or None."""
        name = self.worker_preload_judge.strip()
        return None if name.lower() == "none" else name

    @property
    def api_token_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())

    @property
    def dataset_url_prefix_list(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.dataset_url_prefixes.split(",") if p.strip())

    @property
    def broker_dir(self) -> Path:
        """Message folders of the embedded (filesystem) broker."""
        return self.data_dir / "broker"

    @property
    def work_dir(self) -> Path:
        """Per-run working folders of the jobs a worker runs (training state, logs)."""
        return self.data_dir / "work"

    def job_log(self, job_id: int, attempt: int) -> Path:
        """Where the worker that runs it writes a job attempt's output (the run page reads
        it when the worker is on the same machine)."""
        return self.work_dir / "logs" / f"job-{job_id}-attempt-{attempt}.log"

    @property
    def cache_dir(self) -> Path:
        """Local copies of artifacts fetched from a remote store."""
        return self.data_dir / "cache"


def _explain(exc: ValidationError, raw: Mapping[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        value = raw.get(field, "")
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{field.upper()}={value!s:.200}: {msg}")
    return "bad environment variable: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. `get_settings.cache_clear()` re-reads them."""
    return Settings.from_env()
