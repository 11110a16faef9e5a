"""qponder.client on its own: retries (503 with Retry-After, connection errors) and no retries
(4xx), batching with order kept and within the server's limits, images sent losslessly,
tensors turned into images, and reward_fn's fallback. The client against the real server is
in test_serve.py."""

from __future__ import annotations

import base64
import io
import json
import math
import threading

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from qponder.client import (
    ScoreClient,
    ServedScore,
    ServeError,
    reward_fn,
    split_requests,
    to_pil_images,
)

# What the real server publishes in /v1/models by default (qponder serve's limits).
LIMITS = {"max_images": 64, "max_body_bytes": 32 * 1024 * 1024}


def _models(limits: dict = LIMITS) -> httpx.Response:
    """The server's /v1/models answer with ``limits``."""
    card = {"id": "m", "object": "model", "backend": "hf", **limits, "ready": True}
    return httpx.Response(200, json={"object": "list", "data": [card]})


def with_models(handler, limits: dict = LIMITS):
    """``handler`` for /v1/score, behind a /v1/models that publishes ``limits``."""
    return lambda request: _models(limits) if request.url.path == "/v1/models" else handler(request)


class FakeServer:
    """An httpx transport that answers like the server: ``/v1/models`` with ``limits``,
    ``/v1/score`` with 413 over them, else with the score ``1 + mean / 64`` of each image;
    ``script`` gives the first answers of /v1/score (a status or an exception)."""

    def __init__(self, script=(), **limits):
        self.script = list(script)
        self.limits = {**LIMITS, **limits}
        self.requests: list[dict] = []
        self.sizes: list[int] = []  # of the bodies answered
        self.models_reads = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            with self.lock:
                self.models_reads += 1
            return _models(self.limits)
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        if step is not None:
            return httpx.Response(
                step, json={"detail": f"scripted {step}"}, headers={"Retry-After": "0"}
            )
        if len(request.content) > self.limits["max_body_bytes"]:
            return httpx.Response(413, json={"detail": "request body over the limit"})
        body = json.loads(request.content)
        if len(body["images"]) > self.limits["max_images"]:
            return httpx.Response(413, json={"detail": "too many images"})
        with self.lock:
            self.requests.append(body)
            self.sizes.append(len(request.content))
        rows = []
        for item in body["images"]:
            data = base64.b64decode(item["data"])
            try:
                score = (
                    1 + float(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).mean()) / 64
                )
                error = None
            except Exception:
                score, error = None, "bad_image:not_an_image"
            rows.append(
                {"id": item["id"], "score": score, "expected_score": score, "score_std": None,
                 "reasoning": "r", "parse": {"ok": score is not None, "reason": None},
                 "error": error}
            )  # fmt: skip
        return httpx.Response(200, json={"model": "m", "samples": 1, "results": rows})


def _client(server, **kw) -> ScoreClient:
    return ScoreClient("http://test", transport=httpx.MockTransport(server), backoff=0.001, **kw)


def _grey(level: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (level, level, level))


def test_batches_keep_the_order_and_the_ids():
    server = FakeServer()
    with _client(server, batch_size=3, concurrency=4) as c:
        results = c.score([_grey(10 * k) for k in range(8)])
    assert sorted(len(r["images"]) for r in server.requests) == [2, 3, 3]
    assert [r.id for r in results] == [str(k) for k in range(8)]
    assert [r.score for r in results] == pytest.approx([1 + 10 * k / 64 for k in range(8)])


def _noise_png(side: int, seed: int) -> bytes:
    """A PNG of noise (PNG cannot shrink it: about ``3 * side**2`` bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_requests_keep_within_the_servers_limits_and_a_too_large_image_gets_its_row():
    # photos that fit one by one but not together, and one that fits in no request
    limit = 40_000
    server = FakeServer(max_images=3, max_body_bytes=limit)
    files = [_noise_png(side, seed) for seed, side in enumerate([60, 60, 60, 130, 60, 10, 10, 10])]
    assert sum(len(f) for f in files) > limit and len(files[3]) * 4 / 3 > limit
    with _client(server, batch_size=16, concurrency=2) as c:
        results = c.score(files, samples=2)
        assert [r.id for r in results] == [str(k) for k in range(8)]
        big = results[3]
        assert big.score is None and not big.parse_ok
        assert big.error.startswith("too_large:") and f"limit of {limit} bytes" in big.error
        want = [1 + np.asarray(Image.open(io.BytesIO(f))).mean() / 64 for f in files]
        del want[3]
        assert [r.score for r in results if r.id != "3"] == pytest.approx(want)
        # a 60-pixel image is about 14.4 kB as base64: a third one is over the limit, and
        # 2, 4 and 5 fill max_images
        sent = sorted([i["id"] for i in body["images"]] for body in server.requests)
        assert sent == [["0", "1"], ["2", "4", "5"], ["6", "7"]]
        assert max(server.sizes) <= limit and {b["samples"] for b in server.requests} == {2}
        c.score(files[:1])
    assert server.models_reads == 1  # the limits are read once per client


@pytest.mark.parametrize(
    ("sizes", "max_count", "max_bytes", "want"),
    [
        ([45, 45], 8, 100, ([[0], [1]], [])),  # 10 + 45 + 2 + 45 = 102: one over
        ([44, 44], 8, 100, ([[0, 1]], [])),  # exactly the limit fits
        ([1] * 5, 2, 100, ([[0, 1], [2, 3], [4]], [])),
        ([91, 90, 91], 8, 100, ([[1]], [0, 2])),
        ([], 8, 100, ([], [])),
    ],
)
def test_split_requests_packs_in_order_within_count_and_bytes(sizes, max_count, max_bytes, want):
    assert split_requests(sizes, max_count=max_count, max_bytes=max_bytes, envelope=10) == want


def test_a_server_that_does_not_say_its_limits_is_an_error():
    def no_limits(request):
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})

    with (
        ScoreClient("http://t", transport=httpx.MockTransport(no_limits)) as c,
        pytest.raises(ServeError, match="max_body_bytes"),
    ):
        c.score([_grey(0)])


def test_ids_with_quotes_and_accents_travel_as_they_are():
    server = FakeServer()
    names = ['say "cheese".png', "Åsa\\façade 東京.jpg"]
    with _client(server) as c:
        results = c.score([_grey(0), _grey(64)], ids=names)
    assert [r.id for r in results] == names
    assert [i["id"] for i in server.requests[0]["images"]] == names


def test_busy_and_dropped_connections_are_retried():
    server = FakeServer([503, httpx.ConnectError("refused"), 502, httpx.RemoteProtocolError("x")])
    with _client(server) as c:
        (r,) = c.score([_grey(64)], ids=["a"])
    assert r.id == "a" and r.score == pytest.approx(2.0) and r.parse_ok


def test_retries_end_with_an_error_naming_the_status():
    with _client(FakeServer([503] * 5), retries=2) as c, pytest.raises(ServeError) as exc:
        c.score([_grey(0)])
    assert exc.value.status == 503 and "scripted 503" in str(exc.value)
    refused = FakeServer([httpx.ConnectError("refused")] * 5)
    with _client(refused, retries=1) as c, pytest.raises(ServeError, match="ConnectError.*2 tries"):
        c.score([_grey(0)])


@pytest.mark.parametrize("status", [400, 401, 413, 422, 500])
def test_refusals_are_not_retried(status):
    server = FakeServer([status])
    with _client(server) as c, pytest.raises(ServeError) as exc:
        c.score([_grey(0)])
    assert exc.value.status == status and server.script == [] and server.requests == []


def test_a_server_that_answers_for_other_images_is_caught():
    def wrong(request):
        return httpx.Response(200, json={"results": [{"id": "someone-else", "score": 3}]})

    transport = httpx.MockTransport(with_models(wrong))
    with (
        ScoreClient("http://t", transport=transport) as c,
        pytest.raises(ServeError, match="other"),
    ):
        c.score([_grey(0)])


def test_images_travel_losslessly_and_files_as_they_are(tmp_path):
    server = FakeServer()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=70)
    with _client(server) as c:
        c.score([Image.fromarray(pixels), path.read_bytes(), path, str(path)])
    sent = [base64.b64decode(i["data"]) for i in server.requests[0]["images"]]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(sent[0]))), pixels)  # PNG
    assert sent[1] == sent[2] == sent[3] == path.read_bytes()  # the file, not re-encoded
    with _client(server) as c, pytest.raises(TypeError, match="cannot send"):
        c.score([object()])


def test_tensors_become_images():
    batch = torch.rand(2, 3, 5, 7)
    images = to_pil_images(batch)
    assert [im.size for im in images] == [(7, 5), (7, 5)]
    want = np.rint(batch[1].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(images[1]), want)
    as_uint8 = to_pil_images((batch * 255).to(torch.uint8))
    assert as_uint8[0].mode == "RGB"
    assert to_pil_images(batch.to(torch.bfloat16))[0].size == (7, 5)
    grey = to_pil_images(np.zeros((1, 1, 4, 4), np.float32))
    assert grey[0].mode == "RGB"
    assert len(to_pil_images([batch[0], batch[1]])) == 2  # a list of [3, H, W] tensors
    pil = [_grey(3)]
    assert to_pil_images(pil) == pil


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (torch.rand(2, 3, 4, 4) * 2 - 1, r"\[0, 1\]"),
        (torch.full((1, 3, 4, 4), float("nan")), "NaN"),
        (torch.rand(3, 4, 4), r"\[B, 3, H, W\]"),
        (torch.rand(1, 4, 4, 3), r"\[B, 3, H, W\]"),
        (torch.ones(1, 3, 4, 4, dtype=torch.int32), "pixel type"),
    ],
)
def test_tensors_that_are_not_images_in_0_1_are_refused(batch, match):
    with pytest.raises(ValueError, match=match):
        to_pil_images(batch)


def test_reward_fn_gives_one_float_per_image_and_the_fallback_for_failures():
    def answers(request):
        ids = [i["id"] for i in json.loads(request.content)["images"]]
        rows = [
            {"id": ids[0], "score": 4.0, "expected_score": 3.8, "parse": {"ok": True}},
            {"id": ids[1], "score": None, "expected_score": None, "error": "no_answer",
             "parse": {"ok": False, "reason": "no_answer"}},
        ]  # fmt: skip
        return httpx.Response(200, json={"results": rows})

    c = ScoreClient("http://t", transport=httpx.MockTransport(with_models(answers)))
    batch = torch.rand(2, 3, 4, 4)
    rewards = reward_fn(batch, c)
    assert rewards[0] == 4.0 and math.isnan(rewards[1])
    assert reward_fn(batch, c, field="expected_score", default=1.0) == [3.8, 1.0]
    with pytest.raises(ValueError, match="field"):
        reward_fn(batch, c, field="mos")


def test_score_result_reads_a_row():
    r = ServedScore.from_dict(
        {"id": 3, "score": None, "reasoning": None, "parse": {"ok": False, "reason": "no_answer"},
         "error": "no_answer"}
    )  # fmt: skip
    assert (r.id, r.parse_ok, r.parse_reason, r.reasoning) == ("3", False, "no_answer", "")
