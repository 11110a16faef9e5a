"""Shared parts of the serving tests: a real ``qponder serve`` subprocess on a free loopback
port, test images, and a tiny model taught to answer.

The random tiny model never closes an answer, so every one of its results is a parse
failure. :func:`answering_model` fine-tunes it for a few seconds on two kinds of image, so
that a dark image gets ``<answer>1.5</answer>`` and a bright one ``<answer>4.5</answer>``:
the served scores then exist, carry an expected score, and tell which image they belong to
(a mixed-up answer shows).
"""

from __future__ import annotations

import base64
import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from answer_tags import tagged
from PIL import Image

DARK_SCORE = 1.5
BRIGHT_SCORE = 4.5
_ANSWERS = {
    "dark": tagged(f"<think>The image is dark.</think>\n<answer>{DARK_SCORE}</answer>"),
    "bright": tagged(
        f"<think>The image is bright and clean.</think>\n<answer>{BRIGHT_SCORE}</answer>"
    ),
}


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image(kind: str, width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A noisy dark or bright RGB image."""
    rng = np.random.default_rng(seed)
    base = 30 if kind == "dark" else 220
    pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def png_bytes(img: Image.Image) -> bytes:
    """``img`` as a PNG file."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def padded_png(img: Image.Image, size: int) -> bytes:
    """``img`` as a PNG file of about ``size`` bytes (at least the plain PNG's): a text chunk
    fills it up, as a phone photo's metadata and detail do, while the pixels stay few (the
    tiny model scores it quickly)."""
    from PIL.PngImagePlugin import PngInfo

    plain = png_bytes(img)
    info = PngInfo()
    info.add_text("padding", "x" * max(0, size - len(plain) - 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG whose header claims ``width x height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def random_model(base: Path) -> Path:
    """The random tiny model (the session's ``tiny_model`` when ``base`` is the session's
    base folder)."""
    from tiny_models import random_tiny_model

    return random_tiny_model(base)


def answering_model(base: Path, max_steps: int = 200) -> Path:
    """The tiny model fine-tuned to answer 1.5 for dark and 4.5 for bright images (cached
    under ``base``; about ten seconds on two cores)."""
    path = base / "qponder-tiny-answering"
    if (path / "config.json").exists():
        return path
    import torch

    from qponder.config import ModelConfig
    from qponder.models import load_model
    from qponder.prompts import STUDENT_INSTRUCTION, student_messages

    model, processor = load_model(random_model(base), ModelConfig())
    prompt = processor.apply_chat_template(
        student_messages(STUDENT_INSTRUCTION), tokenize=False, add_generation_prompt=True
    )
    end = "<|im_end|>"
    sizes = [(56, 56), (112, 84), (160, 160), (40, 100)]
    examples = [
        (image(kind, w, h, seed=k), kind)
        for k, (w, h) in enumerate(sizes)
        for kind in ("dark", "bright")
    ]
    enc = processor(
        text=[prompt + _ANSWERS[kind] + end for _, kind in examples],
        images=[im for im, _ in examples],
        padding=True,
        return_tensors="pt",
    )
    labels = enc["input_ids"].clone()
    think = processor.tokenizer.convert_tokens_to_ids(tagged("<think>"))
    for row in range(labels.shape[0]):
        start = (enc["input_ids"][row] == think).nonzero()[0].item()
        labels[row, :start] = -100  # learn the answer only
    labels[enc["attention_mask"] == 0] = -100
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(max_steps):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.005:
            break
    model.eval()
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(path)
    return path


class ServerProcess:
    """``python -m qponder.cli serve`` as a subprocess on a free loopback port; its output
    goes to a log file (a pipe nobody reads would block it)."""

    def __init__(self, model: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "qponder.cli", "serve", "--model", str(model)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """What the server has printed so far."""
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for ``/health`` to answer 200; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 15 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(request, model: Path, log: Path, *args: str, **kwargs) -> ServerProcess:
    """Start a server, stop it when the requesting fixture's scope ends, wait until ready."""
    server = ServerProcess(model, log, *args, **kwargs)
    request.addfinalizer(server.stop)
    server.wait_ready()
    return server
