"""Parsing of model outputs in the ``<think>...</think><answer>score</answer>`` format.

The score is the first number inside the LAST ``<answer>...</answer>`` block. Parsing is
tolerant about white space and a few textual variants ("3.5/5", "Score: 3.5",
``{"rating": 3.5}``) and never guesses: anything else gives ``None``. Training (rewards)
and evaluation call the same functions, so a parse failure means the same thing in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCORE_MIN = 1.0
SCORE_MAX = 5.0

_ANSWER_RE = re.compile(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", re.IGNORECASE | re.DOTALL)
_THINK_RE = re.compile(r"<\s*think\s*>(.*?)<\s*/\s*think\s*>", re.IGNORECASE | re.DOTALL)
_ANSWER_OPEN_RE = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# What may follow the number and change its meaning: a scale ("/10", "out of 10"),
# a decimal comma ("3,5") or a range ("3-4", "3 to 4").
_SCALE_RE = re.compile(r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_AMBIGUOUS_RE = re.compile(r",\d|\s*(?:-|\u2013|to\b)\s*\d", re.IGNORECASE)

# Failure reasons, as reported in evaluation summaries and distillation rejects.
NO_ANSWER = "no_answer"
NO_NUMBER = "no_number"
OUT_OF_RANGE = "out_of_range"
OTHER_SCALE = "other_scale"
AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class ParsedCompletion:
    """The parts of a completion.

    Attributes:
        score: The parsed score in [1, 5], or ``None`` when parsing failed.
        reasoning: Text of the ``<think>`` block(s); without one, the text before the last
            ``<answer>``. Never contains the answer.
        answer: Raw text inside the last ``<answer>`` block, or ``None`` when there is none.
        error: ``None`` on success, else one of ``"no_answer"``, ``"no_number"``,
            ``"out_of_range"``, ``"other_scale"`` (e.g. "4/10": not rescaled) or
            ``"ambiguous"`` (a decimal comma "3,5" or a range "3-4": not guessed).
        n_think: Number of complete ``<think>...</think>`` blocks.
        n_answer: Number of complete ``<answer>...</answer>`` blocks.
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


def completion_text(completion: str | list | dict) -> str:
    """Return the text of a completion given as a string or in TRL's conversational form.

    Args:
        completion: A string, a message dict ``{"role", "content"}``, or a list of such
            messages (the assistant turn TRL passes to reward functions). Content may be a
            string or a list of ``{"type": "text", "text": ...}`` parts.

    Returns:
        The concatenated text.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", "")
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(completion, list):
        return "".join(completion_text(m) for m in completion)
    raise TypeError(f"unsupported completion type: {type(completion).__name__}")


def _score_from_answer(answer: str) -> tuple[float | None, str | None]:
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


def parse_completion(text: str | list | dict) -> ParsedCompletion:
    """Parse a completion into score, reasoning and failure reason.

    Args:
        text: The completion (see :func:`completion_text` for accepted forms).

    Returns:
        A :class:`ParsedCompletion`.

    Example:
        >>> p = parse_completion("<think>sharp, low noise</think><answer>4.2</answer>")
        >>> p.score, p.reasoning, p.error
        (4.2, 'sharp, low noise', None)
        >>> parse_completion("<think>blurry</think>").error
        'no_answer'
    """
    text = completion_text(text)
    answers = list(_ANSWER_RE.finditer(text))
    thinks = list(_THINK_RE.finditer(text))
    last_answer = answers[-1] if answers else None
    if thinks:
        reasoning = "\n".join(m.group(1).strip() for m in thinks)
    else:
        cut = _ANSWER_OPEN_RE.search(text)
        reasoning = (text[: cut.start()] if cut else text).strip()
        reasoning = _THINK_OPEN_RE.sub("", reasoning).strip()
    think_before = bool(thinks and last_answer and thinks[-1].end() <= last_answer.start())
    if last_answer is None:
        score, error, answer = None, NO_ANSWER, None
    else:
        answer = last_answer.group(1)
        score, error = _score_from_answer(answer)
    return ParsedCompletion(
        score=score,
        reasoning=reasoning,
        answer=answer,
        error=error,
        n_think=len(thinks),
        n_answer=len(answers),
        think_before_answer=think_before,
    )


def parse_score(text: str | list | dict) -> float | None:
    """Return the score of a completion, or ``None`` when there is no valid one.

    The score is the first number inside the last ``<answer>...</answer>`` block; it must lie
    in [1, 5]. Never a guess.

    Example:
        >>> parse_score("<think>ok</think><answer>3.5/5</answer>")
        3.5
        >>> parse_score('<answer>{"rating": 2.75}</answer>')
        2.75
        >>> parse_score("<answer>7</answer>") is None
        True
    """
    return parse_completion(text).score


def is_well_formed(text: str | list | dict) -> bool:
    """True when a completion has exactly one think block, then exactly one answer block
    holding a valid score. This is the format reward's condition."""
    p = parse_completion(text)
    return p.ok and p.n_think == 1 and p.n_answer == 1 and p.think_before_answer


def strip_answer(text: str | list | dict) -> str:
    """Return the completion with everything from the last ``<answer>`` removed.

    The consistency judge reads this: the reasoning without the score it led to.
    """
    text = completion_text(text)
    opens = list(_ANSWER_OPEN_RE.finditer(text))
    return (text[: opens[-1].start()] if opens else text).rstrip()


def format_answer(score: float) -> str:
    """Render a score in the output format's answer block, with two decimals.

    Example:
        >>> format_answer(3.4712)
        '<answer>3.47</answer>'
    """
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise ValueError(f"score {score} outside [{SCORE_MIN}, {SCORE_MAX}]")
    return f"<answer>{score:.2f}</answer>"


def format_completion(reasoning: str, score: float) -> str:
    """Render reasoning and score in the model output contract (DESIGN §2)."""
    return f"<think>\n{reasoning.strip()}\n</think>\n{format_answer(score)}"
