"""The server's routes: health, model info, scoring (JSON and multipart), the web page and
the metrics. Each reads its app's :class:`~qponder.serve.state.ServeState` from
``request.app.state.serve``, so one router serves any number of apps.

A scoring request is refused before any work when it is too large (413), unauthenticated
(401), malformed or names a URL or a path instead of sending the image (422), or does not
fit into the queue (503 with ``Retry-After``); otherwise its images are decoded (a bad image
becomes an error row) and scored together with those of concurrent requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from qponder.config import MAX_SAMPLES
from qponder.errors import BadImageError
from qponder.parsing import SCORE_MAX, SCORE_MIN
from qponder.serve.batcher import BatcherClosed, MicroBatcher, QueueFull
from qponder.serve.payload import PayloadError, decode_data, open_image
from qponder.serve.schemas import (
    Health,
    ModelCard,
    ModelList,
    ScoreRequest,
    ScoreResponse,
    ScoreRow,
    error_row,
    result_row,
)
from qponder.serve.state import ServeState

logger = logging.getLogger(__name__)

# Bodies up to this size are decoded on the event loop (about a millisecond); larger ones in a
# worker thread, so that one big upload does not hold up the other requests.
_INLINE_BYTES = 256 * 1024

# The page may run only its own inline script and style, and show local images: no CDN.
_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


@functools.cache
def _page() -> str:
    return resources.files("qponder.serve").joinpath("page.html").read_text(encoding="utf-8")


def _state(request: Request) -> ServeState:
    return request.app.state.serve


async def require_key(request: Request) -> None:
    """401 unless the request carries the app's bearer key (when it has one)."""
    await _state(request).auth(request)


router = APIRouter()
_KEYED = [Depends(require_key)]


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """``model`` as JSON, rendered as the server always rendered its answers (Starlette's
    ``JSONResponse`` of plain data: the same keys, values and bytes)."""
    return JSONResponse(model.model_dump(exclude_none=isinstance(model, Health)), status, headers)


@router.get("/health", response_model=Health)
async def health(request: Request) -> JSONResponse:
    """200 once the model is loaded and the worker runs; 503 before (or if it failed)."""
    state = _state(request)
    if state.batcher is not None and not state.closing:
        return _json(Health(status="ok", model=state.model, backend=state.backend))
    if state.load_error is not None:
        return _json(Health(status="failed", error=str(state.load_error)), 503)
    if state.closing:
        return _json(Health(status="stopping"), 503)
    return _json(Health(status="loading"), 503, {"Retry-After": "5"})


@router.get("/v1/models", dependencies=_KEYED, response_model=ModelList)
async def models(request: Request) -> JSONResponse:
    """The served model: name, backend, score scale and the server's limits."""
    state = _state(request)
    card = ModelCard(
        id=state.model,
        backend=state.backend,
        score_scale=[SCORE_MIN, SCORE_MAX],
        samples=state.samples,
        max_samples=MAX_SAMPLES,
        max_batch=state.max_batch,
        max_images=state.serve.max_images,
        max_body_bytes=state.max_body_bytes,
        ready=state.batcher is not None,
    )
    return _json(ModelList(data=[card]))


@router.post("/v1/score", dependencies=_KEYED, response_model=ScoreResponse)
async def score(request: Request) -> JSONResponse:
    """Score base64 images: ``{"images": [{"id", "data"}], "samples"}``."""
    state = _state(request)
    ready(state)
    body = await request.body()
    if len(body) <= _INLINE_BYTES:
        ids, images, samples = parse_json(state, body)
    else:
        ids, images, samples = await run_in_threadpool(parse_json, state, body)
    return await answer(state, ids, images, samples)


@router.post("/v1/score/upload", dependencies=_KEYED, response_model=ScoreResponse)
async def score_upload(request: Request) -> JSONResponse:
    """Score uploaded files: multipart ``files`` (repeatable) and optional ``samples``."""
    state = _state(request)
    ready(state)
    ids, datas, samples = await read_upload(state, request)

    def decode() -> list[Any]:
        return [open_image(d, i, state.max_pixels) for d, i in zip(datas, ids, strict=True)]

    small = sum(len(d) for d in datas) <= _INLINE_BYTES
    return await answer(state, ids, decode() if small else await run_in_threadpool(decode), samples)


@router.get("/metrics", dependencies=_KEYED)
async def prometheus(request: Request) -> Response:
    """Prometheus text exposition."""
    content, media_type = _state(request).metrics.render()
    return Response(content, media_type=media_type)


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    """The web page: pick or drop images, see their scores and reasoning."""
    return HTMLResponse(_page(), headers={"Content-Security-Policy": _PAGE_CSP})


# --------------------------------------------------------------------------- scoring


def ready(state: ServeState) -> MicroBatcher:
    """The worker, or 503 while the model loads (or after it failed to)."""
    if state.batcher is None:
        what = "failed to load" if state.load_error else "is loading"
        raise HTTPException(503, f"the model {what}", headers={"Retry-After": "5"})
    return state.batcher


async def answer(state: ServeState, ids: list[str], items: list[Any], samples: int) -> JSONResponse:
    """Score the decoded images of one request (``BadImageError`` items become error rows)
    and answer with one row per image, in order."""
    batcher = ready(state)
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
    rows: list[ScoreRow] = [
        error_row(i, f"bad_image:{im.reason}")
        if isinstance(im, BadImageError)
        else result_row(i, next(results))
        for i, im in zip(ids, items, strict=True)
    ]
    for row in rows:
        state.metrics.observe_result(row.error)
    body = ScoreResponse(model=state.model, samples=samples, results=rows)
    return _json(body, headers={"Cache-Control": "no-store"})


def _too_many(n: int, limit: int) -> HTTPException:
    return HTTPException(413, f"{n} images in one request; the limit is {limit}")


def parse_json(state: ServeState, body: bytes) -> tuple[list[str], list[Any], int]:
    """The ids, decoded images and samples of a ``POST /v1/score`` body (422 or 413 if it
    cannot be used)."""
    try:
        req = ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    if len(req.images) > state.serve.max_images:
        raise _too_many(len(req.images), state.serve.max_images)
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
    images = [open_image(d, i, state.max_pixels) for d, i in zip(datas, ids, strict=True)]
    return ids, images, req.samples or state.samples


async def read_upload(state: ServeState, request: Request) -> tuple[list[str], list[bytes], int]:
    """The ids (file names), file bytes and samples of a multipart upload (422 or 413 if it
    cannot be used)."""
    form = await request.form(max_files=10_000, max_fields=100)
    try:
        values = form.getlist("files")
        if any(not isinstance(v, UploadFile) for v in values):
            raise HTTPException(422, "files must be file parts (the server opens no paths)")
        if not values:
            raise HTTPException(422, "no images: send them as multipart fields named files")
        if len(values) > state.serve.max_images:
            raise _too_many(len(values), state.serve.max_images)
        samples = form_samples(form.get("samples"), state.samples)
        datas = [await f.read() for f in values]
        ids = [f.filename or str(k) for k, f in enumerate(values)]
    finally:
        await form.close()
    return ids, datas, samples


def form_samples(value: Any, default: int) -> int:
    """The ``samples`` field of a form: ``default`` when absent, else a whole number in
    [1, MAX_SAMPLES] (422 otherwise)."""
    if value is None or value == "":
        return default
    try:
        samples = int(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"samples: {value!r} is not a whole number") from None
    if not 1 <= samples <= MAX_SAMPLES:
        raise HTTPException(422, f"samples: must be in [1, {MAX_SAMPLES}], got {samples}")
    return samples
