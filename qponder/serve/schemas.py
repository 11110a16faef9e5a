"""The JSON the server reads and writes.

Request (``POST /v1/score``)::

    {"images": [{"id": "a", "data": "<base64 or data: URL>"}, ...], "samples": 4}

Answer (both score endpoints)::

    {"model": "...", "samples": 4, "results": [
        {"id": "a", "score": 3.5, "expected_score": 3.42, "score_std": 0.2,
         "reasoning": "...", "parse": {"ok": true, "reason": null}, "error": null}, ...]}

``error`` uses the vocabulary of ``qponder score``: None when there is a score, else a
parse failure reason (``no_answer``, ...; also in ``parse.reason``), ``bad_image:<reason>``
or ``request_failed: ...``. ``score_std`` is None unless ``samples > 1``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qponder.parsing import failure_kind
from qponder.serve.settings import MAX_SAMPLES


class ImageIn(BaseModel):
    """One image of a request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=512)
    data: str


class ScoreRequest(BaseModel):
    """The body of ``POST /v1/score``."""

    model_config = ConfigDict(extra="forbid")

    images: list[ImageIn] = Field(min_length=1)
    samples: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def result_row(image_id: str, result: Any) -> dict[str, Any]:
    """The answer for one image from a :class:`qponder.inference.ScoreResult`."""
    error = result.error
    return {
        "id": image_id,
        "score": _finite(result.score),
        "expected_score": _finite(result.expected_score),
        "score_std": _finite(result.score_std),
        "reasoning": result.reasoning,
        "parse": {
            "ok": result.score is not None,
            "reason": error if failure_kind(error) == "parse" else None,
        },
        "error": error,
    }


def error_row(image_id: str, error: str) -> dict[str, Any]:
    """The answer for an image that was not scored (``bad_image:<reason>``)."""
    return {
        "id": image_id,
        "score": None,
        "expected_score": None,
        "score_std": None,
        "reasoning": "",
        "parse": {"ok": False, "reason": None},
        "error": error,
    }
