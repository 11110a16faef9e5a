"""`qponder serve` end to end: the real server (uvicorn subprocess on a free loopback port,
the tiny model taught to answer) driven by httpx and by qponder's client: every endpoint,
every refusal (401, 413, 422, 503), bad-image rows, the metrics, and the CLI's errors."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serve_support import (
    BRIGHT_SCORE,
    DARK_SCORE,
    answering_model,
    b64,
    bomb_png,
    free_port,
    image,
    padded_png,
    png_bytes,
    random_model,
    start_server,
)

from qponder.cli import main
from qponder.client import ScoreClient, ServeError, reward_fn

KEY = "test-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_IMAGES = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return answering_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(request, model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    return start_server(
        request,
        model,
        log,
        "--max-batch", "4", "--max-wait-ms", "20", "--max-queue", "8",
        "--max-images", str(MAX_IMAGES), "--max-body-mb", "1",
        "--api-key-env", "QPONDER_TEST_KEY", "--set", "eval.max_new_tokens=40",
        env={"QPONDER_TEST_KEY": KEY},
    )  # fmt: skip


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


def _item(id_: str, data: bytes) -> dict:
    return {"id": id_, "data": b64(data)}


DARK = png_bytes(image("dark", seed=1))
BRIGHT = png_bytes(image("bright", seed=2))


def test_health_and_models(server, http):
    r = httpx.get(f"{server.url}/health")  # no key needed
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": str(server_model(server)), "backend": "hf"}
    (m,) = http.get("/v1/models").json()["data"]
    assert m["backend"] == "hf" and m["score_scale"] == [1.0, 5.0] and m["ready"] is True
    assert m["max_images"] == MAX_IMAGES and m["max_batch"] == 4 and m["samples"] == 1


def server_model(server) -> str:
    return server.proc.args[server.proc.args.index("--model") + 1]


def test_score_answers_every_image_in_order_with_bad_images_as_rows(http):
    body = {
        "images": [
            _item("dark", DARK),
            _item("text", b"this is not an image"),
            {"id": "bright", "data": "data:image/png;base64," + b64(BRIGHT)},
            _item("bomb", bomb_png()),
            _item("truncated", BRIGHT[: len(BRIGHT) // 2]),
            {"data": b64(DARK)},  # no id: its position
        ]
    }
    r = http.post("/v1/score", json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["samples"] == 1
    rows = {row["id"]: row for row in out["results"]}
    assert [row["id"] for row in out["results"]] == [
        "dark",
        "text",
        "bright",
        "bomb",
        "truncated",
        "5",
    ]
    for name, score in (("dark", DARK_SCORE), ("bright", BRIGHT_SCORE), ("5", DARK_SCORE)):
        row = rows[name]
        assert row["score"] == score and row["error"] is None
        assert row["parse"] == {"ok": True, "reason": None}
        assert 1 <= row["expected_score"] <= 5 and row["score_std"] is None
        assert row["reasoning"].startswith("The image is")
    assert rows["text"]["error"] == "bad_image:not_an_image"
    assert rows["bomb"]["error"] == "bad_image:too_many_pixels"
    assert rows["truncated"]["error"] == "bad_image:truncated"
    for name in ("text", "bomb", "truncated"):
        assert rows[name]["score"] is None and rows[name]["parse"] == {"ok": False, "reason": None}


def test_an_empty_file_gets_its_row_and_the_others_are_scored(http):
    # as in qponder score and the upload route: a 0-byte file is a bad image, not a bad request
    body = {
        "images": [
            _item("empty", b""),
            _item("dark", DARK),
            {"id": "blank-url", "data": "data:image/png;base64,"},
        ]
    }
    r = http.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    assert [(x["id"], x["score"], x["error"]) for x in r.json()["results"]] == [
        ("empty", None, "bad_image:empty"),
        ("dark", DARK_SCORE, None),
        ("blank-url", None, "bad_image:empty"),
    ]
    files = [("files", ("empty.jpg", b"", "image/jpeg")), ("files", ("d.png", DARK, "image/png"))]
    rows = http.post("/v1/score/upload", files=files).json()["results"]
    assert [(x["id"], x["error"]) for x in rows] == [
        ("empty.jpg", "bad_image:empty"),
        ("d.png", None),
    ]


def test_an_image_the_model_refuses_changes_no_other_request(http):
    strip = png_bytes(image("bright", width=4000, height=10))  # a banner: 400x wider than high

    def one(k: int) -> httpx.Response:
        images = [_item(str(k), DARK if k % 2 else BRIGHT)]
        if k == 3:
            images.insert(0, _item("strip", strip))
        return http.post("/v1/score", json={"images": images})

    with ThreadPoolExecutor(7) as pool:  # seven clients at once: they share batches
        answers = list(pool.map(one, range(7)))
    assert [a.status_code for a in answers] == [200] * 7
    for k, a in enumerate(answers):
        rows = {r["id"]: r for r in a.json()["results"]}
        assert rows[str(k)]["score"] == (DARK_SCORE if k % 2 else BRIGHT_SCORE)
        assert rows[str(k)]["error"] is None
    strip_row = answers[3].json()["results"][0]
    assert strip_row["id"] == "strip" and strip_row["error"] == "bad_image:aspect_ratio"


def test_upload_gives_the_same_answers_as_json(http):
    files = [
        ("files", ("night.png", DARK, "image/png")),
        ("files", ("day.png", BRIGHT, "image/png")),
        ("files", ("notes.txt", b"hello", "text/plain")),
    ]
    r = http.post("/v1/score/upload", files=files)
    assert r.status_code == 200
    rows = r.json()["results"]
    assert [(x["id"], x["score"], x["error"]) for x in rows] == [
        ("night.png", DARK_SCORE, None),
        ("day.png", BRIGHT_SCORE, None),
        ("notes.txt", None, "bad_image:not_an_image"),
    ]


def test_samples_per_request(http):
    r = http.post("/v1/score", json={"images": [_item("b", BRIGHT)], "samples": 3})
    out = r.json()
    assert r.status_code == 200 and out["samples"] == 3
    (row,) = out["results"]
    # the taught model answers the same under sampling; a std is reported for k > 1
    assert row["score"] == pytest.approx(BRIGHT_SCORE) and row["score_std"] is not None


def test_the_api_key_is_required_everywhere_but_health_and_the_page(server):
    url = server.url
    body = {"images": [_item("d", DARK)]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        assert httpx.post(f"{url}/v1/score", json=body, headers=headers).status_code == 401
        files = {"files": ("a.png", DARK, "image/png")}
        r = httpx.post(f"{url}/v1/score/upload", files=files, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 401
        assert httpx.get(f"{url}/metrics", headers=headers).status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/").status_code == 200


def test_too_large_bodies_and_too_many_images_are_413(http):
    big = {"images": [_item("big", b"\x00" * (1024 * 1024))]}  # 1.33 MB of base64
    r = http.post("/v1/score", json=big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    many = {"images": [_item(str(k), DARK) for k in range(MAX_IMAGES + 1)]}
    r = http.post("/v1/score", json=many)
    assert r.status_code == 413 and f"limit is {MAX_IMAGES}" in r.json()["detail"]
    files = [("files", (f"{k}.png", DARK, "image/png")) for k in range(MAX_IMAGES + 1)]
    assert http.post("/v1/score/upload", files=files).status_code == 413
    big_file = [("files", ("big.png", b"\x00" * (1100 * 1024), "image/png"))]
    assert http.post("/v1/score/upload", files=big_file).status_code == 413


@pytest.mark.parametrize(
    "data",
    ["https://example.com/cat.png", "http://127.0.0.1:1/x.png", "file:///etc/passwd",
     "/etc/passwd", "/etc/hosts1", "../../etc/passwd", "~/.ssh/id_rsa", "not base64!"],
)  # fmt: skip
def test_urls_and_paths_are_never_opened_but_refused_with_422(http, data):
    body = {"images": [_item("ok", DARK), {"id": "x", "data": data}]}
    r = http.post("/v1/score", json=body)
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "images", 1, "data"]


def test_malformed_requests_are_422(http):
    for body in (
        {},
        {"images": []},
        {"images": [{"id": "a"}]},
        {"images": [_item("a", DARK)], "samples": 0},
        {"images": [_item("a", DARK)], "url": "http://x"},
    ):
        assert http.post("/v1/score", json=body).status_code == 422, body
    r = http.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert http.post("/v1/score/upload", data={"files": "/etc/passwd"}).status_code == 422
    assert http.post("/v1/score/upload", files={"other": ("a.png", DARK)}).status_code == 422


def test_a_burst_past_the_queue_gets_503_with_retry_after_and_the_rest_is_answered(http):
    def one(k: int) -> httpx.Response:
        kind = "dark" if k % 2 else "bright"
        images = [_item(f"{k}-{i}", DARK if kind == "dark" else BRIGHT) for i in range(4)]
        return http.post("/v1/score", json={"images": images})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    for k, a in enumerate(answers):
        if a.status_code == 503:
            assert int(a.headers["retry-after"]) >= 1
            continue
        expected = DARK_SCORE if k % 2 else BRIGHT_SCORE
        assert [(r["id"], r["score"]) for r in a.json()["results"]] == [
            (f"{k}-{i}", expected) for i in range(4)
        ]


def test_the_client_scores_pil_images_bytes_and_paths_with_retries(server, tmp_path):
    path = tmp_path / "dark.png"
    path.write_bytes(DARK)
    images = [image("bright", seed=10), DARK, path] * 5  # 15 images in requests of 2
    with ScoreClient(server.url, api_key=KEY, batch_size=2, concurrency=8, backoff=0.05) as c:
        assert c.health()["status"] == "ok"
        assert c.models()["data"][0]["score_scale"] == [1.0, 5.0]
        # 8 concurrent requests of 2 against a queue of 8: some are refused and retried
        results = c.score(images)
        assert [r.id for r in results] == [str(k) for k in range(15)]
        assert [r.score for r in results] == [BRIGHT_SCORE, DARK_SCORE, DARK_SCORE] * 5
        assert all(r.parse_ok and r.error is None and r.expected_score for r in results)
        (bad,) = c.score([b"not an image"], ids=["x"])
        assert bad.id == "x" and bad.score is None and bad.error == "bad_image:not_an_image"
    with (
        ScoreClient(server.url, api_key="wrong", backoff=0.01) as c,
        pytest.raises(ServeError) as exc,
    ):
        c.score([DARK])
    assert exc.value.status == 401


def test_the_client_keeps_within_the_servers_limits_and_no_image_is_lost(server):
    # like phone photos: each fits the server's 1 MB as base64, two or three together do not,
    # one fits in no request; and more images than --max-images, with an empty file among them
    photos = [
        padded_png(image(kind, seed=30 + k), 300_000)
        for k, kind in enumerate(["dark", "bright"] * 3)
    ]
    huge = padded_png(image("bright", seed=40), 900_000)  # 1.2 MB as base64
    images = [*photos[:3], huge, *photos[3:], b"", DARK, BRIGHT]
    assert len(images) > MAX_IMAGES and sum(map(len, images)) > 1024 * 1024
    with ScoreClient(server.url, api_key=KEY, batch_size=16, backoff=0.05) as c:
        results = c.score(images)
    assert [r.id for r in results] == [str(k) for k in range(len(images))]
    d, b = DARK_SCORE, BRIGHT_SCORE
    assert [r.score for r in results] == [d, b, d, None, b, d, b, None, d, b]
    too_large = results[3].error
    assert too_large.startswith("too_large:") and f"limit of {1024 * 1024} bytes" in too_large
    assert results[7].error == "bad_image:empty"
    assert all(r.error is None for k, r in enumerate(results) if k not in (3, 7))


def test_reward_fn_turns_a_tensor_batch_into_floats(server):
    import torch

    batch = torch.stack(
        [torch.from_numpy(np.array(image(k, seed=s))).permute(2, 0, 1).float() / 255
         for s, k in enumerate(["dark", "bright", "bright"])]
    )  # fmt: skip
    with ScoreClient(server.url, api_key=KEY) as c:
        assert reward_fn(batch, c) == [DARK_SCORE, BRIGHT_SCORE, BRIGHT_SCORE]
        expected = reward_fn((batch * 255).to(torch.uint8), c, field="expected_score")
        assert expected[0] < 2 < 3.5 < expected[1]
        pil = [image("dark", seed=3)]
        assert reward_fn(pil, c, samples=2) == [DARK_SCORE]


def test_metrics_count_requests_batches_and_failures(http):
    http.post("/v1/score", json={"images": [_item("a", DARK), _item("b", b"??")]})
    text = http.get("/metrics").text
    assert (
        text.startswith("# HELP") and "text/plain" in http.get("/metrics").headers["content-type"]
    )
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['qponder_requests_total{method="POST",route="/v1/score",status="200"}'] >= 2
    assert samples['qponder_requests_total{method="POST",route="/v1/score",status="401"}'] >= 1
    assert samples['qponder_image_errors_total{reason="not_an_image"}'] >= 1
    assert samples['qponder_images_total{outcome="scored"}'] >= 1
    assert samples["qponder_batch_images_count"] >= 1
    assert 1 <= samples["qponder_batch_images_sum"] / samples["qponder_batch_images_count"] <= 4
    assert samples['qponder_request_seconds_count{route="/v1/score"}'] >= 2
    assert "qponder_queue_images" in samples
    assert 'qponder_parse_failures_total{reason="no_answer"}' in samples
    assert samples["qponder_model_loaded"] == 1


def test_the_page_is_served(server):
    r = httpx.get(f"{server.url}/")
    assert r.status_code == 200 and 'id="file-input"' in r.text


# --------------------------------------------------------------------------- CLI errors


def _served_recipe(monkeypatch, *argv: str):
    """The recipe and model ``qponder serve ARGV`` hands to ``qponder.serve.serve``."""
    import qponder.serve

    seen = []
    # "m" may be a hub name when the hub can be asked (it is not: serve is replaced)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(qponder.serve, "serve", lambda recipe, model: seen.append((recipe, model)))
    assert main(["serve", *argv]) == 0
    ((recipe, model),) = seen
    return recipe, model


def test_serve_binds_to_loopback_by_default(monkeypatch):
    recipe, model = _served_recipe(monkeypatch, "--model", "m")
    assert recipe.serve.host == "127.0.0.1" and recipe.serve.port == 8000 and model == "m"


def test_serve_flags_set_recipe_keys_and_an_absent_flag_keeps_the_recipes(monkeypatch, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "serve: {port: 9100, max_queue: 12, max_images: 3, access_log: false}\n"
        "eval: {batch_size: 5, samples: 2}\n"
    )
    recipe, _ = _served_recipe(monkeypatch, "--model", "m", "--config", str(config))
    assert (recipe.serve.port, recipe.serve.max_queue, recipe.serve.max_images) == (9100, 12, 3)
    assert recipe.serve.access_log is False
    assert (recipe.eval.batch_size, recipe.eval.samples) == (5, 2)
    assert recipe.serve.max_wait_ms == 10.0 and recipe.serve.max_body_mb == 32.0  # defaults
    recipe, _ = _served_recipe(
        monkeypatch, "--model", "m", "--config", str(config), "--set", "serve.max_queue=20",
        "--host", "0.0.0.0", "--port", "9200", "--max-wait-ms", "3", "--max-queue", "30",
        "--max-images", "4", "--max-body-mb", "2.5", "--api-key-env", "K", "--max-batch", "6",
        "--samples", "3", "--backend", "openai", "--base-url", "http://h:1/v1",
    )  # fmt: skip
    s, e = recipe.serve, recipe.eval
    assert (s.host, s.port, s.max_wait_ms, s.max_queue, s.max_images, s.max_body_mb) == (
        "0.0.0.0",
        9200,
        3.0,
        30,
        4,
        2.5,
    )
    assert s.api_key_env == "K" and s.access_log is False  # from the file: no flag given
    assert (e.batch_size, e.samples, e.backend, e.base_url) == (6, 3, "openai", "http://h:1/v1")
    recipe, _ = _served_recipe(monkeypatch, "--model", "m", "--no-access-log")
    assert recipe.serve.access_log is False


def _checkpoint_like(folder):
    """A folder that passes the checks made before the server listens (a config.json), but
    holds no model that loads."""
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_a_taken_port_is_one_line_exit_2(tmp_path, capsys):
    _checkpoint_like(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["serve", "--model", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("qponder serve: error: cannot listen on 127.0.0.1:")


def test_a_model_that_does_not_load_stops_the_server_with_exit_2(tmp_path, capsys):
    folder = _checkpoint_like(tmp_path / "nothing")  # fails in the background, once listening
    code = main(["serve", "--model", str(folder), "--port", str(free_port())])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("qponder serve: error:")
    assert "nothing: cannot load a model" in err[-1]


@pytest.mark.parametrize(
    ("model", "offline"),
    [("runs/nope", False), ("./nope", False), ("runs/nope", True), ("nope", True)],
)
def test_a_model_that_exists_nowhere_fails_before_the_server_listens(
    model, offline, tmp_path, monkeypatch, capsys
):
    # issue 25: runs/nope was tried on the hub for 25 s, after the server had started
    import qponder.serve.server

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # the hub could be asked, but the value is a path
        monkeypatch.delenv("HF_HUB_OFFLINE")
    started = []
    monkeypatch.setattr(qponder.serve.server, "run_server", lambda *a, **k: started.append(a))
    assert main(["serve", "--model", model, "--port", str(free_port())]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"qponder serve: error: {model}: no such model folder (")
    assert "hub id" in line and started == []


def test_a_missing_api_key_variable_is_refused(tmp_path, capsys, monkeypatch):
    _checkpoint_like(tmp_path)
    monkeypatch.delenv("QPONDER_NO_SUCH_KEY", raising=False)
    code = main(["serve", "--model", str(tmp_path), "--api-key-env", "QPONDER_NO_SUCH_KEY"])
    assert code == 2
    assert "QPONDER_NO_SUCH_KEY" in capsys.readouterr().err


def test_the_random_model_gives_parse_failures_not_scores(request, tmp_path_factory):
    model = random_model(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("serve-random") / "server.log"
    server = start_server(request, model, log, "--set", "eval.max_new_tokens=4")
    r = httpx.post(f"{server.url}/v1/score", json={"images": [_item("a", DARK)]}, timeout=60)
    (row,) = r.json()["results"]
    assert row["score"] is None and row["error"] == "no_answer"
    assert row["parse"] == {"ok": False, "reason": "no_answer"}
    server.stop()  # SIGTERM: a graceful shutdown, then a normal exit
    assert server.proc.returncode == 0
    assert "Application shutdown complete" in server.output()
