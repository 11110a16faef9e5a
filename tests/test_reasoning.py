"""The reasoning analyser reads what a reasoning says about each distortion kind, its severity
and the quality band, on hand-written reasonings whose right answer is known and on every
sentence the synthetic teacher can write."""

from __future__ import annotations

import json
import random

import pytest
from answer_tags import tagged

from qponder.data import synthetic_reasoning as sr
from qponder.data.distortion_labels import SYNTHETIC_ASPECTS
from qponder.data.synthetic import DISTORTIONS, PHOTOS
from qponder.reasoning import (
    AMBIGUOUS,
    ASSERTED,
    BANDS,
    DENIED,
    KINDS,
    NOT_MENTIONED,
    SEVERITY,
    UNCLEAR,
    analyse_reasoning,
    split_sentences,
)

ALL = set(KINDS)

# (reasoning, asserted kind -> severity, denied kinds); every other kind is not asserted
CASES = [
    # assertions, with and without severity words
    ("The photo is slightly soft and there is visible grain in the shadows.",
     {"blur": 1, "noise": None}, set()),
    ("The photo has extreme noise.", {"noise": 5}, set()),
    ("There is a little grain.", {"noise": 1}, set()),
    ("Heavy blocking artefacts and ringing are visible.", {"compression": 4}, set()),
    ("Moderate grain is visible, but it does not detract much.", {"noise": 3}, set()),
    ("The colours have a strong green cast.", {"colour": 4}, set()),
    ("Exposure is slightly off.", {"exposure": 1}, set()),
    ("Colours are slightly muted.", {"colour": 1}, set()),
    ("Strong halos around edges indicate over-sharpening.", {"artefacts": 4}, set()),
    ("Visible banding appears in the sky gradient.", {"artefacts": None}, set()),
    ("The image is pixelated with jagged edges.", {"resolution": None}, set()),
    ("It looks like a low-resolution upscale.", {"resolution": None}, set()),
    # two distortions at once
    ("The image suffers from severe motion blur and moderate noise.",
     {"blur": 5, "noise": 3}, set()),
    ("The subject is out of focus and the colours are oversaturated.",
     {"blur": None, "colour": None}, set()),
    ("Strong blur and noise ruin the picture.", {"blur": 4, "noise": 4}, set()),
    # synonyms
    ("Smeared details suggest camera shake.", {"blur": None}, set()),
    ("Mosquito noise surrounds the text.", {"compression": None}, set()),
    ("Colour noise is visible in the shadows.", {"noise": None}, set()),
    ("The image is too dark, with crushed shadows.", {"exposure": None}, set()),
    ("Highlights are blown in the sky.", {"exposure": None}, set()),
    ("Colours look washed out and dull.", {"colour": None}, set()),
    ("The image has a hazy, low-contrast look.", {"contrast": None}, set()),
    ("Contrast is low and the image looks flat.", {"contrast": None}, set()),
    ("The image lacks contrast.", {"contrast": None}, set()),
    ("Saturation is too high.", {"colour": None}, set()),
    ("White balance is off, giving a yellow tint.", {"colour": None}, set()),
    ("The image has some issues with exposure.", {"exposure": None}, set()),
    ("The image is not sharp.", {"blur": None}, set()),
    # an ambiguous word goes to the kind its sentence names
    ("Overexposure washes out the bright areas.", {"exposure": None}, set()),
    ("Compression artefacts are strong, with visible blocks.", {"compression": 4}, set()),
    ("Strong pixelation turns fine detail into blocks.", {"resolution": 4}, set()),
    # denials
    ("Edges are crisp and there is no visible noise.", {}, {"blur", "noise"}),
    ("The image is sharp, not blurry.", {}, {"blur"}),
    ("Noise is not visible.", {}, {"noise"}),
    ("Noise: none.", {}, {"noise"}),
    ("Noise isn't an issue.", {}, {"noise"}),
    ("The image is noise-free.", {}, {"noise"}),
    ("Contrast is natural and colours are accurate.", {}, {"contrast", "colour"}),
    ("Sharpness, noise and colour look fine.", {}, {"blur", "noise", "colour"}),
    ("No problems with noise or compression.", {}, {"noise", "compression"}),
    ("Neither noise nor blur is noticeable.", {}, {"noise", "blur"}),
    ("I don't see any compression artefacts.", {}, {"compression"}),
    ("Fine detail is well preserved and there is no smearing.", {}, {"blur"}),
    ("Low noise and good sharpness.", {}, {"noise", "blur"}),
    ("It looks like a professional photo with good sharpness and accurate colours.",
     {}, {"blur", "colour"}),
    ("There are no visible distortions.", {}, ALL),
    ("Everything looks pristine.", {}, ALL),
    ("Noise is minimal.", {}, {"noise"}),
    ("Fine detail is lost to noise reduction, which gives surfaces a waxy look.",
     {"blur": None}, set()),
    ("This image is quite dark.", {"exposure": None}, set()),
    # negation across clauses
    ("There is no noise, but strong blur.", {"blur": 4}, {"noise"}),
    ("No noise and strong blur.", {"blur": 4}, {"noise"}),
    ("There is no noise and the blur is mild.", {"blur": 2}, {"noise"}),
    ("The image is free of blur, though heavy JPEG artefacts are visible around edges.",
     {"compression": 4}, {"blur"}),
    ("Apart from slight blur, the image is clean.", {"blur": 1}, set()),
    ("Exposure is good, though the highlights are slightly clipped.", {"exposure": 1}, set()),
    ("No motion blur is visible, but the image is slightly out of focus.", {"blur": 1}, set()),
    ("The image isn't noisy but is slightly soft.", {"blur": 1}, {"noise"}),
    # a negated severity qualifies the severity, not the kind
    ("Blur is not severe.", {"blur": None}, set()),
    # no distortion named: nothing asserted, nothing denied
    ("The image shows a cat sitting on a sofa.", {}, set()),
    ("The background is nicely blurred while the subject is sharp.", {}, {"blur"}),
    ("There is a sharp contrast between the bright sky and the dark foreground.", {}, set()),
    ("The lighting is soft and the flat areas look smooth.", {}, set()),
    # hedges and aspects without a verdict are unclear, never asserted
    ("There may be slight blur in the corners.", {}, set()),
    ("The image is in black and white, so colour cannot be judged.", {}, set()),
]  # fmt: skip


@pytest.mark.parametrize(("text", "asserted", "denied"), CASES, ids=[c[0][:48] for c in CASES])
def test_hand_written_reasonings_are_read_right(text, asserted, denied):
    a = analyse_reasoning(text)
    assert a.asserted == asserted
    assert set(a.denied) == denied


PARAGRAPHS = [
    # a clean, high-quality photograph: nothing asserted
    ("The photograph is a well-composed landscape with a clear blue sky. Details in the rocks "
     "are crisp, and the foliage is rendered with fine texture. There is no noticeable noise, "
     "even in the darker areas. The exposure is well balanced, with no clipping in the "
     "highlights. Colours are vivid but natural. I see no compression artefacts. Overall, this "
     "is a high-quality image.",
     {}, {"blur", "noise", "exposure", "colour", "compression"}, 4),
    ("The portrait has a pleasant soft light and a smooth, creamy background bokeh. The eyes are "
     "tack sharp. Skin tones look natural. Noise is minimal. Overall quality is excellent.",
     {}, {"blur", "noise", "colour"}, 5),
    # degraded: several kinds, with and without severity words
    ("This image is quite dark, and the shadows are noisy. Fine detail is lost to noise "
     "reduction, which gives surfaces a waxy look. Colours are muted. The overall quality is "
     "poor.",
     {"exposure": None, "noise": None, "blur": None, "colour": None}, set(), 2),
    ("The image looks washed out and lacks contrast, as if shot through haze. There are a few "
     "JPEG artefacts around text. Overall the quality is fair.",
     {"contrast": None, "compression": None}, set(), 3),
    ("The image is heavily pixelated, with blocky edges everywhere. It looks like it was "
     "upscaled from a tiny thumbnail. Quality is bad.",
     {"resolution": 4}, set(), 1),
    ("There are visible halos around high-contrast edges, suggesting over-sharpening. The "
     "colours have a slight magenta tint. I would rate it as fair.",
     {"artefacts": None, "colour": 1}, set(), 3),
]  # fmt: skip


@pytest.mark.parametrize(("text", "asserted", "denied", "band"), PARAGRAPHS)
def test_real_teacher_style_paragraphs(text, asserted, denied, band):
    a = analyse_reasoning(text)
    assert (a.asserted, set(a.denied), a.band, a.unknown_sentences) == (
        asserted, denied, band, 0
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("There may be slight blur in the corners.", "blur"),
        ("The image is in black and white, so colour cannot be judged.", "colour"),
        ("Let me check the exposure.", "exposure"),
        ("It might have a bit of noise.", "noise"),
    ],
)
def test_hedged_or_verdictless_mentions_are_unclear(text, kind):
    a = analyse_reasoning(text)
    assert a.status(kind) == UNCLEAR
    assert not a.asserts_any


def test_a_kind_never_named_is_not_mentioned():
    a = analyse_reasoning("Strong blur softens every edge.")
    assert a.status("blur") == ASSERTED
    assert {a.status(k) for k in KINDS if k != "blur"} == {NOT_MENTIONED}


def test_an_assertion_wins_over_a_denial_and_is_reported_as_a_conflict():
    a = analyse_reasoning("No motion blur is visible. The subject is slightly out of focus.")
    assert a.status("blur") == ASSERTED
    assert a.reading("blur").severity == 1
    assert a.conflicts == ("blur",)


def test_the_highest_stated_severity_wins():
    a = analyse_reasoning("Slight blur in the corners. The centre shows heavy motion blur.")
    assert a.asserted == {"blur": 4}


@pytest.mark.parametrize(
    ("text", "band", "lean"),
    [
        ("Overall, the quality is fair, leaning towards good.", 3, 4),
        ("Weighing all aspects, the overall quality is poor, leaning towards bad.", 2, 1),
        ("Overall, the blur matters most and the quality is good.", 4, None),
        ("This is a low-quality image.", 2, None),
        ("I would rate the image as excellent.", 5, None),
        ("Overall, a good image.", 4, None),
        ("Overall quality: very poor.", 1, None),
        ("Honestly it's a decent photo.", 3, None),
        ("The image quality is mediocre.", 3, None),
        ("Fair-to-good quality overall.", 3, 4),
        ("The JPEG quality is low.", None, None),  # a kind's quality, not the image's
        ("Exposure is good and contrast is fine.", None, None),  # verdicts, not a band
        ("Overall, good exposure.", None, None),
    ],
)
def test_the_quality_band_is_read_only_where_it_qualifies_the_quality(text, band, lean):
    a = analyse_reasoning(text)
    assert (a.band, a.band_leaning) == (band, lean)


def test_the_last_band_stated_is_the_conclusion():
    a = analyse_reasoning(
        "At first glance the quality is good. On closer look, the quality is poor."
    )
    assert a.band == 2


def test_sentences_with_nothing_the_lexicon_knows_are_counted_unknown():
    a = analyse_reasoning("Let me analyse the image. Hmm. Strong blur. I'd give it a 3.8.")
    assert a.sentences == 4
    assert a.unknown_sentences == 2
    assert a.unknown == ("Let me analyse the image.", "I'd give it a 3.8.")
    assert a.unreadable_sentences == 1  # "Hmm." is no sentence of text: not read at all
    assert a.asserted == {"blur": 4}


def test_unreadable_text_asserts_nothing():
    a = analyse_reasoning("Lorem ipsum dolor sit amet. Consectetur adipiscing elit.")
    assert a.unknown_sentences == a.sentences == 2
    assert {r.status for r in a.readings} == {NOT_MENTIONED}
    assert a.band is None


# what an untrained tiny model wrote for a random image (build_tiny_model(seed=0), greedy,
# 200 tokens): kind cues in such babble gave the untrained demo stage description F1 0.122
BABBLE = (
    "�beects Noiseards yo washeai photographiv Noiseards yo washeai photographiv Nois"
    "eards yo washeai photographiv Noiseildards yo washeai photographiv Noiseildards "
    "yo washeai photographiv Noiseildards yod inspection youl f scene in>..mals sal s"
    "ewhere ex� bloss Noise mmpleap (ange������ directionaiExualSlight�ocus damage sh"
    "arpness tally too<answer yod inspectionowardsad blocking%,nessct show hardly Sli"
    "ght vieweralan\x1bNooothadie it wellrt\x02redlat\x1bNooothadie it wellrtulse spe"
    "ualSlight�ocus damage sharpness tally too subjectiveatedEdges�Sharpness show har"
    "dly Slight vieweralan\x1bNooothadie itthe5 sensor� colours,nessct show hardly Sl"
    "ight vieweralan\x1bNooothadie itthe5 sensor� colours,nessct show hardly Slight v"
    'ieweralan\x1bNooothadie itthe5 sensor� colours,ness" Extremember siv Noiseildard'
    "s yod"
)


@pytest.mark.parametrize(
    "babble",
    [
        BABBLE,
        "contrast " * 61,  # one kind word, repeated
        "Blur. Noise. Blocking. Ringing. Banding.",  # kind words, no sentences
        "There is strong blur. " * 12,  # one sentence, over and over
        "blur blur blur noise, noise noise noise.",  # runs of the same word
    ],
)
def test_babble_asserts_nothing_and_scores_zero(babble):
    from qponder.data.distortion_labels import DistortionTruth
    from qponder.evaluation.description import description_metrics

    a = analyse_reasoning(babble)
    assert not a.readable and a.unreadable_sentences == a.sentences >= 1
    assert a.asserted == {} and a.denied == () and a.band is None
    truth = DistortionTruth(
        kinds={"blur": 3, "noise": 2, "contrast": 2}, pristine=False, dataset="synthetic"
    )
    figures = description_metrics([a], [truth])
    assert figures["micro"]["f1"] == 0.0 and figures["micro"]["tp"] == 0
    assert figures["unreadable"] == {"reasonings": 1, "rate": 1.0, "sentences": a.sentences}


def test_readable_reasoning_is_read_whole():
    # a teacher's numbered list: every sentence readable, terse labels included
    text = (
        "1. Sharpness: the subject is in focus, but fine textures look slightly soft.\n"
        "2. Noise: none.\n3. Exposure: shadows are somewhat crushed.\n"
        "Overall, the quality is fair: mild blur reduces the viewing experience."
    )
    a = analyse_reasoning(text)
    assert a.readable and a.unreadable_sentences == 0
    assert "blur" in a.asserted and a.status("noise") == "denied" and a.band == 3


def test_a_repeated_sentence_counts_once():
    a = analyse_reasoning("There is strong blur. The colours are natural. There is strong blur.")
    assert a.readable and a.unreadable_sentences == 1 and a.asserted == {"blur": 4}


def test_a_whole_completion_is_read_by_its_reasoning_only():
    text = tagged("<think>Strong blur. The quality is poor.</think><answer>Excellent, 4.9</answer>")
    a = analyse_reasoning(text)
    assert a.asserted == {"blur": 4}
    assert a.band == 2  # "Excellent" in the answer is not part of the reasoning
    conversational = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    assert analyse_reasoning(conversational) == a


def test_markdown_lists_and_aspect_labels_are_read():
    text = (
        "1. **Sharpness and focus**: The dog is in sharp focus.\n"
        "2. **Noise**: Minimal noise, even in the shadows.\n"
        "3. **Exposure**: Slightly underexposed.\n"
        "4. **Compression and other artefacts**: None visible.\n"
        "Overall, this is a good image."
    )
    a = analyse_reasoning(text)
    assert a.asserted == {"exposure": 1}
    assert {"blur", "noise", "compression"} <= set(a.denied)
    assert (a.band, a.unknown_sentences, a.sentences) == (4, 0, 5)
    assert split_sentences(text)[1] == "Noise : Minimal noise, even in the shadows."


def test_the_analysis_is_json_serialisable():
    a = analyse_reasoning("There is no noise, but strong blur. Overall, the quality is poor.")
    data = json.loads(json.dumps(a.to_dict()))
    assert data["kinds"]["blur"] == {"status": ASSERTED, "severity": 4}
    assert data["kinds"]["noise"] == {"status": DENIED, "severity": None}
    assert data["band"] == 2


# --------------------------------------------------------------------------- the lexicon


def test_the_lexicon_tables_are_consistent():
    assert {c for kinds in AMBIGUOUS.values() for c in kinds} <= ALL
    assert set(SEVERITY.values()) == {1, 2, 3, 4, 5}
    assert set(BANDS.values()) == {1, 2, 3, 4, 5}
    assert set(SYNTHETIC_ASPECTS.values()) <= ALL
    assert all(cues.meaning and cues.defects for cues in KINDS.values())


def test_the_synthetic_teacher_words_mean_the_same_here():
    for level, words in sr.SEVERITY.items():
        assert {SEVERITY[w] for w in words} == {level}
    assert {BANDS[w]: w for w in sr.BANDS.values()} == sr.BANDS


# --------------------------------------------------------------------------- synthetic round trip

SYNTHETIC_KIND = {k: SYNTHETIC_ASPECTS[d.aspect] for k, d in DISTORTIONS.items()}
CONTENTS = [None, "a landscape", "text", "shapes", *PHOTOS.values(),
            "a synthetic scene of coloured shapes, stripes and lines"]  # fmt: skip


def _synthetic_cases() -> list[list[dict]]:
    """Every kind at every level (both saturation directions), alone, paired with a kind of
    another aspect, and clean images."""
    rng = random.Random(7)
    cases: list[list[dict]] = [[] for _ in range(20)]
    for kind in sorted(sr.DEFECTS):
        for level in range(1, 6):
            directions = ("increase", "decrease") if kind == "saturation_shift" else (None,)
            for direction in directions:
                d = {"kind": kind, "level": level}
                if direction:
                    d["direction"] = direction
                cases.append([d])
                others = [k for k in sr.DEFECTS if sr.DEFECTS[k][0] != sr.DEFECTS[kind][0]]
                cases.append([d, {"kind": rng.choice(others), "level": rng.randint(1, 5)}])
    return cases


def _truth(distortions: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in distortions:
        kind = SYNTHETIC_KIND[d["kind"]]
        out[kind] = max(out.get(kind, 0), d["level"])
    return out


def _round_trip() -> dict[str, float]:
    rng = random.Random(11)
    tp = fp = fn = sev_ok = unknown = bands_ok = n = 0
    for distortions in _synthetic_cases() * 4:  # four wordings of each
        mos = round(rng.uniform(1.0, 5.0), 2)
        text, _ = sr.synthetic_completion(mos, distortions, rng.choice(CONTENTS), rng)
        a, truth = analyse_reasoning(text), _truth(distortions)
        said = a.asserted
        tp += len(set(said) & set(truth))
        fp += len(set(said) - set(truth))
        fn += len(set(truth) - set(said))
        sev_ok += sum(said[k] == truth[k] for k in set(said) & set(truth))
        unknown += a.unknown_sentences
        score = float(text.split(tagged("<answer>"))[1].split(tagged("</answer>"))[0])
        phrase = sr.band_phrase(score).split(", leaning towards ")
        expected = (BANDS[phrase[0]], BANDS[phrase[1]] if len(phrase) > 1 else None)
        bands_ok += (a.band, a.band_leaning) == expected
        n += 1
    return {
        "n": n,
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "severity_exact": sev_ok / tp,
        "band_exact": bands_ok / n,
        "unknown": unknown,
    }


def test_every_synthetic_teacher_sentence_is_read_right():
    figures = _round_trip()
    # measured: precision 1.0, recall 1.0, severity 1.0, bands 1.0, 0 unknown (n = 520)
    assert figures["precision"] >= 0.95
    assert figures["recall"] >= 0.95
    assert figures["severity_exact"] >= 0.95
    assert figures["band_exact"] >= 0.95
    assert figures["unknown"] == 0


def test_example_completions_name_their_distortion_at_its_level():
    """``example_completions`` gives completion i the kind ``sorted(DEFECTS)[i % 10]`` at level
    ``1 + (i // 10) % 5`` (sometimes with a second kind), and no distortion when i % 7 == 6."""
    kinds = sorted(sr.DEFECTS)
    completions = sr.example_completions(350, seed=3)
    hits = clean_ok = clean = 0
    for i, text in enumerate(completions):
        a = analyse_reasoning(text)
        assert a.unknown_sentences == 0, a.unknown
        assert a.band is not None
        if i % 7 == 6:
            clean += 1
            clean_ok += not a.asserts_any and set(a.denied) >= {"blur", "noise", "exposure"}
            continue
        kind, level = SYNTHETIC_KIND[kinds[i % len(kinds)]], 1 + (i // len(kinds)) % 5
        hits += a.asserted.get(kind, 0) == level
    assert clean_ok == clean == 50
    assert hits == 300
