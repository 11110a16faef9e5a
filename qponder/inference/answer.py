"""Where the score's first digit is generated, and the expected score read there.

The expected score is the probability-weighted mean over the digit tokens "1".."5" at the
position right after the last ``<answer>`` tag of a completion (see
:mod:`qponder.models.readout`). Locating that position works on generated token ids (HF,
vLLM) or on the token strings an OpenAI-compatible server returns. White-space tokens
between the tag and the digit are skipped. When the token generated there is not one of
"1".."5" (say ``{``, ``7`` or a word), there is no read-out: ``None``, never a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

_ANSWER_OPEN_RE = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
DIGITS: tuple[str, ...] = ("1", "2", "3", "4", "5")


def _answer_tag_end(text: str) -> int | None:
    """Character offset just after the last ``<answer>`` tag of ``text``, or None."""
    matches = list(_ANSWER_OPEN_RE.finditer(text))
    return matches[-1].end() if matches else None


def answer_token_index(ids: Sequence[int], decode: Callable[[Sequence[int]], str]) -> int | None:
    """Index of the first non-white-space token after the last ``<answer>`` tag.

    Args:
        ids: Generated token ids (the completion only, no prompt).
        decode: Turns ids into text, e.g. ``lambda t: tok.decode(t, skip_special_tokens=True)``.

    Returns:
        The index into ``ids``, or None when there is no tag, nothing follows it, or the
        token that completes the tag also carries text after it (the digit is not a token
        of its own, so no read-out is possible).

    Example:
        >>> pieces = ["<think>", "ok", "</think>", "<answer", ">", " ", "3", ".", "5"]
        >>> answer_token_index(range(len(pieces)), lambda t: "".join(pieces[i] for i in t))
        6
    """
    ids = list(ids)
    text = decode(ids)
    end = _answer_tag_end(text)
    if end is None:
        return None
    target = text[:end]

    def covers(j: int) -> bool:
        return decode(ids[:j]).startswith(target)

    lo, hi = 0, len(ids)  # smallest j whose prefix contains the whole tag (monotone in j)
    while lo < hi:
        mid = (lo + hi) // 2
        if covers(mid):
            hi = mid
        else:
            lo = mid + 1
    if decode(ids[:lo])[end:].strip():
        return None
    j = lo
    while j < len(ids) and not decode(ids[j : j + 1]).strip():
        j += 1
    return j if j < len(ids) else None


def answer_piece_index(pieces: Sequence[str]) -> int | None:
    """:func:`answer_token_index` for token strings (as OpenAI-compatible logprobs give them).

    Example:
        >>> answer_piece_index(["<answer", ">\\n", "4", ".", "2"])
        2
    """
    return answer_token_index(range(len(pieces)), lambda idx: "".join(pieces[i] for i in idx))


def expected_from_logprobs(logprobs: Mapping[str, float]) -> float | None:
    """Expected score from log-probabilities of candidate tokens at the answer position.

    Args:
        logprobs: Token string -> log-probability (e.g. an OpenAI ``top_logprobs`` list
            turned into a dict). Only the tokens "1".."5" count; digits missing from a
            top-k list are taken as probability 0 (they were less likely than every
            listed token), so the read-out is the softmax restricted to the listed digits.

    Returns:
        ``sum_k p(k) * k`` over the listed digits, or None when no digit is listed.

    Example:
        >>> round(expected_from_logprobs({"4": math.log(0.6), "5": math.log(0.2), "x": -1.0}), 6)
        4.25
    """
    lps = {
        int(t): lp
        for t, lp in logprobs.items()
        if t in DIGITS and lp is not None and math.isfinite(lp)
    }
    if not lps:
        return None
    top = max(lps.values())
    weights = {k: math.exp(lp - top) for k, lp in lps.items()}
    total = sum(weights.values())
    return sum(k * w for k, w in weights.items()) / total
