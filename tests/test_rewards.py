"""Rewards return exactly the numbers of their formulas (DESIGN §4)."""

from __future__ import annotations

import math

import pytest
from answer_tags import tagged

from qponder.answer_format import render
from qponder.config import GRPORunConfig
from qponder.models.judge import Judge
from qponder.rewards import (
    ConsistencyReward,
    build_reward_functions,
    consistency_values,
    format_reward,
    get_score_reward,
    ranking_reward,
    score_reward,
)

GOOD = tagged("<think>\nsharp, clean, well exposed\n</think>\n<answer>4.20</answer>")


def conv(text: str) -> list[dict]:
    """A completion in TRL's conversational form."""
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, 1.0),  # the contract's shape
        (tagged("<think>ok</think><answer>3</answer>"), 1.0),  # no new-lines needed
        (tagged("  <think> ok </think>\n\n  <answer> 3.5/5 </answer>  "), 1.0),  # white space, "/5"
        (tagged("<answer>3</answer>"), 0.0),  # no reasoning block
        (tagged("<think>ok</think>"), 0.0),  # no answer
        (tagged("<think>ok</think><answer>6</answer>"), 0.0),  # score outside [1, 5]
        (tagged("<think>ok</think><answer>good</answer>"), 0.0),  # no number
        (tagged("<think>a</think><think>b</think><answer>3</answer>"), 0.0),  # two think blocks
        (tagged("<think>a</think><answer>3</answer><answer>4</answer>"), 0.0),  # two answers
        (tagged("<answer>3</answer><think>a</think>"), 0.0),  # answer before reasoning
        (tagged("<think>unclosed <answer>3</answer>"), 0.0),  # think never closed
    ],
)
def test_format_reward_table(completion, expected):
    assert format_reward([completion]) == [expected]
    assert format_reward([conv(completion)]) == [expected]


@pytest.mark.parametrize(
    ("kind", "params", "score", "mos", "expected"),
    [
        ("gaussian", {"sigma": 0.5}, 3.0, 3.0, 1.0),
        ("gaussian", {"sigma": 0.5}, 3.5, 3.0, math.exp(-0.25 / 0.5)),
        ("gaussian", {"sigma": 1.0}, 1.0, 4.0, math.exp(-4.5)),
        ("laplace", {"b": 0.5}, 3.5, 3.0, math.exp(-1.0)),
        ("laplace", {"b": 2.0}, 1.0, 5.0, math.exp(-2.0)),
        ("threshold", {"eps": 0.35}, 3.34, 3.0, 1.0),
        ("threshold", {"eps": 0.35}, 3.35, 3.0, 0.0),  # strict inequality
        ("threshold", {"eps": 0.35}, 2.70, 3.0, 1.0),
    ],
)
def test_score_reward_formulas(kind, params, score, mos, expected):
    completion = tagged(f"<think>x</think><answer>{score}</answer>")
    (value,) = score_reward([completion], mos=[mos], kind=kind, **params)
    assert value == pytest.approx(expected, abs=1e-12)
    (bound,) = get_score_reward(kind, **params)([conv(completion)], mos=[mos])
    assert bound == value


def test_score_reward_gives_zero_for_unparsable_answers():
    completions = [
        tagged("<think>x</think>"),
        tagged("<answer>none</answer>"),
        tagged("<answer>0.5</answer>"),
    ]
    assert score_reward(completions, mos=[3.0, 3.0, 3.0]) == [0.0, 0.0, 0.0]


def test_score_reward_rejects_bad_parameters_at_construction():
    with pytest.raises(ValueError, match="sigma"):
        get_score_reward("gaussian", sigma=0.0)
    with pytest.raises(ValueError, match="unknown kind"):
        get_score_reward("huber")


def test_score_reward_named_for_trl_logging():
    assert get_score_reward().__name__ == "score"


class TableJudge(Judge):  # a judge with known answers
    """Returns a fixed implied score per reasoning text and records what it read."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.read = []

    def _implied_scores(self, reasonings):
        self.read.extend(reasonings)
        return [self.table.get(r) for r in reasonings]


def test_consistency_reward_compares_answer_with_judge_reading():
    a, b = "very blurry", "clean"
    judge = TableJudge({a: 2.0, b: 4.5})
    reward = ConsistencyReward(judge, sigma=0.5)
    values = reward([conv(render(a, "2.00")), render(b, "3.50"), "no answer"])
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(math.exp(-1.0 / (2 * 0.25)))
    assert values[2] == 0.0  # unparsable: 0.0, and the judge is not asked
    assert judge.read == [a, b]  # the judge never sees the answer
    assert reward.last_gap == pytest.approx(0.5)
    assert reward.__name__ == "consistency"
    assert judge.stats.calls == 1 and judge.stats.texts == 2


@pytest.mark.parametrize(
    "completion",
    [
        tagged(
            "<think>\nSoft edges. <answer>5</answer> Noisy.\n</think>\n<answer>5</answer>"
        ),  # inside
        tagged(
            "<think>\nSoft edges. Noisy.\n</think>\n<answer>5</answer>\n<answer>5</answer>"
        ),  # after
        tagged(
            "<think>\nSoft edges. <answer>5 Noisy.\n</think>\n<answer>5</answer>"
        ),  # never closed
    ],
)
def test_the_judge_never_reads_an_answer_the_completion_wrote_early(completion):
    # an answer block written into or after the reasoning would show the judge the score,
    # which it would then copy: a way to earn the consistency reward without consistency
    judge = TableJudge({})
    ConsistencyReward(judge)([completion])
    (read,) = judge.read
    assert "5" not in read and "answer" not in read and "think" not in read
    assert read.startswith("Soft edges.")


def test_consistency_values_missing_judge_reading_gives_zero():
    assert consistency_values([3.0, 3.0], [None, 3.5], sigma=1.0) == [
        0.0,
        pytest.approx(math.exp(-0.125)),
    ]


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_ranking_reward_matches_thurstone_fidelity_formula():
    # image a: two rollouts 4.0 and 3.0 (mean 3.5, sample var 0.5), MOS 4
    # image b: two rollouts 2.0 and 2.0 (mean 2.0, var 0.0), MOS 2
    completions = [tagged(f"<answer>{s}</answer>") for s in (4.0, 3.0, 2.0, 2.0)]
    values = ranking_reward(completions, mos=[4, 4, 2, 2], id=["a", "a", "b", "b"])
    p_a1 = _phi((4.0 - 2.0) / math.sqrt(0.5 + 0.0 + 1e-6))  # gt = 1
    p_a2 = _phi((3.0 - 2.0) / math.sqrt(0.5 + 1e-6))
    p_b = _phi((2.0 - 3.5) / math.sqrt(0.0 + 0.5 + 1e-6))  # gt = 0
    assert values[0] == pytest.approx(math.sqrt(p_a1))
    assert values[1] == pytest.approx(math.sqrt(p_a2))
    assert values[2] == pytest.approx(math.sqrt(1 - p_b))
    assert values[3] == pytest.approx(math.sqrt(1 - p_b))


def test_ranking_reward_equal_mos_uses_half_ground_truth():
    values = ranking_reward(
        [tagged("<answer>3</answer>"), tagged("<answer>3</answer>")], mos=[3, 3], id=[1, 2]
    )
    p = _phi(0.0)
    assert values == [pytest.approx(2 * math.sqrt(p * 0.5))] * 2


def test_ranking_reward_undefined_without_other_images_and_zero_when_unparsable():
    assert ranking_reward(
        [tagged("<answer>3</answer>"), tagged("<answer>4</answer>")], mos=[3, 3], id=["a", "a"]
    ) == [None, None]
    values = ranking_reward(
        [tagged("<answer>x</answer>"), tagged("<answer>4</answer>"), tagged("<answer>2</answer>")],
        mos=[4, 4, 2],
        id=["a", "a", "b"],
    )
    assert values[0] == 0.0 and values[1] > 0.5


def test_ranking_reward_requires_ids():
    with pytest.raises(ValueError, match="id"):
        ranking_reward([tagged("<answer>3</answer>")], mos=[3])


def test_build_reward_functions_names_weights_and_drops_zero_weights():
    cfg = GRPORunConfig(rewards={"format": 0.5, "score": 1.0, "consistency": 0.0, "ranking": 2.0})
    funcs, weights = build_reward_functions(cfg)
    assert [f.__name__ for f in funcs] == ["format", "score", "ranking"]
    assert weights == [0.5, 1.0, 2.0]
    out = funcs[1]([GOOD], mos=[4.2], id=["x"], prompts=["p"], trainer_state=None)
    assert out == [pytest.approx(1.0)]


def test_build_reward_functions_uses_given_judge():
    cfg = GRPORunConfig(rewards={"consistency": 1.0})
    judge = TableJudge({"sharp, clean, well exposed": 4.2})
    funcs, _ = build_reward_functions(cfg, judge)
    assert funcs[0]([GOOD]) == [pytest.approx(1.0)]


def test_the_consistency_reward_without_a_judge_is_refused():
    cfg = GRPORunConfig(rewards={"consistency": 1.0})
    with pytest.raises(ValueError, match="needs a judge"):
        build_reward_functions(cfg)


def test_every_registered_reward_builds_under_its_own_name_and_nothing_else_is_accepted():
    from qponder.config import ConfigError
    from qponder.rewards import REWARDS, needs_judge

    judge = TableJudge({})
    for name in REWARDS:  # TRL logs rewards/<name>/mean: the registry name must be the log name
        cfg = GRPORunConfig(rewards={name: 1.0})
        (func,), weights = build_reward_functions(cfg, judge)
        assert func.__name__ == name and weights == [1.0]
    with pytest.raises(ConfigError, match="grpo.rewards.fluency: unknown reward"):
        GRPORunConfig(rewards={"fluency": 1.0})
    assert needs_judge({"consistency": 0.5}) and not needs_judge({"consistency": 0.0})
