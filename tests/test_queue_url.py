"""REDIS_URL forms reach a real Redis through kombu: TCP, and a Unix socket (which kombu
spells differently from redis-py)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from kombu import Connection

from shared.queue import broker_url
from shared.settings import Settings


def settings(redis_url: str, tmp_path) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path), "REDIS_URL": redis_url})


def test_urls_kombu_understands(tmp_path):
    assert broker_url(settings("", tmp_path)) == "filesystem://"
    assert broker_url(settings("redis://h:6379/2", tmp_path)) == "redis://h:6379/2"
    unix = settings("unix:///run/redis/redis.sock?db=3", tmp_path)
    assert broker_url(unix) == "redis+socket:///run/redis/redis.sock?virtual_host=3"


@pytest.fixture
def redis_socket(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "redis did not start"
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_message_round_trips_over_a_unix_socket(redis_socket, tmp_path):
    url = broker_url(settings(f"unix://{redis_socket}?db=1", tmp_path))
    with Connection(url) as conn:
        q = conn.SimpleQueue("td-test-socket")
        q.put({"job": 7})
        message = q.get(timeout=5)
        assert message.payload == {"job": 7}
        message.ack()
        q.close()
