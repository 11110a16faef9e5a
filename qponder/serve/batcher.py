"""Micro-batching: one worker thread owns the model and scores the images of concurrent
requests together.

Requests hand their images to :meth:`MicroBatcher.submit` and get a future. The worker
takes up to ``max_batch`` waiting images (from one or several requests), waiting at most
``max_wait_ms`` for more once the first is there, scores them in one call per ``samples``
value, and resolves each request's future when all of its images are done. The queue is
bounded: a request that does not fit is refused at once (:class:`QueueFull`), never queued
without limit.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ScoreFn = Callable[[list[Any], int], list[Any]]


class QueueFull(Exception):
    """The queue cannot take the request now; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class BatcherClosed(Exception):
    """The worker has stopped (the server is shutting down)."""


@dataclass(eq=False)
class _Job:
    """One request: its images, their results as they come, and the caller's future."""

    images: list[Any]
    samples: int
    future: Future = field(default_factory=Future)
    results: list[Any] = field(default_factory=list)
    remaining: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.images)
        self.remaining = len(self.images)


class MicroBatcher:
    """One worker thread that scores the waiting images of all requests in batches.

    Args:
        score: ``score(images, samples) -> results``, one result per image, in order; called
            only from the worker thread (so a model needs no locking).
        max_batch: Most images per ``score`` call.
        max_wait_ms: Longest wait for more images once one is waiting.
        max_queue: Most images waiting; a request that would go past it gets
            :class:`QueueFull` (a request always fits into an empty queue).
        on_batch: Called after each ``score`` call with ``(n_images, seconds)``.
        on_queue: Called with the number of waiting images whenever it changes.
    """

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self._score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._on_batch = on_batch or (lambda n, s: None)
        self._on_queue = on_queue or (lambda n: None)
        self._waiting: deque[tuple[_Job, int]] = deque()  # (request, image index)
        self._cond = threading.Condition()
        self._closed = False
        self._seconds_per_batch = 0.0  # moving average, for Retry-After
        self._thread = threading.Thread(target=self._run, name="qponder-model-worker", daemon=True)

    @property
    def queued(self) -> int:
        """Images waiting for the worker (not counting the batch being scored)."""
        return len(self._waiting)

    def start(self) -> MicroBatcher:
        """Start the worker thread."""
        self._thread.start()
        return self

    def submit(self, images: Sequence[Any], samples: int = 1) -> Future:
        """Queue ``images`` for scoring with ``samples`` answers each.

        Returns:
            A future of the results, one per image, in order.

        Raises:
            QueueFull: The waiting images plus these would exceed ``max_queue``.
            BatcherClosed: The worker has stopped.
        """
        job = _Job(list(images), samples)
        if not job.images:
            job.future.set_result([])
            return job.future
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._waiting and len(self._waiting) + len(job.images) > self.max_queue:
                raise QueueFull(self.retry_after())
            self._waiting.extend((job, i) for i in range(len(job.images)))
            self._on_queue(len(self._waiting))
            self._cond.notify()
        return job.future

    def retry_after(self) -> int:
        """Whole seconds until the waiting images are likely scored (at least 1)."""
        batches = len(self._waiting) / self.max_batch + 1
        return max(1, min(60, math.ceil(batches * self._seconds_per_batch)))

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop taking requests, let the worker finish its batch, and fail what still waits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            left = list(self._waiting)
            self._waiting.clear()
        for job in {job for job, _ in left}:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the server is shutting down"))

    # ------------------------------------------------------------------ the worker

    def _take(self) -> list[tuple[_Job, int]] | None:
        """The next batch, once there is one; None when stopped."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while len(self._waiting) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(n)]
            self._on_queue(len(self._waiting))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            by_samples: dict[int, list[tuple[_Job, int]]] = {}
            for entry in batch:
                by_samples.setdefault(entry[0].samples, []).append(entry)
            for samples, entries in by_samples.items():
                self._score_group(entries, samples)

    def _score_group(self, entries: list[tuple[_Job, int]], samples: int) -> None:
        live = [(job, i) for job, i in entries if not job.future.done()]
        if not live:
            return
        start = time.perf_counter()
        try:
            results = self._score([job.images[i] for job, i in live], samples)
            if len(results) != len(live):
                raise RuntimeError(f"{len(results)} results for {len(live)} images")
        except Exception as exc:  # the model failed: every request in the batch is told
            logger.exception("scoring a batch of %d images failed", len(live))
            for job in {job for job, _ in live}:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            seconds = time.perf_counter() - start
            avg = self._seconds_per_batch
            self._seconds_per_batch = seconds if not avg else 0.8 * avg + 0.2 * seconds
            self._on_batch(len(live), seconds)
        for (job, i), result in zip(live, results, strict=True):
            job.results[i] = result
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job.results)
