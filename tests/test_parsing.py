"""The one parser of model outputs (DESIGN §2): strict about where the score is, tolerant
about layout, and never a guess."""

from __future__ import annotations

import re

import pytest
from answer_tags import tagged
from hypothesis import assume, given
from hypothesis import strategies as st

from qponder import answer_format as af
from qponder.parsing import (
    AMBIGUOUS,
    NO_ANSWER,
    NO_NUMBER,
    NO_SCORE_KEY,
    OTHER_SCALE,
    OUT_OF_RANGE,
    format_answer,
    format_completion,
    is_well_formed,
    parse_completion,
    parse_score,
)

ANSWER_OPEN = re.compile(rf"<\s*{af.ANSWER}\s*>", re.IGNORECASE)


@pytest.mark.parametrize(
    ("completion", "score", "error"),
    [
        ("<think>\nsharp, clean\n</think>\n<answer>3.47</answer>", 3.47, None),  # the contract
        ("<think>ok</think><answer>4</answer>", 4.0, None),  # an integer, no new-lines
        ("<think>ok</think><answer> 2.5 </answer>", 2.5, None),  # spaces inside the answer
        ("<THINK>ok</THINK><ANSWER>2.5</ANSWER>", 2.5, None),  # upper-case tags
        ("< think >ok</ think ><  answer >2.5< / answer >", 2.5, None),  # spaces inside tags
        ("<answer>3.5/5</answer>", 3.5, None),  # "out of five" notation
        ("<answer>Score: 3.5</answer>", 3.5, None),  # a label before the number
        ('<answer>{"rating": 2.75}</answer>', 2.75, None),  # a JSON object
        ("<answer>1</answer>", 1.0, None),  # the lower bound is valid
        ("<answer>5.00</answer>", 5.0, None),  # the upper bound is valid
        ("<answer>5.</answer>", 5.0, None),  # a trailing decimal point
        ("<answer>2</answer> then <answer>4</answer>", 4.0, None),  # the LAST answer counts
        ("<answer>7</answer> fixed: <answer>4</answer>", 4.0, None),  # ... even after a bad one
        (
            "<answer>4</answer> oops <answer>9</answer>",
            None,
            OUT_OF_RANGE,
        ),  # ... and a bad last one
        ("<think>I would give 4.5</think>", None, NO_ANSWER),  # a number outside an answer block
        ("The quality is 3.2 out of 5.", None, NO_ANSWER),  # plain text: no guess
        ("<think>ok</think><answer>3.2", None, NO_ANSWER),  # an answer never closed
        ("", None, NO_ANSWER),  # empty output
        ("<think>ok</think><answer>good</answer>", None, NO_NUMBER),  # words only
        ("<think>ok</think><answer></answer>", None, NO_NUMBER),  # an empty answer
        ("<answer>0.99</answer>", None, OUT_OF_RANGE),  # just below the scale
        ("<answer>5.01</answer>", None, OUT_OF_RANGE),  # just above the scale
        ("<answer>-3</answer>", None, OUT_OF_RANGE),  # negative
        ("<answer>87</answer>", None, OUT_OF_RANGE),  # a 0-100 scale is not rescaled
        ("<answer>.5</answer>", None, OUT_OF_RANGE),  # a bare fraction below 1
        ("<answer>3.5 out of 5</answer>", 3.5, None),  # "out of 5" in words
        ("<answer>1e+20</answer>", None, OUT_OF_RANGE),  # an exponent is part of the number
        ("<answer>4.5e-1</answer>", None, OUT_OF_RANGE),  # ... so 0.45, not 4.5
        ("<answer>4/10</answer>", None, OTHER_SCALE),  # another scale is not rescaled
        ("<answer>7 out of 10</answer>", None, OTHER_SCALE),  # ... in words either
        ("<answer>3,5</answer>", None, AMBIGUOUS),  # a decimal comma is not guessed
        ("<answer>3-4</answer>", None, AMBIGUOUS),  # a range is not a score
        ("<answer>3 to 4</answer>", None, AMBIGUOUS),  # ... in words either
        ("<answer>3.5, fair</answer>", 3.5, None),  # a comma before words is fine
        # numbers inside keys or other tokens are never the score (peers' answer shapes)
        ('<answer>{"bbox_2d": [12, 40, 200, 300], "rating": 3.5}</answer>', 3.5, None),
        ('<answer>[{"bbox_2d": [1, 2, 3, 4], "rating": "4.25"}]</answer>', 4.25, None),
        ('<answer>{"bbox_2d": [12, 40, 200, 300]}</answer>', None, NO_SCORE_KEY),
        ('<answer>{"quality": "good"}</answer>', None, NO_NUMBER),
        ('<answer>{"Score": 7}</answer>', None, OUT_OF_RANGE),  # keys are case-insensitive
        ("<answer>{rating: 2.5}</answer>", 2.5, None),  # JSON-like, not JSON: the key still
        ("<answer>{grade2: 4}</answer>", None, NO_SCORE_KEY),  # ... and only a score key
        ("<answer>v2 model says</answer>", None, NO_NUMBER),  # a digit inside a word
        ("<answer>Q2: 3.5</answer>", 3.5, None),  # ... is skipped, the next number read
        ("<answer>3.5x</answer>", None, NO_NUMBER),  # a number glued to a word
        ("<answer>The score is 4.</answer>", 4.0, None),  # a full stop ends the number
        ("<answer>The quality score is 3.25.</answer>", 3.25, None),  # ... after decimals too
        ("<answer>3.25.</answer>", 3.25, None),  # ... with nothing before it
        ("<answer>Score: 3.25.</answer>", 3.25, None),  # ... after a label
        ("<answer>3.25...</answer>", 3.25, None),  # an ellipsis ends it
        ("<answer>3.25!</answer>", 3.25, None),  # ... and an exclamation mark
        ("<answer>I rate it 4.0. Sharp.</answer>", 4.0, None),  # a sentence follows
        ("<answer>4.5.1</answer>", None, NO_NUMBER),  # a version is not a score
        ("<answer>3..5</answer>", None, NO_NUMBER),  # ... nor a doubled point inside digits
        ("<answer>model 4.5.1 says 3.</answer>", 3.0, None),  # the version skipped, as Q2
    ],
)
def test_parse_completion_table(completion, score, error):
    completion = tagged(completion)  # the tables read <think>/<answer>: the format spells them
    parsed = parse_completion(completion)
    assert (parsed.score, parsed.error) == (score, error)
    assert parse_score(completion) == score
    assert parsed.ok == (score is not None)


@pytest.mark.parametrize(
    ("completion", "reasoning"),
    [
        ("<think>\n  blur, noise \n</think><answer>2</answer>", "blur, noise"),  # stripped
        ("<think>a</think> x <think>b</think><answer>2</answer>", "a\nb"),  # blocks joined
        ("soft edges <answer>2</answer>", "soft edges"),  # no think block: text before the answer
        ("<think>unclosed reasoning <answer>2</answer>", "unclosed reasoning"),  # open tag dropped
        ("<answer>2</answer>", ""),  # nothing but the answer
        ("<think>sharp <answer>5</answer> clean</think><answer>2</answer>", "sharp clean"),
        ("<think>sharp <answer>5 clean</think><answer>2</answer>", "sharp"),  # never closed
    ],
)
def test_reasoning_never_contains_the_answer(completion, reasoning):
    assert parse_completion(tagged(completion)).reasoning == reasoning


@pytest.mark.parametrize(
    ("completion", "well_formed"),
    [
        ("<think>a</think><answer>3</answer>", True),  # the shape the format reward wants
        ("<think>a</think>\n\n<answer>3.5/5</answer>\n", True),  # layout and "/5" tolerated
        ("<answer>3</answer>", False),  # no reasoning block
        ("<think>a</think><think>b</think><answer>3</answer>", False),  # two think blocks
        ("<think>a</think><answer>3</answer><answer>3</answer>", False),  # two answers
        ("<answer>3</answer><think>a</think>", False),  # reasoning after the answer
        ("<think>a</think><answer>6</answer>", False),  # score outside [1, 5]
    ],
)
def test_is_well_formed_table(completion, well_formed):
    assert is_well_formed(tagged(completion)) is well_formed


def test_format_answer_refuses_scores_outside_the_scale():
    assert format_answer(3.4712) == tagged("<answer>3.47</answer>")
    for bad in (0.99, 5.01, float("nan")):
        with pytest.raises(ValueError):
            format_answer(bad)


@given(st.floats(min_value=1.0, max_value=5.0), st.text(min_size=1).filter(lambda t: t.strip()))
def test_formatted_completions_round_trip(score, reasoning):
    assume(not ANSWER_OPEN.search(reasoning) and "<" not in reasoning)
    text = format_completion(reasoning, score)
    parsed = parse_completion(text)
    assert parsed.score == float(f"{score:.2f}")
    assert abs(parsed.score - score) <= 0.005 + 1e-12
    assert parsed.reasoning == reasoning.strip()
    assert is_well_formed(text)


@given(st.text())
def test_text_without_an_answer_block_gives_none(text):
    assume(not ANSWER_OPEN.search(text))
    parsed = parse_completion(text)
    assert parsed.score is None and parsed.error == NO_ANSWER


@given(
    st.one_of(
        st.floats(max_value=0.9999, min_value=-1e6), st.floats(min_value=5.0001, max_value=1e6)
    ),
    st.sampled_from(["{:.4f}", "{:.2f}", "{:.1f}", "{:.0f}"]),
)
def test_numbers_outside_the_scale_give_none(value, fmt):
    rendered = fmt.format(value)
    assume(not 1.0 <= float(rendered) <= 5.0)  # rounding can land on the scale's edge
    parsed = parse_completion(tagged(f"<think>ok</think><answer>{rendered}</answer>"))
    assert parsed.score is None and parsed.error == OUT_OF_RANGE


def test_parse_failures_are_every_failure_reason_and_failures_are_classified():
    from qponder.parsing import PARSE_FAILURES, failure_kind

    assert {
        NO_ANSWER,
        NO_NUMBER,
        OUT_OF_RANGE,
        OTHER_SCALE,
        AMBIGUOUS,
        NO_SCORE_KEY,
    } == PARSE_FAILURES
    assert [
        failure_kind(e) for e in (None, OTHER_SCALE, "bad_image:empty", "request_failed: x")
    ] == [
        None,
        "parse",
        "bad_image",
        "request",
    ]


# --------------------------------------------------------------------------- read-out arithmetic


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_logit_gives_no_expected_score_and_says_why(bad):
    """Dropping the bad digit would read a distribution that is not there: [nan, 0, 0, 0, 0]
    read 3.5, and [inf, 0, 0, 0, 0] read 3.5 where its limit is 1.0."""
    from qponder.parsing import (
        NON_FINITE,
        expected_from_digit_logits,
        expected_from_logprobs,
        expected_with_reason,
    )

    assert expected_from_digit_logits([bad, 0.0, 0.0, 0.0, 0.0]) is None
    assert expected_from_logprobs({"4": bad, "5": -0.5}) is None
    assert expected_with_reason({"1": bad, "2": 0.0, "x": 1.0}) == (None, NON_FINITE)
    assert expected_with_reason({"x": bad}) == (None, "no_logprobs")  # no digit read at all


def test_a_digit_at_minus_infinity_has_probability_zero():
    from qponder.parsing import NON_FINITE, expected_with_reason

    inf = float("inf")
    assert expected_with_reason({"1": -inf, "4": 0.0, "5": 0.0}) == (4.5, None)
    assert expected_with_reason({"1": -inf, "2": -inf}) == (None, NON_FINITE)  # no mass left
