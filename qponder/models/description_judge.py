"""A judge of descriptions for datasets without distortion labels (KonIQ, SPAQ, ...): a
strong VLM behind an OpenAI-compatible endpoint sees the image and the distortion kinds a
reasoning asserts (read by :func:`qponder.reasoning.analyse_reasoning`) and says, for each,
whether it is really visible.

Its prompt is :data:`qponder.prompts.DESCRIPTION_JUDGE`. Every answer is checked: a refusal,
an HTTP error, an answer that is not the asked-for JSON, or one that grades other kinds than
asked is an error with its reason, never a grade; a reasoning that asserts nothing needs no
request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from qponder.endpoints import (
    chat_messages,
    choice_text,
    encode_png,
    error_text,
    openai_client,
    reply_choices,
)
from qponder.prompts import DESCRIPTION_JUDGE
from qponder.reasoning import analyse_reasoning

_JSON_RE = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True)
class DescriptionGrade:
    """The judge's verdict on one reasoning.

    Attributes:
        grades: Asserted kind -> whether the judge sees it in the image.
        error: Why there is no grade (``request_failed: ...``, ``malformed: ...``,
            ``refused: ...``); None when graded (or when nothing was asserted).
    """

    grades: dict[str, bool] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"grades": dict(self.grades), "error": self.error}


def parse_grades(text: str, claims: Sequence[str]) -> DescriptionGrade:
    """Read the judge's answer: ``{"grades": [{"kind", "visible"}]}`` for exactly ``claims``.

    Example:
        >>> parse_grades('{"grades": [{"kind": "blur", "visible": true}]}', ["blur"]).grades
        {'blur': True}
        >>> parse_grades("I cannot assess this image.", ["blur"]).error[:9]
        'malformed'
    """
    match = _JSON_RE.search(text or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        data = None
    entries = data.get("grades") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return DescriptionGrade(error=f"malformed: no grades in {(text or '')[:80]!r}")
    grades: dict[str, bool] = {}
    for entry in entries:
        kind = str(entry.get("kind", "")).strip().lower() if isinstance(entry, dict) else ""
        visible = entry.get("visible") if isinstance(entry, dict) else None
        if kind in claims and isinstance(visible, bool):
            grades[kind] = visible
    if set(grades) != set(claims):
        missing = sorted(set(claims) - set(grades))
        return DescriptionGrade(error=f"malformed: no usable grade for {missing}")
    return DescriptionGrade(grades=grades)


class DescriptionJudge:
    """Grades what reasonings assert against the images, through an OpenAI-compatible VLM.

    Args:
        base_url: The endpoint.
        model: The served model name.
        api_key_env: Environment variable holding the key.
        concurrency: Requests in flight.
        client: A ready ``openai.OpenAI`` client (tests, custom transports).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        client: Any = None,
    ) -> None:
        self.client = client or openai_client(
            base_url, api_key_env=api_key_env, max_retries=2, what="--describe-judge-url"
        )
        self.model = model
        self.concurrency = concurrency

    def grade(self, image: Any, reasoning: str) -> DescriptionGrade:
        """Grade one reasoning about ``image`` (a PIL image)."""
        import openai

        claims = sorted(analyse_reasoning(reasoning).asserted)
        if not claims:
            return DescriptionGrade()
        prompt = DESCRIPTION_JUDGE.format(claims="\n".join(f"- {k}" for k in claims))
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=chat_messages(prompt, encode_png(image)),
                temperature=0.0,
                max_tokens=400,
            )
        except openai.OpenAIError as exc:
            return DescriptionGrade(error=f"request_failed: {error_text(exc)}")
        choices = reply_choices(resp)
        text = choice_text(choices[0]) if choices else None
        if not text:
            return DescriptionGrade(error="refused: an empty answer")
        return parse_grades(text, claims)

    def grade_many(
        self, images: Sequence[Any], reasonings: Sequence[str]
    ) -> list[DescriptionGrade]:
        """Grade several reasonings, ``concurrency`` requests at a time, in order."""
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self.grade, images, reasonings))
