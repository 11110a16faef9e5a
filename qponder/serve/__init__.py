"""qponder.serve: the HTTP scoring server behind ``qponder serve``.

:func:`serve` runs it from a recipe (its ``serve`` section, and ``eval`` for how it scores).
Inside: a FastAPI app (:func:`create_app`) whose routes (``routes``) answer with the
pydantic models of ``schemas``, over one model worker that micro-batches concurrent requests
(:class:`MicroBatcher`); request limits and an optional bearer key (``guards``), Prometheus
metrics with their own registry (``metrics``), the decoding of uploaded image data
(``payload``), a self-contained web page (``page.html``) and the uvicorn entry point
(:func:`run_server`). See docs/serving.md.
"""

from qponder.serve.app import create_app
from qponder.serve.batcher import MicroBatcher, QueueFull
from qponder.serve.server import run_server, serve
from qponder.serve.settings import read_api_key

__all__ = ["MicroBatcher", "QueueFull", "create_app", "read_api_key", "run_server", "serve"]
