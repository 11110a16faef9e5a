"""The server's settings: where it listens, how it batches, and what it refuses."""

from __future__ import annotations

import os
from dataclasses import dataclass

from qponder.data.images import DEFAULT_MAX_PIXELS
from qponder.errors import QponderError

# A request may ask for at most this many sampled answers per image.
MAX_SAMPLES = 32


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server.

    Attributes:
        model_name: The name ``/v1/models`` reports (the ``--model`` value).
        backend: ``hf``, ``vllm`` or ``openai``.
        host: Interface to listen on (loopback by default: this machine only).
        port: TCP port (0: any free port).
        max_batch: Most images per model call.
        max_wait_ms: Longest time the worker waits for more images once one is waiting.
        max_queue: Most images waiting for the worker; a request that would go past it is
            refused with 503 (a request always fits into an empty queue).
        samples: Sampled answers per image when a request does not say (1: greedy).
        max_images: Most images in one request (more: 413).
        max_body_bytes: Largest request body (more: 413).
        max_pixels: Largest image, width x height (more: an ``bad_image:too_many_pixels`` row).
        api_key: When set, every ``/v1/*`` and ``/metrics`` request needs
            ``Authorization: Bearer <api_key>`` (else 401).
    """

    model_name: str
    backend: str = "hf"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    samples: int = 1
    max_images: int = 64
    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    api_key: str | None = None

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 1, got {getattr(self, name)}"
            for name in ("max_batch", "max_queue", "max_images", "max_body_bytes")
            if getattr(self, name) < 1
        ]
        if not 1 <= self.samples <= MAX_SAMPLES:
            problems.append(f"samples must be in [1, {MAX_SAMPLES}], got {self.samples}")
        if self.max_wait_ms < 0:
            problems.append(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in [0, 65535], got {self.port}")
        if self.api_key is not None and not self.api_key:
            problems.append("api_key must not be empty")
        if problems:
            raise QponderError("; ".join(problems))


def read_api_key(env_name: str) -> str:
    """The bearer key held in the environment variable ``env_name``.

    Raises:
        QponderError: When the variable is unset or empty (a server meant to be protected
            never starts open).
    """
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise QponderError(
            f"--api-key-env {env_name}: the environment variable {env_name} is not set or empty"
        )
    return key
