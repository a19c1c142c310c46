"""The Celery app factory, queue names, and sending a job by task name.

Whoever submits (web, CLI) imports only this module, never the worker's code or torch:
`send_job` sends the task *by name* with the job id, nothing else.

Brokers:

- `REDIS_URL` set: Redis. Messages are acknowledged late (when the job ends) with a
  prefetch of one; a worker that dies before acknowledging gets its message redelivered
  after the visibility timeout, which is set longer than any job (VISIBILITY_TIMEOUT_SECONDS)
  so that a long job is not handed to a second worker meanwhile. REDIS_KEY_PREFIX puts
  every key under a prefix, so several deployments or test runs can share one database.
- otherwise the embedded broker: kombu's filesystem transport under `DATA_DIR/broker`.
  It needs no server and no extra package, works across processes on one machine, and
  claims each message with an atomic rename, so two workers never take the same one.
  It has no redelivery of its own; nothing depends on that (below).

In both modes the database owns job state: a message is only a wake-up call. A worker
claims its job with a compare-and-set UPDATE (`shared.jobs.claim`) before running it, so a
redelivered or resent message for a job that is running on a live worker, or finished,
is dropped, and the reconciler resends whatever the database says is owed. Cancel goes
through the database too. That is why crash recovery and cancel behave the same on both
brokers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue

from shared.settings import Settings, get_settings

TASK_NAME = "text_diffusion.run_job"
QUEUES = ("gpu", "cpu")
DEFAULT_QUEUE = "cpu"
# The embedded broker looks for new messages this often: submit -> start latency.
FILESYSTEM_POLL_SECONDS = 0.1


def broker_url(settings: Settings) -> str:
    """Kombu's URL for REDIS_URL (the embedded broker without one). A Unix socket is
    `unix:///path?db=N` to redis-py and `redis+socket:///path?virtual_host=N` to kombu."""
    url = settings.redis_url
    if not url:
        return "filesystem://"
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


def broker_transport_options(settings: Settings) -> dict[str, object]:
    if settings.redis_url:
        options: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_seconds}
        if settings.redis_key_prefix:
            # Queues, bindings, unacknowledged messages and control channels alike.
            options["global_keyprefix"] = settings.redis_key_prefix
        return options
    folder = settings.broker_dir
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        # Processed messages are moved (renamed) here: on the same filesystem a rename is
        # atomic, which is what makes a claim exclusive. `prune_processed` empties it.
        "store_processed": True,
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": FILESYSTEM_POLL_SECONDS,
    }


def make_celery(settings: Settings | None = None, *, main: str = "text-diffusion") -> Celery:
    """A Celery app configured for our jobs (the same config on both sides of the queue)."""
    settings = settings or get_settings()
    app = Celery(main, broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        # JSON only: a message can never carry code (pickle), and tasks take ids anyway.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Status lives in the database; nobody reads Celery results.
        task_ignore_result=True,
        result_backend=None,
        # Long jobs: acknowledge when done, take one message at a time, and let a message
        # whose worker process died go back to the queue.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A task only supervises a job subprocess, so threads are enough and keep torch
        # out of the worker process; `--concurrency` is how many jobs run at once.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=False,
        worker_send_task_events=False,
        timezone="UTC",
    )
    return app


@lru_cache(maxsize=4)
def _producer(settings: Settings) -> Celery:
    return make_celery(settings)


def queue_for_device(device: str) -> str:
    """The queue for a spec's `device`: gpu for cuda, cpu for cpu and auto."""
    return "gpu" if device == "cuda" else DEFAULT_QUEUE


def check_queue(queue: str) -> str:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}")
    return queue


def new_task_id() -> str:
    return str(uuid.uuid4())


def send_job(job_id: int, queue: str, *, task_id: str | None = None, priority: int = 0) -> str:
    """Send the message that makes a worker on `queue` run job `job_id`; return its task id.

    The job's row must already be committed: the worker reads it on arrival.
    """
    app = _producer(get_settings())
    task_id = task_id or new_task_id()
    app.send_task(
        TASK_NAME,
        args=[job_id],
        queue=check_queue(queue),
        routing_key=queue,
        task_id=task_id,
        priority=max(0, min(9, priority)),
    )
    return task_id


@dataclass(frozen=True)
class BrokerView:
    """Which job messages (by task id) the broker holds now.

    `waiting`: in a queue, for any worker to take. `received`: taken by a worker and not yet
    acknowledged (Redis's unacknowledged set; the embedded broker's processed folder). A
    task id in neither was lost (a FLUSHALL, a Redis restart without persistence) or never
    sent.
    """

    waiting: frozenset[str]
    received: frozenset[str]


def broker_view(settings: Settings | None = None) -> BrokerView:
    """Read every job message the broker holds (one LRANGE per queue and priority and one
    HVALS over Redis; a folder listing and small reads on the embedded broker)."""
    settings = settings or get_settings()
    with _producer(settings).connection_for_write() as conn:
        channel = conn.default_channel
        if settings.redis_url:
            return _redis_view(channel)
        return BrokerView(
            waiting=_folder_task_ids(Path(channel.data_folder_in)),
            received=_folder_task_ids(Path(channel.processed_folder)),
        )


def _task_id(payload: dict[str, Any]) -> str | None:
    """The task id in a kombu message payload (Celery's protocol 2 header, else the
    correlation id)."""
    return (payload.get("headers") or {}).get("id") or (payload.get("properties") or {}).get(
        "correlation_id"
    )


def _redis_view(channel: Any) -> BrokerView:
    import redis

    # kombu's client prefixes only the commands kombu itself sends; a plain client over its
    # connection pool, with the prefix added here, reads the same keys.
    client = redis.Redis(connection_pool=channel.client.connection_pool)
    prefix = channel.global_keyprefix or ""
    pipe = client.pipeline(transaction=False)
    for name in QUEUES:
        for priority in channel.priority_steps:
            pipe.lrange(prefix + channel._q_for_pri(name, priority), 0, -1)
    pipe.hvals(prefix + channel.unacked_key)
    *queued, unacked = pipe.execute()
    waiting = {_task_id(json.loads(m)) for messages in queued for m in messages}
    # An unacknowledged entry is [payload, exchange, routing key].
    received = {_task_id(json.loads(entry)[0]) for entry in unacked}
    return BrokerView(frozenset(waiting - {None}), frozenset(received - {None}))


def _folder_task_ids(folder: Path) -> frozenset[str]:
    found = set()
    for path in folder.glob("*.msg"):
        try:
            found.add(_task_id(json.loads(path.read_bytes())))
        except (OSError, ValueError):  # taken or pruned meanwhile, or half-written
            continue
    return frozenset(found - {None})


def prune_processed(settings: Settings | None = None, older_than_s: float = 3600.0) -> int:
    """Delete the embedded broker's processed message files older than `older_than_s`."""
    import time

    settings = settings or get_settings()
    folder = settings.broker_dir / "processed"
    if settings.redis_url or not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
