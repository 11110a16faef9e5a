"""The server's Prometheus metrics, in a registry of its own (so that several apps can live
in one process, as in the tests), and the ASGI middleware that counts and times requests.

Exported (``GET /metrics``): ``qponder_requests_total{route,method,status}``,
``qponder_request_seconds{route}`` (latency histogram), ``qponder_batch_images`` (images per
model call), ``qponder_batch_seconds``, ``qponder_queue_images`` (images waiting),
``qponder_images_total{outcome}`` (scored, parse_failure, bad_image, request_failed, other),
``qponder_parse_failures_total{reason}``, ``qponder_image_errors_total{reason}`` and
``qponder_model_loaded``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from qponder.parsing import PARSE_FAILURES, failure_kind

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OUTCOMES = ("scored", "parse_failure", "bad_image", "request_failed", "other")


class ServeMetrics:
    """Counters, gauges and histograms of one server, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "qponder_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "qponder_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_images = Histogram(
            "qponder_batch_images", "Images per model call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "qponder_batch_seconds", "Seconds per model call", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue = Gauge("qponder_queue_images", "Images waiting for the model", registry=r)
        self.images = Counter(
            "qponder_images", "Images answered, by outcome", ["outcome"], registry=r
        )
        self.parse_failures = Counter(
            "qponder_parse_failures", "Answers without a valid score", ["reason"], registry=r
        )
        self.image_errors = Counter(
            "qponder_image_errors", "Uploaded images that could not be used", ["reason"], registry=r
        )
        self.model_loaded = Gauge(
            "qponder_model_loaded", "1 once the model is loaded and serving", registry=r
        )
        for outcome in OUTCOMES:
            self.images.labels(outcome)
        for reason in sorted(PARSE_FAILURES):
            self.parse_failures.labels(reason)

    def observe_batch(self, n_images: int, seconds: float) -> None:
        """Record one model call."""
        self.batch_images.observe(n_images)
        self.batch_seconds.observe(seconds)

    def observe_result(self, error: str | None) -> None:
        """Record the outcome of one image from its ``error`` field."""
        kind = failure_kind(error)
        if kind is None:
            self.images.labels("scored").inc()
        elif kind == "parse":
            self.images.labels("parse_failure").inc()
            self.parse_failures.labels(error).inc()
        elif kind == "bad_image":
            self.images.labels("bad_image").inc()
            self.image_errors.labels(error.partition(":")[2] or "unknown").inc()
        elif kind == "request":
            self.images.labels("request_failed").inc()
        else:
            self.images.labels("other").inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """ASGI middleware: counts every HTTP request by route template and status, and times it."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
