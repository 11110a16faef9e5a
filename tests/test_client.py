"""qponder.client on its own: retries (503 with Retry-After, connection errors) and no retries
(4xx), batching with order kept, images sent losslessly, tensors turned into images, and
reward_fn's fallback. The client against the real server is in test_serve.py."""

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

from qponder.client import ScoreClient, ServedScore, ServeError, reward_fn, to_pil_images


class FakeServer:
    """An httpx transport that answers /v1/score like the server: the score of an image is
    ``1 + mean / 64``; ``script`` gives the first answers (a status or an exception)."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        if step is not None:
            return httpx.Response(
                step, json={"detail": f"scripted {step}"}, headers={"Retry-After": "0"}
            )
        body = json.loads(request.content)
        with self.lock:
            self.requests.append(body)
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

    transport = httpx.MockTransport(wrong)
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

    c = ScoreClient("http://t", transport=httpx.MockTransport(answers))
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
