"""Third-party OpenAI-compatible servers, run stock, for the interoperability tests.

``python tests/stock_servers.py transformers-serve MODEL --port P [--host H] [ARGS...]``
runs ``transformers serve MODEL`` (the CLI of the installed transformers: its
``transformers.cli.transformers.app`` typer app, i.e. ``Serve``, with every route,
request validation, generation and response parsing unchanged) with exactly one
substitution:

- ``transformers.cli.serving.model_manager.ModelManager._load_processor`` returns
  ``qponder.models.load_processor(model_id)`` instead of
  ``AutoProcessor.from_pretrained(model_id)``.

Why: a Qwen2.5-VL processor has a video processor, and transformers' video processors need
torchvision, which the CPU test environment does not have (and must not install); qponder's
tiny checkpoint is accordingly saved with an image processor only. On it, the stock
``transformers serve`` stops at startup with ``OSError: Can't load video processor``
(observed with transformers 5.23); where ``AutoProcessor`` instead falls back to the bare
tokenizer, the server would treat the model as text-only and drop the images.
``qponder.models.load_processor`` builds the same ``Qwen2_5_VLProcessor`` class from the
same files, minus the video processor. With torchvision and a checkpoint that has a video
processor, the stock ``transformers serve`` needs no substitution.

The launcher also exits when the process that started it is gone
(``$STOCK_SERVER_PARENT_PID``), so a killed test run leaves no server behind.

:func:`start_transformers_serve` starts the launcher as a subprocess on a free loopback
port, waits (bounded) until the model is loaded and the server answers, and always stops
it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def _patch_processor_loading() -> None:
    """The one substitution (see the module docstring)."""
    from transformers.cli.serving.model_manager import ModelManager

    from qponder.models import load_processor

    def _load_processor(self, model_id_and_revision, gguf_file=None):
        model_id, _revision = model_id_and_revision.split("@", 1)
        return load_processor(model_id)

    ModelManager._load_processor = _load_processor


def _exit_with_parent(pid: int) -> None:
    """Exit as soon as process ``pid`` (the test run) is no longer this one's parent."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """``transformers-serve ARGS...``: the stock ``transformers serve ARGS...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "transformers-serve":
        sys.exit("usage: stock_servers.py transformers-serve MODEL [transformers serve options]")
    if os.environ.get("STOCK_SERVER_PARENT_PID"):
        _exit_with_parent(int(os.environ["STOCK_SERVER_PARENT_PID"]))
    _patch_processor_loading()
    from transformers.cli.transformers import app

    app(["serve", *argv[1:]], prog_name="transformers")


# --------------------------------------------------------------------------- fixture support


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (bind to port 0 and let the OS pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """A started server: ``base_url`` ends in ``/v1``; ``log`` holds its stdout and stderr."""

    base_url: str
    model: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def start_transformers_serve(
    model: str | os.PathLike,
    log: Path,
    *,
    timeout: float = 120.0,
    extra: Sequence[str] = (),
    env: Mapping[str, str | os.PathLike] | None = None,
) -> Iterator[RunningServer]:
    """Run the launcher on a free loopback port until the ``with`` block ends.

    The model is preloaded (``transformers serve MODEL``), so ``/health`` answers only once
    it is loaded. Raises ``RuntimeError`` with the server's log when it exits or does not
    answer within ``timeout`` seconds; the process is terminated (then killed) on exit.

    Args:
        model: The model folder; also the model name requests must use.
        log: Where the server's stdout and stderr go (uvicorn logs every request there).
        timeout: Seconds to wait for the server to answer.
        extra: More ``transformers serve`` options.
        env: Environment variables to set for the server on top of this process's.
    """
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # a tiny model; two cores shared with the client
        "STOCK_SERVER_PARENT_PID": str(os.getpid()),
        **{k: str(v) for k, v in (env or {}).items()},
    }
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "transformers-serve",
        str(model),
        "--host",
        HOST,
        "--port",
        str(port),
        "--device",
        "cpu",
        *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(f"http://{HOST}:{port}/v1", str(model), proc, log)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(f"http://{HOST}:{port}/health"):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited with {proc.returncode}:\n{server.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"transformers serve did not answer within {timeout:g}s:\n{server.log_text()}"
                )
            time.sleep(0.25)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


if __name__ == "__main__":
    main()
