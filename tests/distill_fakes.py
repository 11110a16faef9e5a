"""Test doubles for the distillation tests: a real HTTP server on loopback that speaks the
chat-completions protocol with scripted faults, and a small image dataset.

Each test image is a solid colour whose red/green channels encode its index, so the
server knows which image a request is about and can play that image's script: one action
per attempt (``"ok"``, ``"500"``, ``"429"``, ``"stall"``, ...), the last one repeating.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from answer_tags import tagged
from PIL import Image

from qponder.data.samples import Sample

MODEL = "fake-vlm"
REASONING = (
    "Edges are soft and a mild blur is visible. Noise is low. Exposure is balanced. "
    "Contrast is natural. Colours look natural. No compression artefacts. Overall fair."
)


def image_index(img: Image.Image) -> int:
    r, g, _ = img.convert("RGB").getpixel((0, 0))
    return r + 256 * g


def make_samples(folder: Path, mos: list[float], size: tuple[int, int] = (48, 32)) -> list[Sample]:
    """Write one solid-colour PNG per MOS value and return the samples (ids img000, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, m in enumerate(mos):
        path = folder / f"img{i:03d}.png"
        Image.new("RGB", size, (i % 256, i // 256, 77)).save(path)
        samples.append(Sample(f"img{i:03d}", str(path), float(m), float(m), "generic", "train"))
    return samples


def write_labels(samples: list[Sample], path: Path) -> Path:
    """Write a generic ``image,mos,split`` CSV for ``samples`` (for ``generic:labels.csv``);
    every row is in the train split, so that no split file is drawn."""
    lines = ["image,mos,split"] + [f"{Path(s.image_path).name},{s.mos},train" for s in samples]
    path.write_text("\n".join(lines) + "\n")
    return path


class _Handler(BaseHTTPRequestHandler):
    server: FakeTeacherServer  # type: ignore[assignment]

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(
        self, status: int, body: bytes, headers: dict | None = None, ctype: str = "application/json"
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def do_GET(self) -> None:
        data = {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "t"}],
        }
        self._send(200, json.dumps(data).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        url = body["messages"][1]["content"][0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        index = image_index(img)
        srv = self.server
        with srv.lock:
            attempt = len(srv.requests[index])
            srv.requests[index].append(
                {
                    "t": time.monotonic(),
                    "n": body.get("n", 1),
                    "size": img.size,
                    "format": img.format,
                    "auth": self.headers.get("authorization"),
                    "prompt": body["messages"][1]["content"][1]["text"],
                    "system": body["messages"][0]["content"],
                    "model": body.get("model"),
                }
            )
        script = srv.plan.get(index, srv.default)
        action = script[min(attempt, len(script) - 1)]
        self._act(action, index, int(body.get("n", 1)))

    def _act(self, action: str, index: int, n: int) -> None:
        srv = self.server
        if action == "stall":
            time.sleep(srv.stall_s)
            action = "ok"
        if action in ("500", "400", "401", "404"):
            self._send(
                int(action), json.dumps({"error": {"message": f"injected {action}"}}).encode()
            )
        elif action == "429":
            self._send(
                429, b'{"error": {"message": "slow down"}}', {"retry-after": srv.retry_after}
            )
        elif action == "broken":
            self._send(200, b'{"id": "x", "choices": [')
        elif action == "nochoices":
            self._send(
                200,
                json.dumps(
                    {"id": "x", "object": "chat.completion", "created": 0, "model": MODEL}
                ).encode(),
            )
        elif action == "html":
            self._send(200, b"<html>bad gateway</html>", ctype="text/html")
        else:
            time.sleep(srv.delay_s)
            texts = [srv.reply(action, index, k) for k in range(1 if action == "one" else n)]
            self._send(200, json.dumps(_completion(texts)).encode())


def _completion(texts: list[str | dict]) -> dict:
    choices = []
    for i, t in enumerate(texts):
        message = t if isinstance(t, dict) else {"role": "assistant", "content": t}
        choices.append({"index": i, "message": message, "finish_reason": "stop"})
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class FakeTeacherServer(ThreadingHTTPServer):
    """``with FakeTeacherServer(mos) as srv: srv.base_url ...``

    Args:
        mos: MOS per image index (the "ok" answers score MOS + 0.1).
        plan: Image index -> actions per attempt.
        default: Script of images not in ``plan``.
    """

    daemon_threads = True

    def __init__(
        self,
        mos: list[float],
        plan: dict[int, list[str]] | None = None,
        default: list[str] | None = None,
        *,
        delay_s: float = 0.0,
        stall_s: float = 1.0,
        retry_after: str = "1",
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mos = mos
        self.plan = plan or {}
        self.default = default or ["ok"]
        self.delay_s, self.stall_s, self.retry_after = delay_s, stall_s, retry_after
        self.requests: dict[int, list[dict]] = defaultdict(list)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, action: str, index: int, k: int) -> str | dict:
        """The text of answer ``k`` for ``action``."""
        mos = self.mos[index]
        if action == "noanswer":
            return tagged(f"<think>\n{REASONING}\n</think>\nI would say about {mos:.1f}.")
        if action == "far":
            return tagged(
                f"<think>\n{REASONING}\n</think>\n<answer>{5.0 if mos < 3 else 1.0:.2f}</answer>"
            )
        if action == "leak":
            return tagged(
                f"<think>\nViewers gave it a MOS of {mos:.2f}. {REASONING}\n</think>\n<answer>{mos:.2f}</answer>"
            )
        if action == "mixed":  # best of three: far, close, unparsable
            return [
                tagged(
                    f"<think>\n{REASONING}\n</think>\n<answer>{min(5.0, mos + 1.5):.2f}</answer>"
                ),
                tagged(f"<think>\n{REASONING}\n</think>\n<answer>{mos + 0.2:.2f}</answer>"),
                "no tags at all",
            ][k % 3]
        if action == "split_reasoning":  # a server with a reasoning parser
            return {
                "role": "assistant",
                "content": tagged(f"<answer>{mos:.2f}</answer>"),
                "reasoning_content": REASONING,
            }
        return tagged(f"<think>\n{REASONING}\n</think>\n<answer>{mos + 0.1:.2f}</answer>")

    def __enter__(self) -> FakeTeacherServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
