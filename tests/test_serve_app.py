"""The app in-process, with a recording backend behind the real Scorer: what reaches the
model (the exact pixels, one call per samples value), loading states, failures, and the
page. The real server with the real model is tested in test_serve.py."""

from __future__ import annotations

import base64
import io
import re
import threading

import numpy as np
import pytest
from answer_tags import tagged
from fastapi.testclient import TestClient
from PIL import Image

from qponder.config import Recipe, load_recipe
from qponder.inference import Generation, Scorer
from qponder.serve import create_app


class Backend:
    """Answers ``1 + mean brightness / 64``; records every call and image."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[int, int]] = []
        self.images: list[Image.Image] = []
        self.fail = fail

    def generate(self, images, n=1, temperature=1.0):
        if self.fail:
            raise RuntimeError("out of memory")
        self.calls.append((len(images), n))
        self.images += images
        out = []
        for im in images:
            s = 1 + float(np.asarray(im).mean()) / 64
            out.append(
                [Generation(tagged(f"<think>bright {s:.2f}</think><answer>{s + 0.1 * k:.2f}</answer>"), s)
                 for k in range(n)]
            )  # fmt: skip
        return out


def _recipe(**serve) -> Recipe:
    return load_recipe(flags={f"serve.{k}": v for k, v in {"max_wait_ms": 20, **serve}.items()})


def _app(load_scorer, recipe: Recipe | None = None, **kw):
    return create_app(recipe or _recipe(), "fake", load_scorer, **kw)


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def backend():
    return Backend()


@pytest.fixture
def client(backend):
    app = _app(lambda: Scorer("unused", backend_impl=backend))
    with TestClient(app) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient) -> None:
    for _ in range(200):
        if c.get("/health").status_code == 200:
            return
        threading.Event().wait(0.02)
    raise AssertionError("not ready")


def _body(*pixels: np.ndarray, samples: int | None = None) -> dict:
    images = [
        {"id": f"im{k}", "data": base64.b64encode(_png(p)).decode()} for k, p in enumerate(pixels)
    ]
    return {"images": images, **({"samples": samples} if samples else {})}


def test_the_model_sees_the_uploaded_pixels_exactly(client, backend):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # noise: any re-encoding shows
    r = client.post("/v1/score", json=_body(pixels))
    assert r.status_code == 200
    (seen,) = backend.images
    assert seen.mode == "RGB" and np.array_equal(np.asarray(seen), pixels)
    files = {"files": ("noise.png", _png(pixels), "image/png")}
    assert client.post("/v1/score/upload", files=files).status_code == 200
    assert np.array_equal(np.asarray(backend.images[1]), pixels)


def test_results_follow_the_request_order_with_error_rows_in_place(client):
    dark, bright = np.full((8, 8, 3), 0, np.uint8), np.full((8, 8, 3), 255, np.uint8)
    body = _body(dark, bright)
    body["images"].insert(1, {"id": "junk", "data": base64.b64encode(b"junk").decode()})
    rows = client.post("/v1/score", json=body).json()["results"]
    assert [r["id"] for r in rows] == ["im0", "junk", "im1"]
    assert rows[0]["score"] == pytest.approx(1.0) and rows[2]["score"] == pytest.approx(4.98)
    assert rows[1]["error"] == "bad_image:not_an_image" and rows[1]["parse"] == {
        "ok": False,
        "reason": None,
    }
    assert rows[0]["parse"] == {"ok": True, "reason": None} and rows[0]["score_std"] is None


def test_samples_per_request_override_the_default_and_give_a_std(client, backend):
    grey = np.full((8, 8, 3), 128, np.uint8)
    out = client.post("/v1/score", json=_body(grey, samples=3)).json()
    assert out["samples"] == 3 and backend.calls == [(1, 3)]
    (row,) = out["results"]
    assert row["score"] == pytest.approx(3.0 + 0.1) and row["score_std"] == pytest.approx(
        0.0816, abs=1e-3
    )
    files = [("files", ("a.png", _png(grey), "image/png"))]
    out = client.post("/v1/score/upload", files=files, data={"samples": "2"}).json()
    assert out["samples"] == 2 and backend.calls[-1] == (1, 2)
    assert client.post("/v1/score/upload", files=files, data={"samples": "x"}).status_code == 422
    assert client.post("/v1/score", json=_body(grey, samples=99)).status_code == 422


def test_health_is_503_until_the_model_is_loaded():
    release = threading.Event()
    backend = Backend()

    def slow_load():
        assert release.wait(10)
        return Scorer("unused", backend_impl=backend)

    app = _app(slow_load)
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = c.post("/v1/score", json=_body(np.zeros((4, 4, 3), np.uint8)))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert c.get("/v1/models").json()["data"][0]["ready"] is False
        release.set()
        _wait_ready(c)
        assert c.get("/health").json() == {"status": "ok", "model": "fake", "backend": "hf"}
        assert "qponder_model_loaded 1.0" in c.get("/metrics").text


def test_a_model_that_cannot_load_is_reported_on_health_and_to_the_server():
    failures = []

    def broken():
        raise FileNotFoundError("no checkpoint here")

    app = _app(broken, on_load_error=failures.append)
    with TestClient(app) as c:
        for _ in range(100):
            if failures:
                break
            threading.Event().wait(0.02)
        r = c.get("/health")
        assert r.status_code == 503 and r.json() == {
            "status": "failed",
            "error": "no checkpoint here",
        }
    assert isinstance(failures[0], FileNotFoundError)


def test_a_failing_model_gives_500_and_the_next_request_is_served():
    backend = Backend(fail=True)
    app = _app(lambda: Scorer("unused", backend_impl=backend))
    with TestClient(app) as c:
        _wait_ready(c)
        r = c.post("/v1/score", json=_body(np.zeros((4, 4, 3), np.uint8)))
        assert r.status_code == 500 and "out of memory" in r.json()["detail"]
        backend.fail = False
        assert c.post("/v1/score", json=_body(np.zeros((4, 4, 3), np.uint8))).status_code == 200


def test_sampling_needs_a_temperature(backend):
    app = _app(lambda: Scorer("unused", backend_impl=backend, temperature=0.0))
    with TestClient(app) as c:
        _wait_ready(c)
        r = c.post("/v1/score", json=_body(np.zeros((4, 4, 3), np.uint8), samples=2))
        assert r.status_code == 422 and "temperature" in r.json()["detail"]


def test_a_chunked_body_over_the_limit_is_413():
    # 1000 bytes exactly: 1000 / 2**20 is a binary fraction, exact in a float
    recipe = _recipe(max_body_mb=1000 / (1024 * 1024))
    app = _app(lambda: Scorer("u", backend_impl=Backend()), recipe)

    def chunks():
        for _ in range(10):
            yield b"x" * 300

    with TestClient(app) as c:
        _wait_ready(c)
        r = c.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post(
            "/v1/score/upload",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 413


def test_each_app_has_its_own_metrics():
    apps = [_app(lambda: Scorer("u", backend_impl=Backend())) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        _wait_ready(a)
        _wait_ready(b)
        a.post("/v1/score", json=_body(np.zeros((4, 4, 3), np.uint8)))
        text_a, text_b = a.get("/metrics").text, b.get("/metrics").text
    assert 'qponder_images_total{outcome="scored"} 1.0' in text_a
    assert 'qponder_images_total{outcome="scored"} 0.0' in text_b


def test_the_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html), "no external resources"
    assert not re.search(r"https?://", html)
    for element in ("file-input", "drop-zone", "results-body", "status"):
        assert f'id="{element}"' in html
    assert "/v1/score/upload" in html


def test_settings_are_checked_and_the_key_comes_from_the_environment(monkeypatch):
    from qponder.errors import QponderError
    from qponder.serve import read_api_key

    with pytest.raises(QponderError, match=r"eval\.batch_size: must be >= 1"):
        load_recipe(flags={"eval.batch_size": 0})
    with pytest.raises(QponderError, match=r"eval\.samples: qponder serve takes at most 32"):
        create_app(load_recipe(flags={"eval.samples": 40}), "m", lambda: None)
    with pytest.raises(QponderError, match=r"serve\.port"):
        load_recipe(flags={"serve.port": 70000})
    monkeypatch.setenv("QPONDER_K", "  secret ")
    assert read_api_key("QPONDER_K") == "secret"
    monkeypatch.setenv("QPONDER_K", "")
    with pytest.raises(QponderError, match="QPONDER_K"):
        read_api_key("QPONDER_K")


def test_the_json_answers_are_the_same_bytes_as_before(client):
    # the literals are what the server sent before its routes answered with pydantic models
    # (the page, the client and other users read these exact keys, in this order)
    assert client.get("/health").content == b'{"status":"ok","model":"fake","backend":"hf"}'
    assert client.get("/v1/models").content == (
        b'{"object":"list","data":[{"id":"fake","object":"model","backend":"hf",'
        b'"score_scale":[1.0,5.0],"samples":1,"max_samples":32,"max_batch":8,"max_images":64,'
        b'"max_body_bytes":33554432,"ready":true}]}'
    )
    body = _body(np.full((8, 8, 3), 128, np.uint8), samples=2)
    body["images"].append({"id": "junk", "data": base64.b64encode(b"junk").decode()})
    r = client.post("/v1/score", json=body)
    assert r.headers["cache-control"] == "no-store"
    assert r.content == (
        b'{"model":"fake","samples":2,"results":[{"id":"im0","score":3.05,'
        b'"expected_score":3.0,"score_std":0.050000000000000044,"reasoning":"bright 3.00",'
        b'"parse":{"ok":true,"reason":null},"error":null},{"id":"junk","score":null,'
        b'"expected_score":null,"score_std":null,"reasoning":"","parse":{"ok":false,'
        b'"reason":null},"error":"bad_image:not_an_image"}]}'
    )
