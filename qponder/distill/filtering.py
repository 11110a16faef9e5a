"""Which teacher answer, if any, becomes cold-start data.

Every reply is parsed by :func:`qponder.parsing.parse_completion` (the one parser). Among
the replies with a valid score and real reasoning, the one closest to the MOS is kept when
it lies within the tolerance; the kept completion is rewritten in the output contract by
:func:`qponder.parsing.format_completion`, so the student learns one exact format whatever
the teacher's layout.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from qponder.answer_format import strip_tags
from qponder.distill.base import TeacherReply
from qponder.parsing import format_completion, parse_completion

MIN_REASONING_WORDS = 5  # shorter "reasoning" teaches the student nothing

# Reject reasons, as written in FILE.rejected.jsonl.
SCORE_MISMATCH = "score_mismatch"
FORMAT = "format"
MOS_LEAK = "mos_leak"
TEACHER_ERROR = "teacher_error"
BAD_IMAGE = "bad_image"

_LEAK_RE = re.compile(
    r"\bmean opinion score\b|\bMOS\b|subjective (?:study|test)|viewers (?:gave|rated)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    """The outcome for one image.

    Attributes:
        reason: ``None`` when kept, else a reject reason (``score_mismatch``, ``format``,
            ``mos_leak``).
        detail: A human-readable explanation for rejects.
        completion: The normalised completion (kept only).
        teacher_score: Score of the kept reply, or of the closest reply for a mismatch.
        teacher_scores: Scores of every reply that parsed, in reply order.
    """

    reason: str | None
    detail: str = ""
    completion: str | None = None
    teacher_score: float | None = None
    teacher_scores: list[float] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return self.reason is None


def _leaks_mos(reasoning: str, mos: float) -> bool:
    return bool(_LEAK_RE.search(reasoning)) or f"{mos:.2f}" in reasoning


def judge_replies(
    replies: Sequence[TeacherReply], mos: float, tolerance: float, mode: str = "blind"
) -> Verdict:
    """Pick the reply to keep, or say why none is kept.

    Args:
        replies: The teacher's raw answers for one image.
        mos: The image's MOS on [1, 5].
        tolerance: Keep when ``|score - mos| <= tolerance``.
        mode: ``"guided"`` also rejects reasoning that quotes the given MOS or the study.

    Returns:
        A :class:`Verdict`.

    Example:
        >>> r = [TeacherReply("<think>soft edges, mild noise, fair overall</think><answer>3.1</answer>")]
        >>> v = judge_replies(r, mos=3.3, tolerance=0.5)
        >>> v.kept, v.completion
        (True, '<think>\\nsoft edges, mild noise, fair overall\\n</think>\\n<answer>3.10</answer>')
        >>> judge_replies(r, mos=4.2, tolerance=0.5).reason
        'score_mismatch'
    """
    parsed = [parse_completion(r.text) for r in replies]
    scores = [p.score for p in parsed if p.score is not None]
    if not scores:
        errors = Counter(p.error for p in parsed)
        detail = ", ".join(f"{k} x{v}" for k, v in errors.most_common())
        if any(r.finish_reason == "length" for r in replies):
            detail += " (cut by the token limit: raise distill.max_tokens)"
        return Verdict(FORMAT, detail)
    candidates = []
    for p in parsed:
        if p.score is None:
            continue
        reasoning = strip_tags(p.reasoning).strip()
        if len(reasoning.split()) >= MIN_REASONING_WORDS:
            candidates.append((p.score, reasoning))
    if not candidates:
        return Verdict(FORMAT, "no_reasoning", teacher_scores=scores)
    if mode == "guided":
        honest = [c for c in candidates if not _leaks_mos(c[1], mos)]
        if not honest:
            return Verdict(MOS_LEAK, "the reasoning quotes the given MOS", teacher_scores=scores)
        candidates = honest
    score, reasoning = min(candidates, key=lambda c: abs(c[0] - mos))
    if abs(score - mos) > tolerance + 1e-9:
        detail = f"closest score {score:.2f} vs MOS {mos:.2f} (tolerance {tolerance:g})"
        return Verdict(SCORE_MISMATCH, detail, teacher_score=score, teacher_scores=scores)
    return Verdict(
        None,
        completion=format_completion(reasoning, score),
        teacher_score=float(f"{score:.2f}"),  # as written in the completion
        teacher_scores=scores,
    )
