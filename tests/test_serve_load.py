"""A bounded load test on loopback: 200 requests from 32 concurrent clients against the real
server and the tiny model. Every request gets an answer, 200 or 503; every 200 answers its
own images (ids in order, and the score of each image's kind: a dark image's answer given to
a bright one would show); the server's memory does not grow by 300 MB."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from serve_support import (
    BRIGHT_SCORE,
    DARK_SCORE,
    answering_model,
    b64,
    image,
    png_bytes,
    start_server,
)

pytestmark = pytest.mark.slow

REQUESTS = 200
CLIENTS = 32
RSS_GROWTH_LIMIT = 300 * 1024 * 1024


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    model = answering_model(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("serve-load") / "server.log"
    return start_server(
        request, model, log, "--max-batch", "16", "--max-wait-ms", "10", "--max-queue", "64",
        "--no-access-log", "--set", "eval.max_new_tokens=40",
    )  # fmt: skip


def test_200_requests_from_32_clients_are_all_answered_and_none_mixed_up(server):
    rng = random.Random(0)
    pool_images = {
        kind: [b64(png_bytes(image(kind, seed=100 * (kind == "dark") + s))) for s in range(6)]
        for kind in ("dark", "bright")
    }
    plans = []
    for k in range(REQUESTS):
        kinds = [rng.choice(["dark", "bright"]) for _ in range(rng.randint(1, 3))]
        images = [
            {"id": f"r{k}-{i}-{kind}", "data": rng.choice(pool_images[kind])}
            for i, kind in enumerate(kinds)
        ]
        plans.append({"images": images})

    local = threading.local()

    def send(body: dict) -> tuple[int, dict | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, timeout=120)
        r = local.client.post("/v1/score", json=body)
        return r.status_code, (r.json() if r.status_code == 200 else dict(r.headers))

    proc = psutil.Process(server.pid)
    status, _ = send(plans[0])  # warm-up: the first batch allocates the model's buffers
    assert status == 200
    rss_before = proc.memory_info().rss
    start = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as clients:
        answers = list(clients.map(send, plans))
    seconds = time.monotonic() - start
    rss_after = proc.memory_info().rss

    assert len(answers) == REQUESTS
    codes = [code for code, _ in answers]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    ok = 0
    for body, (code, out) in zip(plans, answers, strict=True):
        if code == 503:
            assert int(out["retry-after"]) >= 1
            continue
        ok += 1
        sent = [im["id"] for im in body["images"]]
        rows = out["results"]
        assert [r["id"] for r in rows] == sent
        for row in rows:
            want = DARK_SCORE if row["id"].endswith("dark") else BRIGHT_SCORE
            assert row["score"] == want, row
    assert ok >= REQUESTS // 4, f"only {ok} of {REQUESTS} answered 200"
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MB"
    assert httpx.get(f"{server.url}/health").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('qponder_requests_total{method="POST",route="/v1/score"')
    )
    assert served == REQUESTS + 1  # the server saw each request once, the warm-up included
    print(
        f"\n{REQUESTS} requests, {CLIENTS} clients: {ok} x 200, {REQUESTS - ok} x 503 in "
        f"{seconds:.1f} s; RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MB"
    )
