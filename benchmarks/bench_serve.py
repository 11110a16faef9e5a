"""Serving throughput: images/s through ``qponder serve`` under 1, 8 and 32 concurrent
clients, against the same Scorer called directly in batches, in one run.

The server is the real one (``python -m qponder.cli serve`` as a subprocess on a free
loopback port, uvicorn, micro-batching, JSON + base64, image decoding); each client sends
one image per request and waits for the answer before sending the next. The direct
baseline is :class:`qponder.inference.Scorer` built from the same recipe values
(``batch_size`` = ``--max-batch``) in this process, on the same images already decoded,
timed in each round just before the server's turn while the server idles; the ratio is
taken within a round, and the median over rounds is reported (the VM's shared cores make
single figures drift). Both use the tiny offline Qwen2.5-VL (random weights unless
``--model``): every answer runs to ``--new-tokens`` tokens, so the work per image is the
same everywhere.

Printed per round: direct images/s; per client count, images/s, its ratio to direct, and
p50/p99 latency; then whether 32 clients reach 70 % of direct (median over rounds). The clients run on the same machine as
the server and share its cores.

Run: ``.venv/bin/python benchmarks/bench_serve.py`` (``--json FILE`` keeps the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

GOAL = 0.70


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _images(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


async def _load(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """Send every body once from ``clients`` concurrent keep-alive connections; returns
    (seconds, latencies, answers that were not 200 or not for the image sent).

    The clients speak HTTP/1.1 over plain asyncio streams: a general-purpose client such as
    httpx spends about 3 ms of CPU per request, which on a 2-core machine would be taken
    from the server under test."""
    host, port = url.removeprefix("http://").split(":")
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for k, b in enumerate(bodies):
        queue.put_nowait((k, b))
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not queue.empty():
                k, body = queue.get_nowait()
                head = (
                    f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                start = time.perf_counter()
                writer.write(head.encode() + body)
                await writer.drain()
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if status != 200 or json.loads(answer)["results"][0]["id"] != str(k):
                    errors += 1
        finally:
            writer.close()
            await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, latencies, errors


def _batch_counts(url: str) -> tuple[float, float]:
    """(images, model calls) so far, from the server's metrics."""
    found = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("qponder_batch_images_sum ", "qponder_batch_images_count ")):
            name, value = line.split()
            found[name] = float(value)
    return found["qponder_batch_images_sum"], found["qponder_batch_images_count"]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="checkpoint (default: build the tiny model)")
    p.add_argument("--images", type=int, default=256, help="requests per client count")
    p.add_argument("--size", type=int, default=112, help="image side in pixels")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=64, help="as bench_scoring.py")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--rounds", type=int, default=5, help="direct + every client count, N times")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = Path(args.model)
        else:
            from qponder.models.tiny import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        pngs = _images(args.images, args.size)
        direct_scorer = _DirectScorer(model, pngs, args)
        bodies = [
            json.dumps(
                {"images": [{"id": str(k), "data": base64.b64encode(png).decode()}]}
            ).encode()
            for k, png in enumerate(pngs)
        ]
        rounds = []
        with _Server(model, Path(tmp) / "server.log", args) as url:
            asyncio.run(_load(url, bodies[: args.max_batch], args.max_batch))  # warm-up
            for _ in range(args.rounds):
                # the server idles (no thread busy) while the Scorer is timed in this process
                direct = direct_scorer.images_per_s()
                rows = []
                for clients in levels:
                    before = _batch_counts(url)
                    seconds, latencies, errors = asyncio.run(_load(url, bodies, clients))
                    after = _batch_counts(url)
                    rate = len(bodies) / seconds
                    calls = after[1] - before[1]
                    rows.append(
                        {
                            "clients": clients,
                            "images_per_s": rate,
                            "ratio": rate / direct,
                            "p50_ms": 1000 * _percentile(latencies, 50),
                            "p99_ms": 1000 * _percentile(latencies, 99),
                            "errors": errors,
                            "mean_batch": (after[0] - before[0]) / calls if calls else 0.0,
                        }
                    )
                rounds.append({"direct": direct, "rows": rows})

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"{args.images} images of {args.size} px per measurement, {args.new_tokens} new tokens, "
        f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms, {args.rounds} rounds"
    )
    for k, rnd in enumerate(rounds, 1):
        print(
            f"\nround {k}: direct Scorer, batches of {args.max_batch}: {rnd['direct']:.1f} images/s"
        )
        print("| clients | images/s | ratio to direct | p50 ms | p99 ms | mean batch | non-200 |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rnd["rows"]:
            print(
                f"| {r['clients']} | {r['images_per_s']:.1f} | {r['ratio']:.0%} | "
                f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {r['errors']} |"
            )
    top = max(levels)
    ratios = [r["ratio"] for rnd in rounds for r in rnd["rows"] if r["clients"] == top]
    median = statistics.median(ratios)
    print(
        f"\n{top} clients / direct, per round: {', '.join(f'{x:.0%}' for x in ratios)}; "
        f"median {median:.0%}: goal ({GOAL:.0%}) {'met' if median >= GOAL else 'NOT met'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "args": vars(args)}, indent=2))
    return 0


class _DirectScorer:
    """The Scorer called directly, ``max_batch`` images per call, on decoded images."""

    def __init__(self, model: Path, pngs: list[bytes], args: argparse.Namespace) -> None:
        from qponder.config import EvalConfig
        from qponder.inference import Scorer

        cfg = EvalConfig(batch_size=args.max_batch, max_new_tokens=args.new_tokens)
        self.scorer = Scorer.from_config(str(model), cfg)
        self.images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
        self.scorer.score(self.images[: args.max_batch])  # warm-up

    def images_per_s(self) -> float:
        """One pass over the images (as each client count gets one pass)."""
        start = time.perf_counter()
        n = len(self.scorer.score(self.images))
        return n / (time.perf_counter() - start)


class _Server:
    """``qponder serve`` as a subprocess on a free loopback port, for a ``with`` block."""

    def __init__(self, model: Path, log: Path, args: argparse.Namespace) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.cmd = [sys.executable, "-m", "qponder.cli", "serve", "--model", str(model)]
        self.cmd += ["--port", str(port), "--max-batch", str(args.max_batch)]
        self.cmd += ["--max-wait-ms", str(args.max_wait_ms), "--max-queue", "100000"]
        self.cmd += ["--max-images", "1", "--no-access-log"]
        self.cmd += ["--set", f"eval.max_new_tokens={args.new_tokens}"]

    def __enter__(self) -> str:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                print(self.log.read_text(errors="replace"), file=sys.stderr)
                raise SystemExit("the server did not start")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            time.sleep(0.3)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
