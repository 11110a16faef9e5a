"""The FastAPI app: the routes of :mod:`qponder.serve.routes` over one
:class:`~qponder.serve.batcher.MicroBatcher` that owns the model.

The model is loaded in a background thread when the app starts: ``/health`` answers 503
until it is loaded (and says so if loading failed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from qponder.config import Recipe
from qponder.serve.batcher import MicroBatcher
from qponder.serve.guards import BodyLimitMiddleware
from qponder.serve.metrics import RequestMetricsMiddleware
from qponder.serve.routes import router
from qponder.serve.settings import check_serve_recipe
from qponder.serve.state import ServeState

logger = logging.getLogger(__name__)


def create_app(
    recipe: Recipe,
    model: str,
    load_scorer: Callable[[], Any],
    *,
    api_key: str | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the scoring app.

    Args:
        recipe: The validated recipe: ``serve`` (queue, limits) and ``eval`` (backend,
            ``batch_size`` as the most images per model call, default ``samples``).
        model: The served model's name, as ``/health`` and ``/v1/models`` report it.
        load_scorer: Builds the :class:`qponder.inference.Scorer` (called once, in a
            background thread, when the app starts).
        api_key: When set, every ``/v1/*`` and ``/metrics`` request needs
            ``Authorization: Bearer <api_key>`` (else 401).
        on_load_error: Called with the exception when ``load_scorer`` fails (the server
            uses it to stop).

    Returns:
        A FastAPI app; ``app.state.metrics`` is its
        :class:`~qponder.serve.metrics.ServeMetrics`, ``app.state.serve`` its
        :class:`~qponder.serve.state.ServeState`.

    Raises:
        ConfigError: A recipe value the server cannot take (``eval.samples`` over 32).
    """
    check_serve_recipe(recipe)
    state = ServeState(recipe, model, api_key)
    app = FastAPI(
        title="qponder",
        summary="Image quality scores with the reasoning behind them",
        lifespan=_lifespan(state, load_scorer, on_load_error),
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN
        redoc_url=None,
    )
    app.state.metrics = state.metrics
    app.state.serve = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    app.include_router(router)
    return app


def _lifespan(
    state: ServeState,
    load_scorer: Callable[[], Any],
    on_load_error: Callable[[BaseException], None] | None,
) -> Callable[[FastAPI], Any]:
    """Load the model in the background when the app starts; stop the worker at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(
            target=_load, args=(state, load_scorer, on_load_error), name="qponder-model-loader",
            daemon=True,
        ).start()  # fmt: skip
        yield
        state.closing = True
        state.metrics.model_loaded.set(0)
        if state.batcher is not None:
            await run_in_threadpool(state.batcher.stop)

    return lifespan


def _load(
    state: ServeState,
    load_scorer: Callable[[], Any],
    on_load_error: Callable[[BaseException], None] | None,
) -> None:
    """Build the scorer and start its worker; or record (and report) why that failed."""
    try:
        scorer = load_scorer()
        batcher = MicroBatcher(
            lambda images, samples: scorer.score_batch(images, samples=samples),
            max_batch=state.max_batch,
            max_wait_ms=state.serve.max_wait_ms,
            max_queue=state.serve.max_queue,
            on_batch=state.metrics.observe_batch,
            on_queue=state.metrics.queue.set,
        ).start()
    except BaseException as exc:  # reported on /health and to the server
        state.load_error = exc
        logger.error("could not load the model: %s", exc)
        if on_load_error is not None:
            on_load_error(exc)
        return
    state.scorer, state.batcher = scorer, batcher
    state.metrics.model_loaded.set(1)
    logger.info("model loaded: %s (%s backend)", state.model, state.backend)
    if state.closing:
        batcher.stop()
