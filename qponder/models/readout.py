"""Reading a score distribution off a model's logits (Q-Align style).

At the position where the answer's first digit is produced, the softmax restricted to the
tokens "1".."5" gives a distribution over the integer quality levels; its mean is the
expected score. Inference reports it next to the parsed score, and the consistency judge
uses it to read the score that a piece of reasoning implies, in one forward pass.
"""

from __future__ import annotations

import torch

SCORE_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


def score_token_ids(tokenizer) -> list[int]:
    """Return the token ids of "1".."5".

    Raises:
        ValueError: When a digit is not one token on its own (then the read-out would be
            wrong, so it is refused rather than approximated).
    """
    ids = []
    for level in SCORE_LEVELS:
        enc = tokenizer.encode(str(level), add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"the tokenizer splits the digit {level!r} into {len(enc)} tokens; the "
                "expected-score read-out needs one token per digit"
            )
        ids.append(enc[0])
    return ids


def level_probs(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """Softmax over the score tokens only.

    Args:
        logits: ``[..., vocab]`` logits at the answer position.
        ids: The ids of "1".."5" from :func:`score_token_ids`.

    Returns:
        ``[..., 5]`` probabilities of the levels 1..5.
    """
    return torch.softmax(logits[..., ids].float(), dim=-1)


def expected_score(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """Probability-weighted mean level, ``sum_k p(k) * k`` over k = 1..5.

    Example:
        >>> logits = torch.full((10,), -1e4); logits[[3, 4]] = 0.0  # "4" and "5" equally likely
        >>> round(float(expected_score(logits, [0, 1, 2, 3, 4])), 6)
        4.5
    """
    levels = torch.tensor(SCORE_LEVELS, dtype=torch.float32, device=logits.device)
    return (level_probs(logits, ids) * levels).sum(-1)
