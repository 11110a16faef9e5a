"""The FastAPI app: health, model info, scoring (JSON and multipart), the web page and the
metrics, over one :class:`~qponder.serve.batcher.MicroBatcher` that owns the model.

The model is loaded in a background thread when the app starts: ``/health`` answers 503
until it is loaded (and says so if loading failed). Each scoring request is refused
before any work when it is too large (413), unauthenticated (401), malformed or names a
URL or a path instead of sending the image (422), or does not fit into the queue (503 with
``Retry-After``); otherwise its images are decoded (a bad image becomes an error row) and
scored together with those of concurrent requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from qponder.errors import BadImageError
from qponder.parsing import SCORE_MAX, SCORE_MIN
from qponder.serve.batcher import BatcherClosed, MicroBatcher, QueueFull
from qponder.serve.guards import BearerKey, BodyLimitMiddleware
from qponder.serve.metrics import RequestMetricsMiddleware, ServeMetrics
from qponder.serve.payload import PayloadError, decode_data, open_image
from qponder.serve.schemas import ScoreRequest, error_row, result_row
from qponder.serve.settings import MAX_SAMPLES, ServeSettings

logger = logging.getLogger(__name__)

# Bodies up to this size are decoded on the event loop (about a millisecond); larger ones in a
# worker thread, so that one big upload does not hold up the other requests.
_INLINE_BYTES = 256 * 1024

# The page may run only its own inline script and style, and show local images: no CDN.
_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def score_with(scorer: Any, images: list[Any], samples: int) -> list[Any]:
    """Score one batch with ``samples`` answers per image through ``scorer``'s backend
    (whatever the scorer's own ``samples`` is), in one generation call."""
    from qponder.inference.scorer import result_from_generations

    gens = scorer.backend.generate(images, n=samples, temperature=scorer.temperature)
    return [result_from_generations(g, sampled=samples > 1) for g in gens]


class _State:
    """What the app holds once started: the scorer and its worker, or why loading failed."""

    def __init__(self) -> None:
        self.scorer: Any = None
        self.batcher: MicroBatcher | None = None
        self.load_error: BaseException | None = None
        self.closing = False


def create_app(
    settings: ServeSettings,
    load_scorer: Callable[[], Any],
    *,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the scoring app.

    Args:
        settings: Limits, batching and the API key.
        load_scorer: Builds the :class:`qponder.inference.Scorer` (called once, in a
            background thread, when the app starts).
        on_load_error: Called with the exception when ``load_scorer`` fails (the server
            uses it to stop).

    Returns:
        A FastAPI app; ``app.state.metrics`` is its :class:`ServeMetrics`.
    """
    metrics = ServeMetrics()
    state = _State()
    auth = BearerKey(settings.api_key)
    page = resources.files("qponder.serve").joinpath("page.html").read_text(encoding="utf-8")

    def load() -> None:
        try:
            scorer = load_scorer()
            batcher = MicroBatcher(
                lambda images, samples: score_with(scorer, images, samples),
                max_batch=settings.max_batch,
                max_wait_ms=settings.max_wait_ms,
                max_queue=settings.max_queue,
                on_batch=metrics.observe_batch,
                on_queue=metrics.queue.set,
            ).start()
        except BaseException as exc:  # reported on /health and to the server
            state.load_error = exc
            logger.error("could not load the model: %s", exc)
            if on_load_error is not None:
                on_load_error(exc)
            return
        state.scorer, state.batcher = scorer, batcher
        metrics.model_loaded.set(1)
        logger.info("model loaded: %s (%s backend)", settings.model_name, settings.backend)
        if state.closing:
            batcher.stop()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="qponder-model-loader", daemon=True).start()
        yield
        state.closing = True
        metrics.model_loaded.set(0)
        if state.batcher is not None:
            await run_in_threadpool(state.batcher.stop)

    app = FastAPI(
        title="qponder",
        summary="Image quality scores with the reasoning behind them",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.serve = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    def ready() -> MicroBatcher:
        if state.batcher is None:
            what = "failed to load" if state.load_error else "is loading"
            raise HTTPException(503, f"the model {what}", headers={"Retry-After": "5"})
        return state.batcher

    async def answer(ids: list[str], items: list[Any], samples: int) -> JSONResponse:
        batcher = ready()
        if samples > 1 and state.scorer.temperature <= 0:
            raise HTTPException(422, "samples > 1 needs the server's eval.temperature > 0")
        good = [im for im in items if not isinstance(im, BadImageError)]
        try:
            results = iter(await asyncio.wrap_future(batcher.submit(good, samples)))
        except QueueFull as exc:
            raise HTTPException(
                503, "the server is busy", headers={"Retry-After": str(exc.retry_after)}
            ) from None
        except BatcherClosed:
            raise HTTPException(503, "the server is shutting down") from None
        except Exception as exc:
            logger.exception("scoring failed")
            raise HTTPException(500, f"scoring failed: {type(exc).__name__}: {exc}") from None
        rows = [
            error_row(i, f"bad_image:{im.reason}")
            if isinstance(im, BadImageError)
            else result_row(i, next(results))
            for i, im in zip(ids, items, strict=True)
        ]
        for row in rows:
            metrics.observe_result(row["error"])
        return JSONResponse(
            {"model": settings.model_name, "samples": samples, "results": rows},
            headers={"Cache-Control": "no-store"},
        )

    def too_many(n: int) -> HTTPException:
        return HTTPException(413, f"{n} images in one request; the limit is {settings.max_images}")

    def parse_json(body: bytes) -> tuple[list[str], list[Any], int]:
        try:
            req = ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from None
        if len(req.images) > settings.max_images:
            raise too_many(len(req.images))
        datas, problems = [], []
        for k, item in enumerate(req.images):
            try:
                datas.append(decode_data(item.data))
            except PayloadError as exc:
                loc = ("body", "images", k, "data")
                problems.append({"loc": loc, "msg": str(exc), "type": "value_error"})
        if problems:
            raise RequestValidationError(problems)
        ids = [item.id if item.id is not None else str(k) for k, item in enumerate(req.images)]
        images = [open_image(d, i, settings.max_pixels) for d, i in zip(datas, ids, strict=True)]
        return ids, images, req.samples or settings.samples

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 once the model is loaded and the worker runs; 503 before (or if it failed)."""
        if state.batcher is not None and not state.closing:
            body = {"status": "ok", "model": settings.model_name, "backend": settings.backend}
            return JSONResponse(body)
        if state.load_error is not None:
            return JSONResponse({"status": "failed", "error": str(state.load_error)}, 503)
        if state.closing:
            return JSONResponse({"status": "stopping"}, 503)
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "5"})

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models() -> dict[str, Any]:
        """The served model: name, backend, score scale and the server's limits."""
        return {
            "object": "list",
            "data": [
                {
                    "id": settings.model_name,
                    "object": "model",
                    "backend": settings.backend,
                    "score_scale": [SCORE_MIN, SCORE_MAX],
                    "samples": settings.samples,
                    "max_samples": MAX_SAMPLES,
                    "max_batch": settings.max_batch,
                    "max_images": settings.max_images,
                    "max_body_bytes": settings.max_body_bytes,
                    "ready": state.batcher is not None,
                }
            ],
        }

    @app.post("/v1/score", dependencies=[Depends(auth)])
    async def score(request: Request) -> JSONResponse:
        """Score base64 images: ``{"images": [{"id", "data"}], "samples"}``."""
        ready()
        body = await request.body()
        if len(body) <= _INLINE_BYTES:
            ids, images, samples = parse_json(body)
        else:
            ids, images, samples = await run_in_threadpool(parse_json, body)
        return await answer(ids, images, samples)

    @app.post("/v1/score/upload", dependencies=[Depends(auth)])
    async def score_upload(request: Request) -> JSONResponse:
        """Score uploaded files: multipart ``files`` (repeatable) and optional ``samples``."""
        ready()
        form = await request.form(max_files=10_000, max_fields=100)
        try:
            values = form.getlist("files")
            if any(not isinstance(v, UploadFile) for v in values):
                raise HTTPException(422, "files must be file parts (the server opens no paths)")
            if not values:
                raise HTTPException(422, "no images: send them as multipart fields named files")
            if len(values) > settings.max_images:
                raise too_many(len(values))
            samples = _form_samples(form.get("samples"), settings.samples)
            datas = [await f.read() for f in values]
            ids = [f.filename or str(k) for k, f in enumerate(values)]
        finally:
            await form.close()

        def decode() -> list[Any]:
            return [open_image(d, i, settings.max_pixels) for d, i in zip(datas, ids, strict=True)]

        small = sum(len(d) for d in datas) <= _INLINE_BYTES
        return await answer(ids, decode() if small else await run_in_threadpool(decode), samples)

    @app.get("/metrics", dependencies=[Depends(auth)])
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        """The web page: pick or drop images, see their scores and reasoning."""
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP})

    return app


def _form_samples(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        samples = int(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"samples: {value!r} is not a whole number") from None
    if not 1 <= samples <= MAX_SAMPLES:
        raise HTTPException(422, f"samples: must be in [1, {MAX_SAMPLES}], got {samples}")
    return samples
