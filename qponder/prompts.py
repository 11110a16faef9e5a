"""Instructions for the student and expert multi-aspect prompts for the teacher.

Every prompt set carries a version string that distillation records in each cold-start
row, so a dataset can always be traced to the exact wording that produced it. A recipe
can override any field from YAML (``prompts:`` section); overriding without changing the
version is refused, because two different wordings must never share a version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from qponder.answer_format import ANSWER_SPAN, REASONING_SPAN, render_answer

PROMPT_VERSION = "qponder-prompts-v1"

# The aspects a quality reasoning covers, in order: key -> how the prompts name it. The one
# list of aspects: the teacher's guide, the student instruction and the synthetic
# reasoning (qponder.data.synthetic_reasoning) follow it.
ASPECTS: dict[str, str] = {
    "sharpness": "sharpness and focus",
    "noise": "noise",
    "exposure": "exposure",
    "contrast": "contrast",
    "colour": "colour",
    "artefacts": "compression and other artefacts",
    "content": "content and composition",
}

STUDENT_INSTRUCTION = (
    f"Rate the visual quality of this image. First reason {REASONING_SPAN} about "
    "sharpness and focus, noise, exposure, contrast, colour, compression and other "
    "artefacts, and content. Then give the overall quality score, a number from 1 (bad) "
    f"to 5 (excellent) with up to two decimals, {ANSWER_SPAN}."
)

TEACHER_SYSTEM = (
    "You are an expert in image quality assessment with years of experience rating "
    "photographs for subjective quality studies. You judge the perceptual quality of the "
    "image as a typical viewer would, not its aesthetic appeal or its subject."
)

_ASPECT_GUIDE = (
    "Examine the image aspect by aspect:\n"
    "1. Sharpness and focus: is the subject in focus? Is there motion blur or camera shake?\n"
    "2. Noise: is there sensor noise, grain or impulse noise, and where?\n"
    "3. Exposure: are highlights blown out or shadows crushed? Is it too dark or too bright?\n"
    "4. Contrast: is the tonal range flat or harsh?\n"
    "5. Colour: are colours natural, or washed out, over-saturated or shifted?\n"
    "6. Compression and other artefacts: blocking, ringing, banding, pixelation, aliasing?\n"
    "7. Content: does the content make defects more or less visible or important?\n"
    "Then weigh the aspects into an overall judgement: how much does each defect harm the "
    "viewing experience?"
)

_OUTPUT_RULES = (
    f"Write your reasoning {REASONING_SPAN}, one short paragraph per aspect and a "
    "final overall judgement. Then give the overall quality score on a scale from 1 (bad) "
    f"to 5 (excellent), with up to two decimals, {ANSWER_SPAN}, for example "
    f"{render_answer('3.47')}. Write nothing after the answer."
)

TEACHER_BLIND = f"Assess the quality of this image.\n\n{_ASPECT_GUIDE}\n\n{_OUTPUT_RULES}"

TEACHER_GUIDED = (
    "Assess the quality of this image. In a subjective study, viewers gave it a mean "
    "opinion score of {mos:.2f} on a scale from 1 (bad) to 5 (excellent). Explain, from what "
    "you see, why the image deserves this quality; describe only defects and strengths "
    "that are really visible. Do not mention the study or the given score in your "
    "reasoning.\n\n" + _ASPECT_GUIDE + "\n\n" + _OUTPUT_RULES
)


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one run.

    Attributes:
        version: Recorded in every distilled row; must change whenever a wording changes.
        student_instruction: The user turn the student sees next to the image.
        teacher_system: The teacher's system message.
        teacher_blind: Teacher prompt without the MOS (blind mode).
        teacher_guided: Teacher prompt given the MOS; formatted with ``mos=`` (guided mode).
    """

    version: str = PROMPT_VERSION
    student_instruction: str = STUDENT_INSTRUCTION
    teacher_system: str = TEACHER_SYSTEM
    teacher_blind: str = TEACHER_BLIND
    teacher_guided: str = TEACHER_GUIDED

    def to_dict(self) -> dict[str, str]:
        """Return the prompts as a plain dict (for run configs)."""
        return asdict(self)


DEFAULT_PROMPTS = PromptSet()

# The description judge (qponder eval --describe-judge-url): a strong VLM sees the image and
# the distortions a reasoning asserts, and grades each one. Formatted with ``claims``.
DESCRIPTION_JUDGE = (
    "You are an expert in image quality assessment. Another model looked at this image and "
    "claimed that it shows the following quality defects:\n{claims}\n\n"
    "For each claimed defect, look at the image and decide whether the defect is really "
    "visible. Answer with JSON only, one entry per claimed defect, in the same order: "
    '{{"grades": [{{"kind": "<defect as given>", "visible": true or false}}]}}'
)


def load_prompts(overrides: dict[str, Any] | None = None) -> PromptSet:
    """Return the default prompt set with ``overrides`` applied.

    Args:
        overrides: Field name -> text, e.g. from a recipe's ``prompts:`` section.

    Returns:
        The resulting :class:`PromptSet`.

    Raises:
        ValueError: On an unknown field, a guided prompt without ``{mos``, or a changed
            wording that keeps the default version.
    """
    overrides = dict(overrides or {})
    known = {f.name for f in fields(PromptSet)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"prompts: unknown field(s) {unknown}; known: {sorted(known)}")
    prompts = replace(DEFAULT_PROMPTS, **overrides)
    changed = any(getattr(prompts, k) != getattr(DEFAULT_PROMPTS, k) for k in overrides)
    if changed and prompts.version == PROMPT_VERSION:
        raise ValueError(
            "prompts: a wording was overridden but 'version' was not; set prompts.version "
            "to a new name so that distilled data records which wording produced it"
        )
    if "{mos" not in prompts.teacher_guided:
        raise ValueError("prompts.teacher_guided must contain a '{mos}' placeholder")
    return prompts


def student_messages(instruction: str = STUDENT_INSTRUCTION, with_image: bool = True) -> list[dict]:
    """Build the conversational prompt of the student (one user turn).

    Args:
        instruction: The instruction text.
        with_image: Put an image placeholder before the text (the image itself travels in
            a separate ``image`` column, as TRL and transformers processors expect).

    Returns:
        ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]``
    """
    content: list[dict] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": instruction})
    return [{"role": "user", "content": content}]


def teacher_prompt(prompts: PromptSet, mode: str, mos: float | None = None) -> str:
    """Return the teacher's user text for ``mode`` ("blind" or "guided").

    Raises:
        ValueError: On an unknown mode, or guided mode without a MOS.
    """
    if mode == "blind":
        return prompts.teacher_blind
    if mode == "guided":
        if mos is None:
            raise ValueError("guided mode needs the MOS of the image")
        return prompts.teacher_guided.format(mos=mos)
    raise ValueError(f"unknown teacher mode {mode!r}; use 'blind' or 'guided'")
