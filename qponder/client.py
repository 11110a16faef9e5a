"""A Python client of ``qponder serve``, and a reward function for RL trainers.

:class:`ScoreClient` sends images to a server and returns one :class:`ServedScore` per
image, in order: PIL images travel as PNG (lossless), encoded files (``bytes``, or a local
path that the *client* reads) as they are. Large lists are split into requests of at most
``batch_size`` images that also keep within the limits the server publishes in
``/v1/models`` (``max_images``, and ``max_body_bytes`` for the body, base64 and JSON
included, worked out before anything is sent); an image that alone is over the body limit
gets a ``too_large`` row instead of failing the others. Requests go ``concurrency`` at a
time; a busy server (503, honouring ``Retry-After``), a 502/504 and connection errors are
retried with backoff, a request that can never succeed (4xx) is not.

:func:`reward_fn` turns a batch of generated images, PIL images or a ``[B, 3, H, W]``
tensor in [0, 1] (or uint8), into a list of floats for a diffusion RL trainer (Flow-GRPO,
DDPO style). An image without a score gets ``default`` (NaN unless given), never a made-up
number.

Example:
    >>> from qponder.client import ScoreClient, reward_fn
    >>> client = ScoreClient("http://127.0.0.1:8000")  # doctest: +SKIP
    >>> client.score([Image.open("photo.png")])[0].score  # doctest: +SKIP
    3.42
    >>> reward_fn(images, client, field="expected_score")  # doctest: +SKIP
    [3.41, 2.07, ...]
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from qponder.errors import QponderError

# Statuses worth another try: busy (503), and a proxy in front that lost the server.
RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_BACKOFF_S = 30.0

# The error of an image that alone makes a request larger than the server takes.
TOO_LARGE = "too_large"
# The client writes each request body itself, so that its size is known before any base64
# is written: one item per image (``data`` is the file's base64, 4 bytes per 3), joined by
# the separator inside the envelope; every part but ``data`` is ASCII (``json.dumps``), so
# characters and bytes are the same count.
_ITEM = '{{"id": {id}, "data": "{data}"}}'
_SEPARATOR = ", "


class ServeError(QponderError):
    """A request the server refused or that kept failing; ``status`` is the HTTP status
    (None for a connection that never succeeded) and ``detail`` the server's reason."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ServedScore:
    """The served answer for one image (the wire form of
    :class:`qponder.inference.ScoreResult`, with the image's id and the parse outcome).

    Attributes:
        id: The image's id (sent or assigned: its position as a string).
        score: Score in [1, 5] (the mean over samples when ``samples > 1``), or None.
        expected_score: Probability-weighted score read at the answer, or None.
        score_std: Std of the sampled scores (``samples > 1``), else None.
        reasoning: The model's reasoning.
        parse_ok: Whether the answer held a valid score.
        parse_reason: The parse failure reason (``no_answer``, ...), or None.
        error: None when there is a score, else a parse failure reason,
            ``bad_image:<reason>`` or ``request_failed: ...``.
    """

    id: str
    score: float | None
    expected_score: float | None = None
    score_std: float | None = None
    reasoning: str = ""
    parse_ok: bool = False
    parse_reason: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ServedScore:
        """Read one row of the server's ``results``."""
        parse = row.get("parse") or {}
        return cls(
            id=str(row["id"]),
            score=row.get("score"),
            expected_score=row.get("expected_score"),
            score_std=row.get("score_std"),
            reasoning=row.get("reasoning") or "",
            parse_ok=bool(parse.get("ok", row.get("score") is not None)),
            parse_reason=parse.get("reason"),
            error=row.get("error"),
        )


def encode_image(image: Any) -> bytes:
    """The bytes of an image file for the server: a PIL image as PNG (lossless), ``bytes``
    as they are (an encoded file), a path read from the local disk."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if hasattr(image, "save") and hasattr(image, "mode"):
        if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "P"):
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    raise TypeError(
        f"cannot send a {type(image).__name__}: give PIL images, encoded bytes or file paths "
        "(tensors: see qponder.client.to_pil_images)"
    )


@dataclass(frozen=True)
class ServerLimits:
    """What one request to a server may hold, as it publishes in ``/v1/models``.

    Attributes:
        max_images: Most images in one request (``qponder serve --max-images``).
        max_body_bytes: Largest request body in bytes (``qponder serve --max-body-mb``).
    """

    max_images: int
    max_body_bytes: int


def _item_bytes(image_id: str, n_bytes: int) -> int:
    """The size in the body of an image of ``n_bytes`` bytes (its base64 and JSON)."""
    return len(_ITEM.format(id=json.dumps(image_id), data="")) + 4 * ((n_bytes + 2) // 3)


def _body(items: Sequence[str], samples: int | None) -> str:
    """A ``POST /v1/score`` body around ready-made items (see ``_ITEM``)."""
    extra = "" if samples is None else f', "samples": {int(samples)}'
    return '{"images": [' + _SEPARATOR.join(items) + "]" + extra + "}"


def split_requests(
    sizes: Sequence[int], *, max_count: int, max_bytes: int, envelope: int
) -> tuple[list[list[int]], list[int]]:
    """Group items, in order, into requests of at most ``max_count`` items whose bodies
    (``envelope`` plus the items, separated) are at most ``max_bytes``.

    Args:
        sizes: Each item's size in the body.
        max_count: Most items per request.
        max_bytes: Largest body.
        envelope: The size of a body without items.

    Returns:
        The requests (the indices of their items, in order), and the indices of the items
        that are over ``max_bytes`` in a request of their own (sent in none).

    Example:
        >>> split_requests([40, 40, 40, 200, 10], max_count=4, max_bytes=100, envelope=10)
        ([[0, 1], [2, 4]], [3])
    """
    requests: list[list[int]] = []
    alone: list[int] = []
    current: list[int] = []
    used = envelope
    for k, size in enumerate(sizes):
        if envelope + size > max_bytes:
            alone.append(k)
            continue
        grown = used + size + (len(_SEPARATOR) if current else 0)
        if current and (len(current) == max_count or grown > max_bytes):
            requests.append(current)
            current, grown = [], envelope + size
        current.append(k)
        used = grown
    if current:
        requests.append(current)
    return requests, alone


def _too_large(image_id: str, size: int, limit: int) -> ServedScore:
    """The row of an image whose request alone would be ``size`` bytes, over ``limit``."""
    return ServedScore(
        id=image_id,
        score=None,
        error=f"{TOO_LARGE}: {size} bytes as a request (base64 and JSON), over the server's "
        f"limit of {limit} bytes (qponder serve --max-body-mb)",
    )


def _sendable(image: Any) -> bytes | Path:
    """What travels for ``image``: the bytes of its file (a PIL image encoded as PNG now,
    so that its size is known), or a local path, read only when its request is sent (a
    long list of paths is never in memory all at once)."""
    if isinstance(image, (str, os.PathLike)):
        return Path(image)
    return encode_image(image)


def _file_size(item: bytes | Path) -> int:
    return item.stat().st_size if isinstance(item, Path) else len(item)


class ScoreClient:
    """Score images on a ``qponder serve`` server.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: Seconds per request (connect, read, write, pool).
        retries: Further tries of a request after a 502/503/504 or a connection error.
        backoff: First wait between tries in seconds (doubles each time, with jitter; a
            ``Retry-After`` from the server is used instead when it is given).
        batch_size: Most images per request (fewer where the server's ``max_images`` or
            ``max_body_bytes`` says so).
        concurrency: Requests in flight at once for one :meth:`score` call.
        transport: An ``httpx`` transport to use instead of the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        retries: int = 8,
        backoff: float = 0.5,
        batch_size: int = 16,
        concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if batch_size < 1 or concurrency < 1 or retries < 0:
            raise ValueError("batch_size and concurrency must be >= 1, retries >= 0")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max(concurrency, 4)),
        )
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._limits: ServerLimits | None = None
        self._limits_lock = threading.Lock()

    def __enter__(self) -> ScoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` body (``status`` is ``ok`` once the model is loaded)."""
        resp = self._http.get("/health")
        return resp.json()

    def wait_until_ready(self, timeout: float = 600.0, interval: float = 1.0) -> None:
        """Block until ``/health`` answers 200.

        Raises:
            ServeError: Not ready within ``timeout`` seconds, or the model failed to load.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                resp = self._http.get("/health")
                if resp.status_code == 200:
                    return
                last = resp.json()
                if last.get("status") == "failed":
                    raise ServeError(f"the server failed to load its model: {last.get('error')}")
            except httpx.TransportError as exc:
                last = exc
            time.sleep(interval)
        raise ServeError(f"{self.base_url} not ready after {timeout:.0f} s (last: {last})")

    def models(self) -> dict[str, Any]:
        """The server's ``/v1/models`` body: the served model and the server's limits."""
        return self._request("GET", "/v1/models")

    def limits(self) -> ServerLimits:
        """The server's limits per request, read from ``/v1/models`` once per client.

        Raises:
            ServeError: ``/v1/models`` was refused, kept failing, or lacks the limits.
        """
        with self._limits_lock:
            if self._limits is None:
                try:
                    (card,) = self.models()["data"]
                    self._limits = ServerLimits(
                        int(card["max_images"]), int(card["max_body_bytes"])
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise ServeError(
                        f"{self.base_url}/v1/models does not say the server's limits "
                        f"(max_images, max_body_bytes): {type(exc).__name__}: {exc}"
                    ) from None
            return self._limits

    def score(
        self,
        images: Sequence[Any],
        *,
        samples: int | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[ServedScore]:
        """Score images: one result per image, in order.

        The images are sent in requests within ``batch_size`` and the server's
        :meth:`limits`; an image that alone is over the body limit is not sent and gets a
        result whose ``error`` starts with ``too_large:`` and says the limit.

        Args:
            images: PIL images, encoded image files (``bytes``) or local paths.
            samples: Sampled answers per image (the server's default when None).
            ids: One id per image (default: the positions, ``"0"``, ``"1"``, ...).

        Returns:
            One :class:`ServedScore` per image, in the order given.

        Raises:
            ServeError: A request was refused (4xx) or kept failing after the retries.
        """
        if ids is not None and len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        if not len(images):
            return []
        names = [str(i) for i in ids] if ids is not None else [str(k) for k in range(len(images))]
        limits = self.limits()
        envelope = len(_body([], samples))
        results: dict[int, ServedScore] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            files = list(pool.map(_sendable, images))  # PIL images encoded side by side
            sizes = [_item_bytes(n, _file_size(f)) for n, f in zip(names, files, strict=True)]
            requests, alone = split_requests(
                sizes,
                max_count=min(self.batch_size, limits.max_images),
                max_bytes=limits.max_body_bytes,
                envelope=envelope,
            )
            for k in alone:
                results[k] = _too_large(names[k], envelope + sizes[k], limits.max_body_bytes)
            answers = pool.map(
                lambda request: self._send([(names[k], files[k]) for k in request], samples),
                requests,
            )
            for request, rows in zip(requests, answers, strict=True):
                results.update(zip(request, rows, strict=True))
        return [results[k] for k in range(len(images))]

    def _send(
        self, images: list[tuple[str, bytes | Path]], samples: int | None
    ) -> list[ServedScore]:
        """One ``POST /v1/score`` of ``(id, file)`` pairs: their rows, in order."""
        items = [
            _ITEM.format(id=json.dumps(i), data=base64.b64encode(encode_image(f)).decode("ascii"))
            for i, f in images
        ]
        body = _body(items, samples).encode("ascii")
        headers = {"Content-Type": "application/json"}
        rows = self._request("POST", "/v1/score", content=body, headers=headers)["results"]
        answered = [ServedScore.from_dict(r) for r in rows]
        if [r.id for r in answered] != [i for i, _ in images]:
            raise ServeError("the server answered for other images than it was sent")
        return answered

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One request, retried on 502/503/504 and connection errors."""
        for attempt in range(self.retries + 1):
            last_try = attempt == self.retries
            try:
                resp = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                    httpx.ReadError, httpx.WriteError) as exc:  # fmt: skip
                if last_try:
                    raise ServeError(
                        f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc} "
                        f"(after {attempt + 1} tries)"
                    ) from exc
                self._sleep(attempt, None)
                continue
            if resp.status_code == 200:
                return resp.json()
            if resp.status_code in RETRY_STATUSES and not last_try:
                self._sleep(attempt, resp.headers.get("retry-after"))
                continue
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text[:500]
            raise ServeError(
                f"{method} {self.base_url}{path}: HTTP {resp.status_code}: {detail}",
                status=resp.status_code,
                detail=detail,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        if wait is None:
            with self._rng_lock:
                jitter = self._rng.uniform(0.5, 1.0)
            wait = self.backoff * (2**attempt) * jitter
        time.sleep(min(max(wait, 0.0), _MAX_BACKOFF_S))


# --------------------------------------------------------------------------- RL rewards


def to_pil_images(batch: Any) -> list[Any]:
    """PIL images from a batch: a list of PIL images (returned as they are), or a tensor or
    array ``[B, C, H, W]`` (channels first; C = 1 or 3), float in [0, 1] or uint8.

    Floats become 8-bit by rounding ``x * 255`` (the only change an image undergoes; PNG
    keeps the rest exact). Values outside [0, 1] beyond rounding noise are an error, since a
    batch in [-1, 1] would otherwise be scored as a different image.
    """
    import numpy as np
    from PIL import Image

    if isinstance(batch, (list, tuple)):
        if all(hasattr(im, "save") and hasattr(im, "mode") for im in batch):
            return list(batch)
        return [im for item in batch for im in to_pil_images(_as_array(item)[None])]
    array = _as_array(batch)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected a batch [B, 3, H, W] (channels first), got {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("float images hold NaN or infinity")
        if array.size and (array.min() < -0.01 or array.max() > 1.01):
            raise ValueError(
                f"float images must be in [0, 1], got [{array.min():.3f}, {array.max():.3f}] "
                "(map [-1, 1] with (x + 1) / 2 first)"
            )
        pixels = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"pixel type {array.dtype} is not float or uint8")
    pixels = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    if pixels.shape[-1] == 1:
        return [Image.fromarray(p[..., 0], mode="L").convert("RGB") for p in pixels]
    return [Image.fromarray(p, mode="RGB") for p in pixels]


def _as_array(x: Any) -> Any:
    """A NumPy array of a tensor (any device, float types widened to float32) or array."""
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def reward_fn(
    images: Any,
    client: ScoreClient | str,
    *,
    field: Literal["score", "expected_score"] = "score",
    default: float = math.nan,
    samples: int | None = None,
) -> list[float]:
    """Quality rewards for a batch of generated images, one float per image, in order.

    Args:
        images: A list of PIL images, or a tensor/array ``[B, 3, H, W]`` in [0, 1] or uint8
            (see :func:`to_pil_images`).
        client: A :class:`ScoreClient`, or the server's URL (a client is made for this call).
        field: ``"score"`` (the parsed answer) or ``"expected_score"`` (the smoother
            probability-weighted read-out).
        default: The reward of an image that got no value (a parse failure, a bad image):
            NaN by default, so that a trainer notices; pass e.g. 1.0 to give it the scale's
            minimum.
        samples: Sampled answers per image (the server's default when None).

    Returns:
        ``len(images)`` floats.
    """
    if field not in ("score", "expected_score"):
        raise ValueError(f"field must be 'score' or 'expected_score', got {field!r}")
    pil = to_pil_images(images)
    own = isinstance(client, str)
    scorer = ScoreClient(client) if own else client
    try:
        results = scorer.score(pil, samples=samples)
    finally:
        if own:
            scorer.close()
    values = [getattr(r, field) for r in results]
    return [float(v) if v is not None else float(default) for v in values]
