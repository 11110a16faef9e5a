"""qponder.serve: the HTTP scoring server behind ``qponder serve``.

A FastAPI app (:func:`create_app`) over one model worker that micro-batches concurrent
requests (:class:`MicroBatcher`), with request limits and an optional bearer key
(``guards``), Prometheus metrics with their own registry (``metrics``), the JSON schema of
requests and answers (``schemas``), the decoding of uploaded image data (``payload``), a
self-contained web page (``page.html``) and the uvicorn entry point (:func:`run_server`).
See docs/serving.md.
"""

from qponder.serve.app import create_app
from qponder.serve.batcher import MicroBatcher, QueueFull
from qponder.serve.server import run_server
from qponder.serve.settings import ServeSettings, read_api_key

__all__ = ["MicroBatcher", "QueueFull", "ServeSettings", "create_app", "read_api_key", "run_server"]
