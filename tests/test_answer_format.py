"""The answer format has one owner: the tags are spelled in qponder.answer_format alone, and
every layout question (blocks, rendering, the judge's continuation, read-out positions,
templates that open the reasoning) is answered there, for any kind of answer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from answer_tags import tagged

import qponder
from qponder import answer_format as af
from qponder.parsing import SCORE, parse_score
from qponder.prompts import DEFAULT_PROMPTS

ROOT = Path(qponder.__file__).resolve().parent
_TAG = re.compile(rf"<\s*/?\s*(?:{af.THINK}|{af.ANSWER})\b", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def test_no_module_but_the_owner_spells_a_tag():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "answer_format.py" and path.parent == ROOT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and _TAG.search(node.value)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_instructions_ask_for_the_tags_the_parser_reads():
    for text in (DEFAULT_PROMPTS.student_instruction, DEFAULT_PROMPTS.teacher_blind):
        assert af.REASONING_SPAN in text and af.ANSWER_SPAN in text
    assert f"inside {af.THINK_OPEN} {af.THINK_CLOSE}" == af.REASONING_SPAN
    # the teacher's example answer is one the score parser reads
    example = f"for example {af.render_answer('3.47')}"
    assert example in DEFAULT_PROMPTS.teacher_blind
    assert parse_score(example) == 3.47


def test_tag_tokens_are_the_four_tags():
    assert af.TAG_TOKENS == (af.THINK_OPEN, af.THINK_CLOSE, af.ANSWER_OPEN, af.ANSWER_CLOSE)
    spelled = (f"<{af.THINK}>", f"</{af.THINK}>", f"<{af.ANSWER}>", f"</{af.ANSWER}>")
    assert spelled == af.TAG_TOKENS


def test_render_and_split_are_inverse():
    text = af.render("  Sharp, clean.\nLow noise. ", "4.25")
    assert text.startswith(af.THINK_OPEN) and text.endswith(af.ANSWER_CLOSE)
    blocks = af.split_blocks(text)
    assert (blocks.reasoning, blocks.answer, blocks.well_formed) == (
        "Sharp, clean.\nLow noise.",
        "4.25",
        True,
    )


@pytest.mark.parametrize(
    ("text", "n_think", "n_answer", "well_formed"),
    [
        (tagged("<think>a</think><answer>3</answer>"), 1, 1, True),
        (tagged("<think>a</think><think>b</think><answer>3</answer>"), 2, 1, False),
        (tagged("<answer>3</answer><think>a</think>"), 1, 1, False),  # reasoning after the answer
        (tagged("<think>a</think><answer>3"), 1, 0, False),  # the answer never closes
        (tagged("<answer>no-number</answer>"), 0, 1, False),  # the layout, whatever the answer says
    ],
)
def test_split_counts_blocks(text, n_think, n_answer, well_formed):
    b = af.split_blocks(text)
    assert (b.n_think, b.n_answer, b.well_formed) == (n_think, n_answer, well_formed)


class _Choice:
    """An answer that is not a number: one of two image labels."""

    def read(self, answer):
        label = answer.strip().upper()
        return (label, None) if label in ("A", "B") else (None, "no_choice")

    def write(self, value):
        return value


def test_parse_takes_any_answer_kind():
    choice = _Choice()
    good = af.parse(af.render("A is sharper.", choice.write("A")), choice)
    assert (good.value, good.error, good.ok) == ("A", None, True)
    assert af.parse(af.render("Both blur.", "neither"), choice).error == "no_choice"
    assert af.parse("A is sharper.", choice).error == af.NO_ANSWER
    assert af.well_formed(af.render("x", "B"), choice)
    assert not af.well_formed(af.render("x", "B"), SCORE)  # "B" is no score


@pytest.mark.parametrize(
    "completion",
    [
        tagged("<think>x</think><answer>3</answer>"),  # a plain string
        {
            "role": "assistant",
            "content": tagged("<think>x</think><answer>3</answer>"),
        },  # one message
        [
            {"role": "assistant", "content": tagged("<think>x</think><answer>3</answer>")}
        ],  # TRL's list
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": tagged("<think>x</think>")},
                    {"type": "text", "text": tagged("<answer>3</answer>")},
                ],
            }
        ],  # parts
    ],
)
def test_conversational_completions_read_like_strings(completion):
    assert af.completion_text(completion) == tagged("<think>x</think><answer>3</answer>")
    assert parse_score(completion) == 3.0


def test_completion_text_rejects_other_types():
    with pytest.raises(TypeError):
        af.completion_text(3.5)


def test_completion_text_puts_parsed_reasoning_back():
    message = {
        "role": "assistant",
        "reasoning_content": "Sharp.",
        "content": tagged("<answer>4</answer>"),
    }
    assert af.completion_text([message]) == tagged("<think>\nSharp.\n</think>\n<answer>4</answer>")
    whole = tagged("<think>\nA.\n</think>\n<answer>3.50</answer>")
    plain = {"role": "assistant", "content": whole, "reasoning_content": "ignored"}
    assert af.completion_text(plain) == whole


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sharp and\n clean.", "Sharp and\n clean."),  # untouched: the writer's spacing kept
        (tagged("Sharp. <answer>5</answer> Clean."), "Sharp. Clean."),  # an answer block taken out
        (tagged("Sharp. <answer>5 and clean"), "Sharp."),  # ... and what follows an unclosed one
        (tagged("<think>Sharp.</think>"), "Sharp."),  # stray tags
    ],
)
def test_reasoning_text_holds_no_answer(text, expected):
    assert af.reasoning_text(text) == expected


def test_judge_continuation_ends_where_the_answer_starts():
    text = af.judge_continuation("Sharp and clean.  ")
    assert text == af.render("Sharp and clean.", "")[: -len(af.ANSWER_CLOSE)]
    assert af.answer_tag_end(text) == len(text)
    assert af.judge_continuation(tagged("Sharp. <answer>5</answer>")) == af.judge_continuation(
        "Sharp."
    )


def test_strip_tags_keeps_the_words():
    assert af.strip_tags(tagged("edges <think>are</answer> soft")).split() == [
        "edges",
        "are",
        "soft",
    ]


def test_opened_and_after_opened():
    assert af.opened_by_template(tagged("x<|im_start|>assistant\n<think>\n")) == tagged("<think>\n")
    assert af.opened_by_template(tagged("x<|im_start|>assistant\n<think>\n\n</think>\n\n")) == ""
    assert af.opened_by_template("x<|im_start|>assistant\n") == ""
    assert af.after_opened(tagged("<think>\n"), tagged("<think>\nA.\n</think>")) == tagged(
        "A.\n</think>"
    )
    assert af.after_opened("", tagged("<think>\nA.\n</think>")) == tagged("<think>\nA.\n</think>")


def test_answer_position_from_token_strings():
    tag = af.ANSWER_OPEN
    assert af.answer_piece_index([tag[:-1], ">\n", "4", ".", "2"]) == 2
    assert af.answer_piece_index([tag[:4], tag[4:], " ", "3"]) == 3  # the tag cut anywhere
    assert af.answer_piece_index([tag[:-1], ">3", ".5"]) is None  # digit glued to the tag
    assert af.answer_piece_index(["no", " tag"]) is None
