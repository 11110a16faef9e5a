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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qponder.config import MAX_SAMPLES
from qponder.parsing import failure_kind


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


# --------------------------------------------------------------------------- answers
# The field order of each model is the order of the keys in the JSON sent.


class Health(BaseModel):
    """``GET /health``: ``ok`` (with the model and backend), ``loading``, ``failed`` (with
    the error) or ``stopping``; fields that do not apply are left out of the JSON."""

    status: Literal["ok", "loading", "failed", "stopping"]
    model: str | None = None
    backend: str | None = None
    error: str | None = None


class ModelCard(BaseModel):
    """The served model and the server's limits, in ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    backend: str
    score_scale: list[float]
    samples: int
    max_samples: int
    max_batch: int
    max_images: int
    max_body_bytes: int
    ready: bool


class ModelList(BaseModel):
    """``GET /v1/models``: the OpenAI-style list, with the one served model."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ParseOutcome(BaseModel):
    """Whether the answer held a valid score, and the parse failure reason if not."""

    ok: bool
    reason: str | None


class ScoreRow(BaseModel):
    """The answer for one image."""

    id: str
    score: float | None
    expected_score: float | None
    score_std: float | None
    reasoning: str
    parse: ParseOutcome
    error: str | None


class ScoreResponse(BaseModel):
    """The answer of both score endpoints: one row per image, in the order sent."""

    model: str
    samples: int
    results: list[ScoreRow]


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def result_row(image_id: str, result: Any) -> ScoreRow:
    """The answer for one image from a :class:`qponder.inference.ScoreResult`."""
    error = result.error
    return ScoreRow(
        id=image_id,
        score=_finite(result.score),
        expected_score=_finite(result.expected_score),
        score_std=_finite(result.score_std),
        reasoning=result.reasoning,
        parse=ParseOutcome(
            ok=result.score is not None,
            reason=error if failure_kind(error) == "parse" else None,
        ),
        error=error,
    )


def error_row(image_id: str, error: str) -> ScoreRow:
    """The answer for an image that was not scored (``bad_image:<reason>``)."""
    return ScoreRow(
        id=image_id,
        score=None,
        expected_score=None,
        score_std=None,
        reasoning="",
        parse=ParseOutcome(ok=False, reason=None),
        error=error,
    )
