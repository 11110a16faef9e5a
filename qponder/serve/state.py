"""What one scoring app holds: its settings from the recipe, its metrics and key check, and,
once the model is loaded, the scorer and the worker that owns it (or why loading failed)."""

from __future__ import annotations

from typing import Any

from qponder.config import Recipe
from qponder.serve.batcher import MicroBatcher
from qponder.serve.guards import BearerKey
from qponder.serve.metrics import ServeMetrics
from qponder.serve.settings import UPLOAD_MAX_PIXELS, max_body_bytes


class ServeState:
    """The state of one app (``app.state.serve``), shared by its routes.

    Args:
        recipe: The validated recipe (``serve`` and ``eval`` sections).
        model: The served model's name, as ``/health`` and ``/v1/models`` report it.
        api_key: The bearer key every ``/v1/*`` and ``/metrics`` request needs, or None.
    """

    def __init__(self, recipe: Recipe, model: str, api_key: str | None) -> None:
        self.model = model
        self.backend = recipe.eval.backend
        self.max_batch = recipe.eval.batch_size
        self.samples = recipe.eval.samples  # when a request does not say
        self.serve = recipe.serve
        self.max_body_bytes = max_body_bytes(recipe)
        self.max_pixels = UPLOAD_MAX_PIXELS
        self.metrics = ServeMetrics()
        self.auth = BearerKey(api_key)
        self.scorer: Any = None
        self.batcher: MicroBatcher | None = None
        self.load_error: BaseException | None = None
        self.closing = False
