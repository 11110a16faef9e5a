"""Description metrics: per-kind precision/recall/F1 of the asserted kinds, severity
agreement, false alarms on pristine images, unknown sentences, the confusion matrix and the
band-score consistency, checked against a hand computation."""

from __future__ import annotations

import json
import math
import random
from types import MappingProxyType

import pytest

from qponder.data import Sample
from qponder.data.distortion_labels import DistortionTruth, distortion_truth
from qponder.data.synthetic_reasoning import synthetic_completion
from qponder.evaluation.description import description_metrics, spearman_or_none
from qponder.reasoning import (
    ASSERTED,
    DENIED,
    KINDS,
    NOT_MENTIONED,
    KindReading,
    ReasoningAnalysis,
    analyse_reasoning,
)


def _analysis(asserted=None, denied=(), band=None, lean=None, unknown=0, sentences=3,
              conflicts=()) -> ReasoningAnalysis:  # fmt: skip
    asserted = asserted or {}
    readings = tuple(
        KindReading(k, ASSERTED, asserted[k]) if k in asserted
        else KindReading(k, DENIED) if k in denied
        else KindReading(k, NOT_MENTIONED)
        for k in KINDS
    )  # fmt: skip
    return ReasoningAnalysis(readings, band, lean, sentences, unknown, ("?",) * unknown,
                             tuple(conflicts))  # fmt: skip


def _truth(kinds: dict, unmapped=()) -> DistortionTruth:
    return DistortionTruth(MappingProxyType(kinds), not kinds and not unmapped, "test",
                           unmapped=tuple(unmapped))  # fmt: skip


# image: (analysis, truth, score)
EXAMPLE = [
    (_analysis({"blur": 4}, band=3, unknown=2, sentences=4), _truth({"blur": 3}), 3.2),
    (_analysis({"noise": 2}, denied=("blur",), band=2, lean=3), _truth({"blur": 1}), 2.4),
    (_analysis({"noise": 5, "blur": None}, band=4, conflicts=("blur",)), _truth({"noise": 4}), 2.0),
    (_analysis(), _truth({}), 4.6),  # pristine, nothing said
    (_analysis({"noise": 1}), _truth({}), 4.1),  # pristine, false alarm
    (_analysis({"blur": 2}), None, 3.0),  # no truth
    (_analysis({"blur": 2}), _truth({}, unmapped=("tid2013:24 sparse",)), None),  # unmapped
    (_analysis({"blur": 5, "noise": 1}), _truth({"blur": 5, "noise": 2}), 1.5),
]  # fmt: skip


@pytest.fixture(scope="module")
def figures():
    analyses, truths, scores = zip(*EXAMPLE, strict=True)
    return description_metrics(analyses, truths, scores)


def test_per_kind_counts_and_scores_match_the_hand_computation(figures):
    blur, noise = figures["per_kind"]["blur"], figures["per_kind"]["noise"]
    # blur: true in images 1, 2, 8; asserted in 1, 3, 8; denied in 2 although present
    assert {k: blur[k] for k in ("support", "asserted", "tp", "fp", "fn", "denied_present")} == {
        "support": 3, "asserted": 3, "tp": 2, "fp": 1, "fn": 1, "denied_present": 1
    }  # fmt: skip
    assert blur["precision"] == pytest.approx(2 / 3)
    assert blur["recall"] == pytest.approx(2 / 3)
    assert blur["f1"] == pytest.approx(2 / 3)
    # noise: true in 3, 8; asserted in 2, 3, 5, 8
    assert (noise["tp"], noise["fp"], noise["fn"]) == (2, 2, 0)
    assert noise["precision"] == pytest.approx(0.5)
    assert noise["recall"] == pytest.approx(1.0)
    assert noise["f1"] == pytest.approx(4 / 6)
    # a kind neither true nor asserted has no figures
    colour = figures["per_kind"]["colour"]
    assert (colour["precision"], colour["recall"], colour["f1"]) == (None, None, None)


def test_micro_and_macro_averages(figures):
    micro = figures["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (4, 3, 1)
    assert micro["precision"] == pytest.approx(4 / 7)
    assert micro["recall"] == pytest.approx(4 / 5)
    assert micro["f1"] == pytest.approx(8 / 12)
    macro = figures["macro"]
    assert macro["kinds"] == 2  # blur and noise are the kinds present
    assert macro["precision"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert macro["recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert macro["f1"] == pytest.approx(2 / 3)


def test_severity_agreement(figures):
    # blur pairs (stated, true): (4, 3), (5, 5); noise: (5, 4), (1, 2)
    assert figures["per_kind"]["blur"]["severity_pairs"] == 2
    assert figures["per_kind"]["blur"]["severity_srcc"] == pytest.approx(1.0)
    assert figures["per_kind"]["noise"]["severity_srcc"] == pytest.approx(1.0)
    assert figures["severity"]["pairs"] == 4
    assert figures["severity"]["srcc"] == pytest.approx(math.sqrt(0.9))


def test_counts_of_images_pristine_false_alarms_and_unknown_sentences(figures):
    assert (figures["images"], figures["judged"], figures["no_truth"], figures["unmapped"]) == (
        8, 6, 1, 1
    )  # fmt: skip
    assert figures["pristine"] == {"images": 2, "false_alarms": 1, "false_alarm_rate": 0.5}
    assert figures["unknown_sentences"] == {
        "total": 2, "sentences": 25, "share": 2 / 25, "per_reasoning": 0.25,
        "reasonings_with_unknown": 1,
    }  # fmt: skip
    assert figures["conflicts"] == {"reasonings": 1, "rate": 1 / 8}


def test_confusion_matrix(figures):
    confusion = figures["confusion"]
    labels = confusion["true"]
    assert labels == [*KINDS, "none"] == confusion["asserted"]
    cells = {
        (labels[i], labels[j]): n
        for i, row in enumerate(confusion["counts"])
        for j, n in enumerate(row)
        if n
    }
    assert cells == {
        ("blur", "blur"): 2, ("blur", "noise"): 2, ("noise", "noise"): 2,
        ("noise", "blur"): 2, ("none", "none"): 1, ("none", "noise"): 1,
    }  # fmt: skip


def test_band_consistency_with_the_score(figures):
    band = figures["band"]
    assert (band["stated"], band["pairs"]) == (3, 3)
    assert band["rate"] == pytest.approx(3 / 8)
    assert band["agreement"] == pytest.approx(2 / 3)  # 3 ~ 3.2 and 2 ~ 2.4, not 4 ~ 2.0
    assert band["srcc"] == pytest.approx(-0.5)  # bands 3, 2.25, 4 against 3.2, 2.4, 2.0


def test_the_output_is_plain_json_without_nan(figures):
    text = json.dumps(figures, allow_nan=False)
    assert json.loads(text) == figures


def test_undefined_figures_are_none():
    empty = description_metrics([], [])
    assert empty["micro"]["precision"] is None and empty["macro"]["f1"] is None
    assert empty["severity"]["srcc"] is None and empty["pristine"]["false_alarm_rate"] is None
    assert "band" not in empty
    json.dumps(empty, allow_nan=False)
    assert spearman_or_none([1.0], [2.0]) is None
    assert spearman_or_none([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]) is None


def test_inputs_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per image"):
        description_metrics([_analysis()], [])


def test_synthetic_teacher_reasonings_describe_their_images_perfectly():
    rng = random.Random(5)
    kinds = ["gaussian_blur", "impulse_noise", "jpeg", "underexposure", "contrast_loss",
             "saturation_shift", "pixelation", "motion_blur"]  # fmt: skip
    samples, completions = [], []
    for i in range(120):
        distortions = [] if i % 10 == 0 else [{"kind": kinds[i % 8], "level": 1 + i % 5}]
        if distortions and distortions[0]["kind"] == "saturation_shift":
            distortions[0]["direction"] = "increase" if i % 2 else "decrease"
        samples.append(Sample(f"{i}.png", f"/d/{i}.png", 3.0, 3.0, "synthetic", None,
                              meta={"distortions": distortions}))  # fmt: skip
        completions.append(synthetic_completion(3.0, distortions, "a landscape", rng)[0])
    analyses = [analyse_reasoning(c) for c in completions]
    out = description_metrics(analyses, [distortion_truth(s) for s in samples])
    assert out["micro"]["f1"] == 1.0 and out["macro"]["f1"] == 1.0
    assert out["severity"]["srcc"] == pytest.approx(1.0)
    assert out["pristine"]["false_alarm_rate"] == 0.0
    assert out["unknown_sentences"]["total"] == 0
    assert all(analyses[i].status("blur") == DENIED for i in range(0, 120, 10))
