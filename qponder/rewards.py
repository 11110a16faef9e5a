"""GRPO rewards (DESIGN §4): format, score accuracy, reasoning consistency, ranking.

Each reward is a function with the signature TRL's ``GRPOTrainer`` calls,
``f(completions, **columns) -> list[float | None]``: one value per completion; dataset
columns such as ``mos`` and ``id`` arrive as keyword lists aligned with ``completions``.
A completion whose score cannot be parsed gets 0.0 from every score-based reward; ``None``
(TRL: skip this reward for that sample) is used only where a reward is undefined, e.g. a
ranking with no other image in the batch.

The paper does not publish its reward formulas: the Gaussian score reward and the
judge-based consistency reward are our reading of "jointly optimise scoring accuracy and
reasoning consistency" (see the README).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from qponder.answer_format import completion_text
from qponder.parsing import is_well_formed, parse_completion, parse_score

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float | None]]


# --------------------------------------------------------------------------- format


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when a completion has one ``<think>`` block, then one ``<answer>`` with a valid
    score in [1, 5]; else 0.0. Deliberately no stricter (no exact new-lines).

    Example:
        >>> format_reward(["<think>sharp</think><answer>4</answer>", "<answer>4</answer>"])
        [1.0, 0.0]
    """
    return [1.0 if is_well_formed(c) else 0.0 for c in completions]


# --------------------------------------------------------------------------- score accuracy


def gaussian_score(score: float, target: float, sigma: float) -> float:
    """``exp(-(score - target)^2 / (2 sigma^2))``."""
    return math.exp(-((score - target) ** 2) / (2.0 * sigma**2))


def laplace_score(score: float, target: float, b: float) -> float:
    """``exp(-|score - target| / b)``."""
    return math.exp(-abs(score - target) / b)


def threshold_score(score: float, target: float, eps: float) -> float:
    """Q-Insight's reward ``1[|score - target| < eps]``."""
    return 1.0 if abs(score - target) < eps else 0.0


# The one list of score-reward kinds: kind -> (kernel, the name of its width parameter).
# config.ScoreRewardConfig validates grpo.score.kind against SCORE_KINDS.
_KERNELS: dict[str, tuple[Callable[[float, float, float], float], str]] = {
    "gaussian": (gaussian_score, "sigma"),
    "laplace": (laplace_score, "b"),
    "threshold": (threshold_score, "eps"),
}
SCORE_KINDS: tuple[str, ...] = tuple(_KERNELS)


def _accuracy(kind: str, sigma: float, b: float, eps: float) -> Callable[[float, float], float]:
    if kind not in _KERNELS:
        known = f"{', '.join(SCORE_KINDS[:-1])} or {SCORE_KINDS[-1]}"
        raise ValueError(f"score reward: unknown kind {kind!r}; use {known}")
    kernel, width_name = _KERNELS[kind]
    width = {"sigma": sigma, "b": b, "eps": eps}[width_name]
    if width <= 0:
        raise ValueError(f"score reward: {width_name} must be > 0")
    return lambda s, t: kernel(s, t, width)


def score_reward(
    completions: Sequence[Any],
    mos: Sequence[float],
    kind: str = "gaussian",
    sigma: float = 0.5,
    b: float = 0.5,
    eps: float = 0.35,
    **kwargs: Any,
) -> list[float]:
    """Score accuracy against the human MOS (on [1, 5]); 0.0 for an unparsable answer.

    Args:
        completions: Model completions.
        mos: The MOS of each completion's image.
        kind: ``"gaussian"`` (default), ``"laplace"`` or ``"threshold"``.
        sigma: Width of the Gaussian.
        b: Scale of the Laplace kernel.
        eps: Tolerance of the threshold reward (Q-Insight uses 0.35).

    Example:
        >>> score_reward(["<answer>3.5</answer>", "<answer>x</answer>"], mos=[3.5, 3.5])
        [1.0, 0.0]
        >>> score_reward(["<answer>4.0</answer>"], mos=[3.5], kind="threshold")
        [0.0]
    """
    if len(mos) != len(completions):
        raise ValueError(f"score reward: {len(completions)} completions but {len(mos)} mos values")
    accuracy = _accuracy(kind, sigma, b, eps)
    out = []
    for completion, target in zip(completions, mos, strict=True):
        s = parse_score(completion)
        out.append(0.0 if s is None else accuracy(s, float(target)))
    return out


def get_score_reward(
    kind: str = "gaussian", sigma: float = 0.5, b: float = 0.5, eps: float = 0.35
) -> RewardFunc:
    """Return :func:`score_reward` with its parameters bound, named ``score`` for logging."""
    _accuracy(kind, sigma, b, eps)  # validate now, not at the first training step

    def score(completions: Sequence[Any], mos: Sequence[float], **kwargs: Any) -> list[float]:
        return score_reward(completions, mos, kind=kind, sigma=sigma, b=b, eps=eps)

    return score


# --------------------------------------------------------------------------- consistency


def consistency_values(
    scores: Sequence[float | None], implied: Sequence[float | None], sigma: float
) -> list[float]:
    """``exp(-(s - s_judge)^2 / (2 sigma^2))``; 0.0 where either score is missing.

    Example:
        >>> consistency_values([3.0, None, 4.0], [3.0, 2.0, None], sigma=0.5)
        [1.0, 0.0, 0.0]
    """
    return [
        0.0 if s is None or j is None else gaussian_score(s, j, sigma)
        for s, j in zip(scores, implied, strict=True)
    ]


class ConsistencyReward:
    """Reasoning-consistency reward: the answer must agree with what the reasoning says.

    A frozen judge reads each completion's reasoning with the answer removed (and without
    the image) and gives the score it implies, ``s_judge``; the reward is
    ``exp(-(s - s_judge)^2 / (2 sigma^2))``, 0.0 when the answer does not parse.

    Args:
        judge: Anything with ``implied_scores(texts) -> scores`` (see
            :mod:`qponder.models.judge`).
        sigma: Width of the Gaussian, on the [1, 5] scale.

    Attributes:
        last_gap: Mean |answer - judge| of the last call (for logging).
    """

    def __init__(self, judge: _SupportsJudge, sigma: float = 0.5) -> None:
        if sigma <= 0:
            raise ValueError("consistency reward: sigma must be > 0")
        self.judge = judge
        self.sigma = sigma
        self.last_gap: float | None = None
        self.__name__ = "consistency"  # TRL names the reward's log entries after this

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        parsed = [parse_completion(c) for c in completions]
        todo = [i for i, p in enumerate(parsed) if p.ok]
        implied: list[float | None] = [None] * len(parsed)
        if todo:
            texts = [parsed[i].reasoning for i in todo]  # no answer, no tags: see the judge
            for i, value in zip(todo, self.judge.implied_scores(texts), strict=True):
                implied[i] = value
        scores = [p.score for p in parsed]
        gaps = [
            abs(s - j)
            for s, j in zip(scores, implied, strict=True)
            if s is not None and j is not None
        ]
        self.last_gap = sum(gaps) / len(gaps) if gaps else None
        return consistency_values(scores, implied, self.sigma)


# --------------------------------------------------------------------------- ranking


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def ranking_reward(
    completions: Sequence[Any],
    mos: Sequence[float],
    id: Sequence[Any] | None = None,
    **kwargs: Any,  # noqa: A002
) -> list[float | None]:
    """Thurstone fidelity reward across the images of a batch (VisualQuality-R1 style).

    Rollouts are grouped by image through the ``id`` column (required). For
    rollout k of image i and every other image z with valid rollouts:
    ``p = Phi((q_k(i) - mean_z) / sqrt(var_i + var_z + 1e-6))`` with the groups' sample
    variances, ``gt = 1 if mos_i > mos_z, 0.5 if equal, else 0``, and the reward is the mean
    over z of ``sqrt(p gt) + sqrt((1 - p)(1 - gt))``. An unparsable rollout gets 0.0; with no
    other image in the batch the reward is undefined (``None``).

    Example:
        >>> r = ranking_reward(["<answer>4</answer>", "<answer>2</answer>"], mos=[4.5, 1.5], id=["a", "b"])
        >>> [round(x, 4) for x in r]
        [1.0, 1.0]
    """
    if id is None:
        raise ValueError(
            "ranking reward: needs the dataset's 'id' column to group rollouts by image"
        )
    keys = list(id)
    scores = [parse_score(c) for c in completions]
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    stats: dict[Any, tuple[float, float, float]] = {}  # key -> (mean, var, mos)
    for key, idx in groups.items():
        valid = [scores[i] for i in idx if scores[i] is not None]
        if valid:
            mean, var = _mean_var(valid)
            stats[key] = (mean, var, float(mos[idx[0]]))
    out: list[float | None] = []
    for i, key in enumerate(keys):
        others = [k for k in stats if k != key]
        if not others:
            out.append(None)
            continue
        if scores[i] is None:
            out.append(0.0)
            continue
        var_i = stats[key][1] if key in stats else 0.0
        total = 0.0
        for z in others:
            mean_z, var_z, mos_z = stats[z]
            p = _normal_cdf((scores[i] - mean_z) / math.sqrt(var_i + var_z + 1e-6))
            gt = 1.0 if mos[i] > mos_z else 0.5 if mos[i] == mos_z else 0.0
            total += math.sqrt(p * gt) + math.sqrt((1.0 - p) * (1.0 - gt))
        out.append(total / len(others))
    return out


# --------------------------------------------------------------------------- assembly


def _named(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        return func(completions, **kwargs)

    reward.__name__ = reward.__qualname__ = name
    return reward


class _SupportsJudge(Protocol):
    def implied_scores(self, reasonings: Sequence[str]) -> list[float | None]: ...


def _format_factory(grpo_cfg: Any, judge: Any) -> RewardFunc:
    return _named(format_reward, "format")


def _score_factory(grpo_cfg: Any, judge: Any) -> RewardFunc:
    sc = grpo_cfg.score
    return get_score_reward(sc.kind, sc.sigma, sc.b, sc.eps)


def _consistency_factory(grpo_cfg: Any, judge: Any) -> RewardFunc:
    if judge is None:
        raise ValueError("the consistency reward needs a judge (qponder.models.judge)")
    return ConsistencyReward(judge, sigma=grpo_cfg.consistency.sigma)


def _ranking_factory(grpo_cfg: Any, judge: Any) -> RewardFunc:
    return _named(ranking_reward, "ranking")


# The one list of reward names: name -> factory(grpo section, judge) -> reward function.
REWARDS: dict[str, Callable[[Any, Any], RewardFunc]] = {
    "format": _format_factory,
    "score": _score_factory,
    "consistency": _consistency_factory,
    "ranking": _ranking_factory,
}
REWARD_NAMES: tuple[str, ...] = tuple(REWARDS)
# Rewards that read the reasoning through a judge model.
JUDGED_REWARDS: frozenset[str] = frozenset({"consistency"})


def needs_judge(rewards: dict[str, float]) -> bool:
    """Whether a ``grpo.rewards`` mapping gives weight to a reward that needs a judge."""
    return any(weight and name in JUDGED_REWARDS for name, weight in rewards.items())


def reward_weights(rewards: dict[str, float]) -> list[float]:
    """The weights TRL gets, in the order of :func:`build_reward_functions` (zeros left out)."""
    return [float(w) for w in rewards.values() if w]


def build_reward_functions(
    grpo_cfg: Any, judge: _SupportsJudge | None = None
) -> tuple[list[RewardFunc], list[float]]:
    """Return the reward functions of a GRPO config and their weights, for GRPOTrainer.

    Rewards with weight 0 are left out. Each function's ``__name__`` is the reward's name
    (``format``, ``score``, ``consistency``, ``ranking``), which TRL uses in its logs.

    Args:
        grpo_cfg: A :class:`qponder.config.GRPORunConfig` (its ``rewards`` are the only
            weights; validated against :data:`REWARD_NAMES`).
        judge: The consistency judge (:mod:`qponder.models.judge`), needed when
            :func:`needs_judge` says so.
    """
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    for name, weight in grpo_cfg.rewards.items():
        if not weight:
            continue
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; known: {list(REWARD_NAMES)}")
        funcs.append(REWARDS[name](grpo_cfg, judge))
        weights.append(float(weight))
    logger.info(
        "rewards: %s", ", ".join(f"{f.__name__}={w:g}" for f, w in zip(funcs, weights, strict=True))
    )
    return funcs, weights


def with_opened(funcs: list[RewardFunc], opened: str) -> list[RewardFunc]:
    """The reward functions, reading each completion with ``opened`` in front: the start of
    the output format that the policy's chat template wrote into the prompt (Qwen3.5's
    reasoning block; see :func:`qponder.answer_format.opened_by_template`). Names are kept, for TRL's
    logs. Unchanged when ``opened`` is empty.
    """
    if not opened:
        return funcs

    def wrap(func: RewardFunc) -> RewardFunc:
        def reward(completions: list, **kwargs: Any) -> list[float | None]:
            return func([opened + completion_text(c) for c in completions], **kwargs)

        reward.__name__ = func.__name__
        return reward

    return [wrap(f) for f in funcs]
