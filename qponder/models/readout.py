"""The read-out at the answer position (Q-Align style): from a completion and the scores of
a few tokens at each of its steps, the value the answer's first token stands for.

For the score answer, the softmax restricted to the tokens "1".."5" at the position where
the answer's first digit is produced gives a distribution over the integer quality levels;
its mean is the expected score (:func:`qponder.parsing.expected_with_reason`, shared with
every backend and judge). :func:`read_out` is the one walk from a completion to that value
or the reason there is none, whatever the backend: token ids and a tokenizer (transformers,
vLLM) or token strings (OpenAI-compatible logprobs), logits recorded during generation or
top log-probabilities. Nothing in it is particular to digits: the tokens read and what
their scores become are arguments (an "A"/"B" preference reads the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from qponder.answer_format import answer_token_index
from qponder.parsing import (
    DIGITS,
    DIGITS_SPLIT,
    NO_ANSWER_POSITION,
    NO_LOGPROBS,
    NOT_A_DIGIT,
    expected_from_digit_logits,
    expected_with_reason,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Reduce = Callable[[Mapping[str, float]], tuple[float | None, str | None]]


def token_ids(
    tokenizer: Any,
    labels: Sequence[str],
    kind: str = "digit",
    readout: str = "expected-score read-out",
) -> list[int]:
    """Return the token id of each of ``labels``, in order.

    Args:
        tokenizer: The tokenizer that produced the completions read.
        labels: The tokens read, e.g. "1".."5".
        kind: What a label is, for the error message.
        readout: What reads them, for the error message.

    Raises:
        ValueError: When a label is not one token on its own (then the read-out would be
            wrong, so it is refused rather than approximated).
    """
    ids = []
    for label in labels:
        enc = tokenizer.encode(label, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"the tokenizer splits the {kind} {label!r} into {len(enc)} tokens; the "
                f"{readout} needs one token per {kind}"
            )
        ids.append(enc[0])
    return ids


def score_token_ids(tokenizer: Any) -> list[int]:
    """Return the token ids of "1".."5".

    Raises:
        ValueError: When a digit is not one token on its own (then the read-out would be
            wrong, so it is refused rather than approximated).
    """
    return token_ids(tokenizer, DIGITS)


def readout_ids(tokenizer: Any, labels: Sequence[str] = DIGITS) -> list[int] | None:
    """:func:`token_ids`, or None (with a warning) when the tokenizer splits a label: then
    every completion's read-out is :data:`qponder.parsing.DIGITS_SPLIT`."""
    try:
        return token_ids(tokenizer, labels)
    except ValueError as exc:
        logger.warning("no expected-score read-out: %s", exc)
        return None


def read_out(
    tokens: Sequence[T],
    decode: Callable[[Sequence[T]], str],
    label_at: Callable[[int], str | None] | None,
    scores_at: Callable[[int], Mapping[str, float]] | None,
    reduce: Reduce = expected_with_reason,
) -> tuple[float | None, str | None]:
    """The read-out of one completion: the value at its answer position, or why there is
    none.

    The position is the first token after the last answer tag
    (:func:`qponder.answer_format.answer_token_index`); the token there must be one of the
    read labels, and the labels' scores there (logits or log-probabilities) are reduced to
    the value.

    Args:
        tokens: The completion's tokens: ids, or indices into a list of token strings.
        decode: The text of a run of ``tokens``.
        label_at: The label (e.g. ``"3"``) the token at a position is, or None when it is
            none of them; None when the labels are not single tokens of this tokenizer.
        scores_at: Label -> score at a position; None when the backend gave no scores.
        reduce: Scores -> ``(value, reason)``; by default the expected score over "1".."5".

    Returns:
        ``(value, None)``, or ``(None, reason)`` with one of
        :data:`~qponder.parsing.DIGITS_SPLIT`, :data:`~qponder.parsing.NO_LOGPROBS`,
        :data:`~qponder.parsing.NO_ANSWER_POSITION`, :data:`~qponder.parsing.NOT_A_DIGIT`
        or the reason of ``reduce`` (:data:`~qponder.parsing.NON_FINITE`, ...).
    """
    if label_at is None:
        return None, DIGITS_SPLIT
    if scores_at is None:
        return None, NO_LOGPROBS
    j = answer_token_index(tokens, decode)
    if j is None:
        return None, NO_ANSWER_POSITION
    if label_at(j) is None:
        return None, NOT_A_DIGIT
    return reduce(scores_at(j))


def read_out_logits(
    ids: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    read_ids: Sequence[int] | None,
    logits: Any,
    labels: Sequence[str] = DIGITS,
) -> tuple[float | None, str | None]:
    """:func:`read_out` over logits recorded during generation (transformers).

    Args:
        ids: The completion's token ids.
        decode: Their text.
        read_ids: The token ids of ``labels`` (None: the tokenizer splits them).
        logits: ``[steps, len(read_ids)]`` logits of those tokens, or None.
        labels: The labels read.
    """
    if not read_ids:
        return read_out(ids, decode, None, None)
    label_of = dict(zip(read_ids, labels, strict=True))
    if logits is None:  # nothing recorded: no digit can be read either
        return None, DIGITS_SPLIT
    return read_out(
        ids,
        decode,
        lambda j: label_of.get(ids[j]),
        lambda j: dict(zip(labels, logits[j].tolist(), strict=True)),
    )


def read_out_pieces(
    pieces: Sequence[str] | None,
    top_at: Callable[[int], Mapping[str, float]],
    labels: Sequence[str] = DIGITS,
) -> tuple[float | None, str | None]:
    """:func:`read_out` over token strings with log-probabilities (an OpenAI-compatible
    reply's ``logprobs.content``).

    Args:
        pieces: The completion's token strings, or None when the reply had no logprobs.
        top_at: Token string -> log-probability at a position (the top log-probabilities,
            with the chosen token's own).
        labels: The labels read (a piece counts with surrounding white space).
    """
    if not pieces:
        return None, NO_LOGPROBS
    return read_out(
        range(len(pieces)),
        lambda idx: "".join(pieces[i] for i in idx),
        lambda j: pieces[j].strip() if pieces[j].strip() in labels else None,
        top_at,
    )


def expected_scores(logits: Any, ids: list[int]) -> list[float | None]:
    """Expected score of each row of ``[..., vocab]`` logits at the answer position.

    Args:
        logits: A tensor whose last dimension is the vocabulary (or the five digit logits
            themselves, with ``ids = [0, 1, 2, 3, 4]``).
        ids: The ids of "1".."5" from :func:`score_token_ids`.

    Returns:
        One value per row (leading dimensions flattened); None where a logit is NaN or
        ``+inf``.

    Example:
        >>> import torch
        >>> logits = torch.full((1, 10), -1e4); logits[0, [3, 4]] = 0.0  # "4" and "5" alike
        >>> expected_scores(logits, [0, 1, 2, 3, 4])
        [4.5]
    """
    rows = logits[..., ids].float().reshape(-1, len(ids)).tolist()
    return [expected_from_digit_logits(row) for row in rows]
