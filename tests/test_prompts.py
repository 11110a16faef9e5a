"""Prompts: every wording is traceable to a version, the teacher is asked about every
aspect and for the output contract, and the student's prompt has the shape TRL expects."""

from __future__ import annotations

import dataclasses

import pytest
from answer_tags import tagged

from qponder.prompts import (
    ASPECTS,
    DEFAULT_PROMPTS,
    PROMPT_VERSION,
    PromptSet,
    load_prompts,
    student_messages,
    teacher_prompt,
)


def test_defaults_carry_the_current_version():
    assert load_prompts() == DEFAULT_PROMPTS and load_prompts().version == PROMPT_VERSION
    assert DEFAULT_PROMPTS.to_dict()["version"] == PROMPT_VERSION
    assert PromptSet(**DEFAULT_PROMPTS.to_dict()) == DEFAULT_PROMPTS


def test_a_new_wording_needs_a_new_version():
    with pytest.raises(ValueError, match="version"):
        load_prompts({"student_instruction": "Rate this image."})
    prompts = load_prompts({"student_instruction": "Rate this image.", "version": "mine-v1"})
    assert prompts.student_instruction == "Rate this image." and prompts.version == "mine-v1"
    # restating a default wording changes nothing, so it needs no new version
    assert load_prompts({"teacher_system": DEFAULT_PROMPTS.teacher_system}) == DEFAULT_PROMPTS


def test_unknown_fields_and_a_guided_prompt_without_the_mos_are_refused():
    with pytest.raises(ValueError, match="unknown field"):
        load_prompts({"teacher_prompt": "x"})
    with pytest.raises(ValueError, match="mos"):
        load_prompts({"teacher_guided": "Explain the score.", "version": "v2"})


def test_prompt_sets_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PROMPTS.version = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["student_instruction", "teacher_blind", "teacher_guided"])
def test_every_aspect_and_the_output_contract_are_asked_for(field):
    text = getattr(DEFAULT_PROMPTS, field).lower()
    for aspect in ASPECTS.values():
        assert aspect.split()[0] in text, aspect  # sharpness, noise, ..., content
    assert tagged("<think>") in text and tagged("<answer>") in text
    assert "1" in text and "5" in text  # the scale


def test_blind_and_guided_teacher_prompts():
    assert teacher_prompt(DEFAULT_PROMPTS, "blind") == DEFAULT_PROMPTS.teacher_blind
    assert teacher_prompt(DEFAULT_PROMPTS, "blind", mos=3.0) == DEFAULT_PROMPTS.teacher_blind
    guided = teacher_prompt(DEFAULT_PROMPTS, "guided", mos=3.456)
    assert "3.46" in guided and "{mos" not in guided
    assert "3.46" not in DEFAULT_PROMPTS.teacher_blind  # the blind prompt never leaks the MOS


def test_teacher_prompt_errors():
    with pytest.raises(ValueError, match="MOS"):
        teacher_prompt(DEFAULT_PROMPTS, "guided")
    with pytest.raises(ValueError, match="unknown teacher mode"):
        teacher_prompt(DEFAULT_PROMPTS, "oracle")


def test_student_messages_put_the_image_before_the_instruction():
    (turn,) = student_messages()
    assert turn["role"] == "user"
    assert turn["content"] == [
        {"type": "image"},
        {"type": "text", "text": DEFAULT_PROMPTS.student_instruction},
    ]
    (text_only,) = student_messages("Rate it.", with_image=False)
    assert text_only["content"] == [{"type": "text", "text": "Rate it."}]
