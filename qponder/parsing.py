"""The score answer: reading and writing a quality score in a completion's answer block,
every failure reason, and the expected-score read-out.

Where the answer block is, and how a completion is laid out, is
:mod:`qponder.answer_format`'s; this module reads what the answer says. The score is the
first number inside the LAST answer block. Parsing is tolerant about white space and a
few textual variants ("3.5/5", "Score: 3.5", ``{"rating": 3.5}``) and never guesses:
anything else gives ``None`` and a failure reason. A number is read only when it stands on
its own: digits inside a word or a key (``bbox_2d``, ``v2``, ``3.5x``) or a version
(``4.5.1``) are never the score, while a sentence's closing full stop, ellipsis or
exclamation mark ends it (``3.25.``); an answer written as JSON is read by its
rating/score key or refused. Training (rewards), evaluation, scoring and the consistency
judges all call these functions, so a parse failure and an expected score mean the same
thing everywhere.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qponder.answer_format import NO_ANSWER, parse, render, render_answer, well_formed

SCORE_MIN = 1.0
SCORE_MAX = 5.0

# a number standing on its own: not glued to a letter, digit or "_" on either side, nor to
# a "." before it; a "." after it is a full stop ("3.25.", "3.25...") unless a letter or digit
# follows (a version such as "4.5.1" is no score)
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?!\w)(?!\.+\w)")
# the keys a JSON answer may carry its score under (case-insensitive), in order of preference
SCORE_KEYS: tuple[str, ...] = ("rating", "score", "quality_score", "quality", "overall")
_KEY_VALUE_RE = re.compile(
    r"[\"']?(" + "|".join(SCORE_KEYS) + r")[\"']?\s*[:=]\s*[\"']?([^,}\]\"'\s]+)", re.IGNORECASE
)
# What may follow the number and change its meaning: a scale ("/10", "out of 10"),
# a decimal comma ("3,5") or a range ("3-4", "3 to 4").
_SCALE_RE = re.compile(r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_AMBIGUOUS_RE = re.compile(r",\d|\s*(?:-|\u2013|to\b)\s*\d", re.IGNORECASE)

# Parse failure reasons, as reported in evaluation summaries, score outputs and
# distillation rejects. Every one of them counts as a parse failure.
NO_NUMBER = "no_number"
OUT_OF_RANGE = "out_of_range"
OTHER_SCALE = "other_scale"
AMBIGUOUS = "ambiguous"
NO_SCORE_KEY = "no_score_key"
PARSE_FAILURES: frozenset[str] = frozenset(
    {NO_ANSWER, NO_NUMBER, OUT_OF_RANGE, OTHER_SCALE, AMBIGUOUS, NO_SCORE_KEY}
)
# Failures that produced no answer to parse, as prefixes of the ``error`` field.
BAD_IMAGE = "bad_image"  # bad_image:<reason>, see qponder.errors.BadImageError
REQUEST_FAILED = "request_failed"  # request_failed: <detail> (an endpoint did not answer)


def failure_kind(error: str | None) -> str | None:
    """Classify an ``error`` field: ``None`` (no failure), ``"parse"``, ``"bad_image"``,
    ``"request"`` or ``"other"``.

    Example:
        >>> [failure_kind(e) for e in (None, "other_scale", "bad_image:truncated", "x")]
        [None, 'parse', 'bad_image', 'other']
    """
    if error is None:
        return None
    if error in PARSE_FAILURES:
        return "parse"
    if error.startswith(BAD_IMAGE):
        return "bad_image"
    return "request" if error.startswith(REQUEST_FAILED) else "other"


@dataclass(frozen=True)
class ParsedCompletion:
    """The parts of a completion.

    Attributes:
        score: The parsed score in [1, 5], or ``None`` when parsing failed.
        reasoning: Text of the reasoning block(s); without one, the text before the last
            answer block. Never contains the answer.
        answer: Raw text inside the last answer block, or ``None`` when there is none.
        error: ``None`` on success, else one of ``"no_answer"``, ``"no_number"``,
            ``"out_of_range"``, ``"other_scale"`` (e.g. "4/10": not rescaled) or
            ``"ambiguous"`` (a decimal comma "3,5" or a range "3-4": not guessed).
        n_think: Number of complete reasoning blocks.
        n_answer: Number of complete answer blocks.
        think_before_answer: Whether the last think block closes before the last answer opens.
    """

    score: float | None
    reasoning: str
    answer: str | None
    error: str | None
    n_think: int
    n_answer: int
    think_before_answer: bool

    @property
    def ok(self) -> bool:
        """True when a valid score was parsed."""
        return self.score is not None


def _score_from_structured(answer: str) -> tuple[float | None, str | None]:
    """The score of an answer written as JSON (or a JSON-like mapping): its score key only."""
    try:
        data: Any = json.loads(answer)
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        lowered = {str(k).lower(): v for k, v in data.items()}
        for key in SCORE_KEYS:
            value = lowered.get(key)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, (int, float, str)):
                return _score_from_plain(str(value))
        return None, NO_SCORE_KEY
    match = _KEY_VALUE_RE.search(answer)  # e.g. {rating: 3.5}, not valid JSON
    return _score_from_plain(match.group(2)) if match else (None, NO_SCORE_KEY)


def _score_from_answer(answer: str) -> tuple[float | None, str | None]:
    if answer.strip().startswith(("{", "[")):
        return _score_from_structured(answer.strip())
    return _score_from_plain(answer)


def _score_from_plain(answer: str) -> tuple[float | None, str | None]:
    match = _NUMBER_RE.search(answer)
    if match is None:
        return None, NO_NUMBER
    value = float(match.group(0))
    rest = answer[match.end() :]
    scale = _SCALE_RE.match(rest)
    if scale is not None and float(scale.group(1)) != SCORE_MAX:
        return None, OTHER_SCALE
    if scale is None and _AMBIGUOUS_RE.match(rest):
        return None, AMBIGUOUS
    if not SCORE_MIN <= value <= SCORE_MAX:
        return None, OUT_OF_RANGE
    return value, None


class ScoreAnswer:
    """The answer kind of the score task (:class:`qponder.answer_format.AnswerKind`): a
    number on [1, 5], written with two decimals."""

    def read(self, answer: str) -> tuple[float | None, str | None]:
        """The score in an answer block's text, or None and the reason."""
        return _score_from_answer(answer)

    def write(self, score: float) -> str:
        """The answer text of ``score``, with two decimals.

        Raises:
            ValueError: When ``score`` lies outside [1, 5].
        """
        if not SCORE_MIN <= score <= SCORE_MAX:
            raise ValueError(f"score {score} outside [{SCORE_MIN}, {SCORE_MAX}]")
        return f"{score:.2f}"


SCORE = ScoreAnswer()


def parse_completion(text: str | list | dict) -> ParsedCompletion:
    """Parse a completion into score, reasoning and failure reason.

    Args:
        text: The completion (see :func:`qponder.answer_format.completion_text` for
            accepted forms).

    Returns:
        A :class:`ParsedCompletion`.

    Example:
        >>> p = parse_completion("<think>sharp, low noise</think><answer>4.2</answer>")
        >>> p.score, p.reasoning, p.error
        (4.2, 'sharp, low noise', None)
        >>> parse_completion("<think>blurry</think>").error
        'no_answer'
    """
    p = parse(text, SCORE)
    b = p.blocks
    return ParsedCompletion(
        score=p.value,
        reasoning=b.reasoning,
        answer=b.answer,
        error=p.error,
        n_think=b.n_think,
        n_answer=b.n_answer,
        think_before_answer=b.think_before_answer,
    )


def parse_score(text: str | list | dict) -> float | None:
    """Return the score of a completion, or ``None`` when there is no valid one.

    The score is the first number inside the last answer block; it must lie in [1, 5].
    Never a guess.

    Example:
        >>> parse_score("<think>ok</think><answer>3.5/5</answer>")
        3.5
        >>> parse_score('<answer>{"rating": 2.75}</answer>')
        2.75
        >>> parse_score("<answer>7</answer>") is None
        True
    """
    return parse(text, SCORE).value


def is_well_formed(text: str | list | dict) -> bool:
    """True when a completion has exactly one reasoning block, then exactly one answer
    block holding a valid score. This is the format reward's condition."""
    return well_formed(text, SCORE)


def format_answer(score: float) -> str:
    """Render a score in the answer block, with two decimals.

    Example:
        >>> format_answer(3.4712)
        '<answer>3.47</answer>'
    """
    return render_answer(SCORE.write(score))


def format_completion(reasoning: str, score: float) -> str:
    """Render reasoning and score in the model output contract (DESIGN §2)."""
    return render(reasoning, SCORE.write(score))


# --------------------------------------------------------------------------- read-out

DIGITS: tuple[str, ...] = ("1", "2", "3", "4", "5")  # the score levels, as answer tokens

# Why a completion has no expected score (the ``expected_score_reason`` of a result).
NO_LOGPROBS = "no_logprobs"  # the backend or server gave no log-probabilities
NO_ANSWER_POSITION = "no_answer_position"  # no answer tag, or nothing after it
NOT_A_DIGIT = "not_a_digit"  # the token after the tag is not one of "1".."5"
DIGITS_SPLIT = "digits_split"  # the tokenizer has no single token per digit
NON_FINITE = "non_finite"  # a digit's logit is NaN or +inf: no distribution to read
NO_COMPLETION = "no_completion"  # the request or image failed: nothing to read


def expected_with_reason(logprobs: Mapping[str, float]) -> tuple[float | None, str | None]:
    """Expected score from log-probabilities (or logits) of tokens at the answer position,
    and why there is none.

    The one read-out of the package: backends (transformers, vLLM, OpenAI-compatible) and
    judges all call it (or :func:`expected_from_logprobs`). Only the tokens "1".."5" count
    (surrounding white space ignored, and the same digit written twice is summed); the
    result is the softmax restricted to the listed digits, so unnormalised logits give the
    same value as log-probabilities, and a digit missing from a top-k list counts as
    probability 0. So does a digit at ``-inf`` (a log-probability of 0 probability, as a
    server or a token-suppressing logits processor writes it). A NaN or ``+inf`` is no
    probability at all: then there is no expected score, rather than one made of the other
    digits.

    Returns:
        ``(sum_k p(k) * k, None)`` over the listed digits; ``(None, NON_FINITE)`` when a
        digit's value is NaN or ``+inf``, or every digit is at ``-inf``; ``(None,
        NO_LOGPROBS)`` when no digit is listed.

    Example:
        >>> expected_with_reason({"1": float("nan"), "2": 0.0})
        (None, 'non_finite')
        >>> expected_with_reason({"x": -1.0})
        (None, 'no_logprobs')
    """
    lps: list[tuple[int, float]] = []
    for token, lp in logprobs.items():
        t = str(token).strip()
        if t in DIGITS and lp is not None:
            lps.append((int(t), float(lp)))
    if not lps:
        return None, NO_LOGPROBS
    if any(math.isnan(lp) or lp == math.inf for _, lp in lps):
        return None, NON_FINITE
    lps = [(k, lp) for k, lp in lps if lp != -math.inf]
    if not lps:
        return None, NON_FINITE
    top = max(lp for _, lp in lps)
    weights = [(k, math.exp(lp - top)) for k, lp in lps]
    return sum(k * w for k, w in weights) / sum(w for _, w in weights), None


def expected_from_logprobs(logprobs: Mapping[str, float]) -> float | None:
    """The expected score of :func:`expected_with_reason`, without the reason.

    Returns:
        ``sum_k p(k) * k`` over the listed digits, or None when no digit is listed or a
        value is not finite (NaN, ``+inf``).

    Example:
        >>> round(expected_from_logprobs({"4": math.log(0.6), "5": math.log(0.2), "x": -1.0}), 6)
        4.25
        >>> expected_from_logprobs({"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0})
        3.0
        >>> expected_from_logprobs({"1": float("inf"), "2": 0.0}) is None
        True
    """
    return expected_with_reason(logprobs)[0]


def expected_from_digit_logits(values: Sequence[float]) -> float | None:
    """:func:`expected_from_logprobs` for the five logits of "1".."5", in that order."""
    return expected_from_logprobs(dict(zip(DIGITS, values, strict=True)))
