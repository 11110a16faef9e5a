"""Multi-aspect quality reasoning for the synthetic dataset (``qponder data synth``), written
from what is known of each image: the distortions applied to it and its content.

A compact phrase bank gives one sentence per aspect of :data:`qponder.prompts.ASPECTS`
(sharpness and focus, noise, exposure, contrast, colour, compression and other artefacts,
content), then an overall judgement. Severity words follow the level (slight, mild,
moderate, strong, severe) and the overall judgement names the quality band of the score
(bad, poor, fair, good, excellent, with "leaning towards" the next band when the score sits
between two), so the score can be inferred from the reasoning alone, which is what the
consistency reward's judge does.

:func:`synthetic_completion` can also be wrong in the ways real teachers are wrong
(overlooking the defects, inventing one, leaving out the answer). The simulated teacher
(:class:`qponder.distill.synthetic.SyntheticTeacher`) and the tiny model's tokenizer corpus
(:func:`example_completions`) are built on it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from qponder.answer_format import render_unanswered
from qponder.parsing import SCORE_MAX, SCORE_MIN, format_completion
from qponder.prompts import ASPECTS

logger = logging.getLogger(__name__)

ASPECT_ORDER: tuple[str, ...] = tuple(ASPECTS)  # the reasoning's aspects, in prompt order
# How each aspect is named in a merged "X, Y and Z look fine." sentence.
_ASPECT_NAME = {
    "sharpness": "sharpness",
    "noise": "noise",
    "exposure": "exposure",
    "contrast": "contrast",
    "colour": "colour",
    "artefacts": "compression",
}
_CLEAN = {
    "sharpness": (
        "Edges are crisp and the subject is in focus.",
        "Focus is accurate and fine detail is sharp.",
    ),
    "noise": ("No noise or grain is visible.", "Flat areas are clean, free of noise."),
    "exposure": (
        "Exposure is balanced, with detail in highlights and shadows.",
        "Exposure is well judged.",
    ),
    "contrast": ("Contrast is natural.", "Contrast is full without being harsh."),
    "colour": ("Colours look natural.", "Colour rendition is faithful."),
    "artefacts": (
        "There are no compression artefacts.",
        "No blocking, ringing or other artefacts appear.",
    ),
}
# distortion kind -> (aspect, noun for the overall judgement, sentence templates)
DEFECTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gaussian_blur": (
        "sharpness",
        "the blur",
        ("{Sev} blur softens all edges", "The image is out of focus, with {sev} blur"),
    ),
    "motion_blur": (
        "sharpness",
        "the motion blur",
        (
            "{Sev} motion blur smears edges in one direction",
            "Camera shake causes {sev} motion blur",
        ),
    ),
    "gaussian_noise": (
        "noise",
        "the noise",
        ("{Sev} grainy noise covers flat areas", "There is {sev} sensor noise"),
    ),
    "impulse_noise": (
        "noise",
        "the impulse noise",
        (
            "{Sev} salt-and-pepper noise speckles the image",
            "Scattered black and white pixels show {sev} impulse noise",
        ),
    ),
    "jpeg": (
        "artefacts",
        "the compression damage",
        (
            "{Sev} JPEG compression causes blocking and ringing",
            "Compression artefacts are {sev}, with visible blocks",
        ),
    ),
    "overexposure": (
        "exposure",
        "the overexposure",
        (
            "The image is overexposed, with {sev} blown highlights",
            "{Sev} overexposure washes out bright areas",
        ),
    ),
    "underexposure": (
        "exposure",
        "the underexposure",
        (
            "The image is underexposed, with {sev} loss of shadow detail",
            "{Sev} underexposure makes the scene too dark",
        ),
    ),
    "contrast_loss": (
        "contrast",
        "the flat contrast",
        (
            "{Sev} contrast loss makes the tones flat",
            "The tonal range is compressed by a {sev} contrast loss",
        ),
    ),
    "saturation_shift": (
        "colour",
        "the colour shift",
        (
            "Colours are off, with a {sev} saturation shift",
            "{Sev} colour distortion makes hues unnatural",
        ),
    ),
    "pixelation": (
        "artefacts",
        "the pixelation",
        ("{Sev} pixelation turns fine detail into blocks", "The image shows {sev} pixelation"),
    ),
}
# kinds whose metadata says which way they go (``direction``)
_DIRECTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("saturation_shift", "increase"): (
        "Colours are oversaturated, with a {sev} saturation shift",
        "{Sev} oversaturation makes colours garish",
    ),
    ("saturation_shift", "decrease"): (
        "Colours are washed out, with a {sev} loss of saturation",
        "{Sev} desaturation makes colours dull",
    ),
}
SEVERITY: dict[int, tuple[str, ...]] = {
    1: ("slight", "faint"),
    2: ("mild", "noticeable"),
    3: ("moderate", "clear"),
    4: ("strong", "heavy"),
    5: ("severe", "extreme"),
}
_IMPACT: dict[int, tuple[str, ...]] = {
    1: ("barely noticeable", "hardly visible"),
    2: ("visible on close inspection", "a minor flaw"),
    3: ("clearly visible", "distracting"),
    4: ("obvious everywhere", "very distracting"),
    5: ("destroying most detail", "ruining the image"),
}
BANDS: dict[int, str] = {1: "bad", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}
_OVERALL = (
    "Overall, the quality is {band}.",
    "Weighing all aspects, the overall quality is {band}.",
)
_OVERALL_MAIN = (
    "Overall, {main} matters most and the quality is {band}.",
    "Overall, {main} dominates; the quality is {band}.",
)
_MERGED = ("{names} look fine.", "{names} show no problems.")
_CONTENT_DEFECTS = (
    "The content, {content}, has smooth areas where the defects show clearly.",
    "The content ({content}) is simple, so the defects are easy to see.",
)
_CONTENT_CLEAN = (
    "The content, {content}, is clear and well rendered.",
    "The content ({content}) is easy to read.",
)
_EXAMPLE_CONTENTS = ("a landscape", "a portrait", "a street scene", "shapes", "a gradient", "text")
_NO_ANSWER_ENDINGS = ("I would rate it {score:.1f} out of 5.", "Score: {score:.2f}")

_GOOD_NOISE = 0.3  # a correct answer lies within this of the MOS
_ERROR_MIN, _ERROR_MAX = 1.0, 1.8  # a wrong score lies this far from the MOS


def band_phrase(score: float) -> str:
    """The quality band of a score, in words.

    Example:
        >>> band_phrase(4.1), band_phrase(3.4), band_phrase(1.6)
        ('good', 'fair, leaning towards good', 'poor, leaning towards bad')
    """
    level = min(5, max(1, int(score + 0.5)))
    phrase = BANDS[level]
    offset = score - level
    if offset >= 0.25 and level < 5:
        phrase += f", leaning towards {BANDS[level + 1]}"
    elif offset <= -0.25 and level > 1:
        phrase += f", leaning towards {BANDS[level - 1]}"
    return phrase


def _defect_sentence(distortion: dict, rng: random.Random) -> str:
    kind, level = distortion["kind"], min(5, max(1, int(distortion["level"])))
    templates = _DIRECTED.get((kind, distortion.get("direction", "")))
    if templates is None:
        templates = (
            DEFECTS[kind][2]
            if kind in DEFECTS
            else ("{Sev} " + kind.replace("_", " ") + " degrades the image",)
        )
    template = rng.choice(templates)
    sev = rng.choice(SEVERITY[level])
    body = template.format(sev=sev, Sev=sev.capitalize())
    return f"{body}; it is {rng.choice(_IMPACT[level])}."


def _aspect_of(kind: str) -> str:
    return DEFECTS[kind][0] if kind in DEFECTS else "artefacts"


def _noun_of(kind: str) -> str:
    return DEFECTS[kind][1] if kind in DEFECTS else "the " + kind.replace("_", " ")


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def compose_reasoning(
    distortions: Sequence[dict], content: str | None, score: float, rng: random.Random
) -> str:
    """Write the multi-aspect reasoning for an image with ``distortions`` rated ``score``.

    Args:
        distortions: ``[{"kind": str, "level": 1..5}]``; empty for a clean image.
        content: What the image shows, or ``None``.
        score: The score the reasoning leads to (sets the overall judgement).
        rng: Source of the wording choices.

    Returns:
        Plain text, one sentence per aspect (clean aspects sometimes merged) and an overall
        judgement.

    Example:
        >>> text = compose_reasoning([{"kind": "jpeg", "level": 4}], "text", 2.2, random.Random(0))
        >>> "compression" in text.lower() and "poor" in text
        True
    """
    by_aspect: dict[str, list[dict]] = {}
    for d in distortions:
        by_aspect.setdefault(_aspect_of(d["kind"]), []).append(d)
    sentences: list[str] = []
    clean_run: list[str] = []
    merge = [rng.random() < 0.4]  # at most one merged sentence per answer

    def flush() -> None:
        if len(clean_run) >= 2 and merge[0]:
            names = _join_names([_ASPECT_NAME[a] for a in clean_run]).capitalize()
            sentences.append(rng.choice(_MERGED).format(names=names))
            merge[0] = False
        else:
            sentences.extend(rng.choice(_CLEAN[a]) for a in clean_run)
        clean_run.clear()

    for aspect in ASPECT_ORDER[:-1]:
        if aspect in by_aspect:
            flush()
            sentences.extend(_defect_sentence(d, rng) for d in by_aspect[aspect])
        else:
            clean_run.append(aspect)
            if len(clean_run) == 3:  # merge at most three, to keep every answer detailed
                flush()
    flush()
    what = (content or "a simple scene").replace("_", " ")
    sentences.append(
        rng.choice(_CONTENT_DEFECTS if distortions else _CONTENT_CLEAN).format(content=what)
    )
    band = band_phrase(score)
    if distortions and rng.random() < 0.6:
        worst = max(distortions, key=lambda d: d["level"])
        sentences.append(rng.choice(_OVERALL_MAIN).format(main=_noun_of(worst["kind"]), band=band))
    else:
        sentences.append(rng.choice(_OVERALL).format(band=band))
    return " ".join(sentences)


def _clip(score: float) -> float:
    return round(min(SCORE_MAX, max(SCORE_MIN, score)), 2)


def _wrong_answer(
    distortions: list[dict], mos: float, rng: random.Random
) -> tuple[list[dict], float]:
    """Distortions a mistaken teacher would describe, and its score (>= 1.0 off the MOS)."""
    room_up, room_down = SCORE_MAX - mos, mos - SCORE_MIN
    up = room_up >= _ERROR_MIN and (room_down < _ERROR_MIN or rng.random() < 0.5)
    room = room_up if up else room_down
    offset = rng.uniform(_ERROR_MIN, min(_ERROR_MAX, room))
    if up:  # overlooks the defects: describes them two levels milder, or not at all
        seen = [{**d, "level": d["level"] - 2} for d in distortions if d["level"] > 2]
        return seen, _clip(mos + offset)
    # invents a strong defect in an aspect that is in fact clean
    used = {_aspect_of(d["kind"]) for d in distortions}
    free = [k for k in DEFECTS if DEFECTS[k][0] not in used] or list(DEFECTS)
    invented = {"kind": rng.choice(free), "level": rng.choice((4, 5))}
    return [*distortions, invented], _clip(mos - offset)


def synthetic_completion(
    mos: float,
    distortions: Sequence[dict],
    content: str | None,
    rng: random.Random,
    error_rate: float = 0.0,
) -> tuple[str, str]:
    """Write one teacher answer for an image with a known MOS and known distortions.

    Args:
        mos: Mean opinion score on [1, 5].
        distortions: ``[{"kind", "level"}]`` as in ``sample.meta["distortions"]``.
        content: ``sample.meta["content"]`` or ``None``.
        rng: Source of all random choices.
        error_rate: Probability that the answer is wrong (too high, too low, or no answer).

    Returns:
        ``(completion, kind)`` where kind is ``"correct"``, ``"overlooked"``,
        ``"invented"`` or ``"no_answer"``.

    Example:
        >>> text, kind = synthetic_completion(3.0, [{"kind": "gaussian_blur", "level": 3}],
        ...                                   None, random.Random(1))
        >>> kind, text.endswith("</answer>")
        ('correct', True)
    """
    distortions = [dict(d) for d in distortions]
    if rng.random() >= error_rate:
        score = _clip(mos + max(-_GOOD_NOISE, min(_GOOD_NOISE, rng.gauss(0.0, 0.15))))
        return format_completion(
            compose_reasoning(distortions, content, score, rng), score
        ), "correct"
    if rng.random() < 0.2:
        score = _clip(mos + rng.uniform(-_GOOD_NOISE, _GOOD_NOISE))
        reasoning = compose_reasoning(distortions, content, score, rng)
        ending = rng.choice(_NO_ANSWER_ENDINGS).format(score=score)
        return render_unanswered(reasoning, ending), "no_answer"
    seen, score = _wrong_answer(distortions, mos, rng)
    kind = "overlooked" if score > mos else "invented"
    return format_completion(compose_reasoning(seen, content, score, rng), score), kind


def plausible_distortions(mos: float, rng: random.Random) -> list[dict]:
    """Distortions that would explain ``mos``, for samples without distortion metadata."""
    budget = round((SCORE_MAX - mos) / 0.8)
    out: list[dict] = []
    kinds = list(DEFECTS)
    while budget > 0 and kinds:
        kind = kinds.pop(rng.randrange(len(kinds)))
        level = min(5, budget)
        out.append({"kind": kind, "level": level})
        budget -= level
    return out


def example_completions(n: int, seed: int = 0) -> list[str]:
    """Correct completions covering every distortion kind at every level (once ``n`` is at
    least ``5 * len(DEFECTS)``), clean images and pairs of distortions. The tiny model's
    tokenizer is trained on these.

    Args:
        n: Number of completions.
        seed: Makes the list reproducible.

    Returns:
        ``n`` completions in the output contract.
    """
    rng = random.Random(seed)
    kinds = sorted(DEFECTS)
    out = []
    for i in range(n):
        kind, level = kinds[i % len(kinds)], 1 + (i // len(kinds)) % 5
        distortions = [{"kind": kind, "level": level}]
        if i % 7 == 6:
            distortions = []
        elif rng.random() < 0.3:
            other = rng.choice([k for k in kinds if DEFECTS[k][0] != DEFECTS[kind][0]])
            distortions.append({"kind": other, "level": rng.randint(1, 5)})
        load = sum(d["level"] for d in distortions)
        mos = _clip(4.7 - 0.55 * load + rng.uniform(-0.2, 0.2))
        text, _ = synthetic_completion(mos, distortions, rng.choice(_EXAMPLE_CONTENTS), rng)
        out.append(text)
    return out
