"""The expected-score read-out on a transformers model's logits (Q-Align style).

At the position where the answer's first digit is produced, the softmax restricted to the
tokens "1".."5" gives a distribution over the integer quality levels; its mean is the
expected score. The arithmetic is :func:`qponder.parsing.expected_from_logprobs`, shared
with every other backend and judge; this module only finds the digits in a tokenizer and
picks their logits out of a tensor.
"""

from __future__ import annotations

from typing import Any

from qponder.parsing import DIGITS, expected_from_digit_logits


def score_token_ids(tokenizer: Any) -> list[int]:
    """Return the token ids of "1".."5".

    Raises:
        ValueError: When a digit is not one token on its own (then the read-out would be
            wrong, so it is refused rather than approximated).
    """
    ids = []
    for digit in DIGITS:
        enc = tokenizer.encode(digit, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"the tokenizer splits the digit {digit!r} into {len(enc)} tokens; the "
                "expected-score read-out needs one token per digit"
            )
        ids.append(enc[0])
    return ids


def expected_scores(logits: Any, ids: list[int]) -> list[float]:
    """Expected score of each row of ``[..., vocab]`` logits at the answer position.

    Args:
        logits: A tensor whose last dimension is the vocabulary (or the five digit logits
            themselves, with ``ids = [0, 1, 2, 3, 4]``).
        ids: The ids of "1".."5" from :func:`score_token_ids`.

    Returns:
        One float per row (leading dimensions flattened).

    Example:
        >>> import torch
        >>> logits = torch.full((1, 10), -1e4); logits[0, [3, 4]] = 0.0  # "4" and "5" alike
        >>> expected_scores(logits, [0, 1, 2, 3, 4])
        [4.5]
    """
    rows = logits[..., ids].float().reshape(-1, len(ids)).tolist()
    return [expected_from_digit_logits(row) for row in rows]
