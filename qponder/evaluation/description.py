"""How well reasonings describe what is wrong with the images: description accuracy,
severity and consistency, from per-image analyses (:func:`qponder.reasoning.analyse_reasoning`)
and known distortions (:func:`qponder.data.distortion_labels.distortion_truth`).

:func:`description_metrics` returns plain JSON-ready data (no NaN: an undefined figure is
None). Its figures:

- ``images``: reasonings given. ``judged``: those whose truth is known and complete (every
  distortion of the image maps to a shared kind); only they enter the kind figures.
  ``no_truth``: images whose dataset labels no distortion; ``unmapped``: images with a
  distortion outside the shared kinds (e.g. TID2013's sparse sampling).
- ``per_kind[kind]``, over the judged images: ``support`` (images that have the kind),
  ``asserted`` (reasonings that assert it), ``tp`` (assert it and the image has it), ``fp``
  (assert it, the image does not have it), ``fn`` (the image has it, the reasoning does not
  assert it: silent, unclear or denying), ``denied_present`` (the part of ``fn`` that
  explicitly denies it); ``precision = tp / (tp + fp)`` (None when never asserted),
  ``recall = tp / (tp + fn)`` (None when support is 0), ``f1 = 2 tp / (2 tp + fp + fn)``
  (None when all three are 0); ``severity_srcc``: Spearman's rank correlation between the
  severity the reasoning states (1..5) and the true level, over the images where the kind is
  both true and asserted with a severity word and the level is a severity
  (``severity_pairs`` of them; None under 2 pairs or with a constant side).
- ``micro``: precision, recall and F1 of the summed ``tp``, ``fp``, ``fn`` of all kinds.
- ``macro``: the unweighted means, over the kinds with ``support > 0`` (``kinds``), of their
  precision, recall and F1; a kind never asserted has no precision and is left out of the
  precision mean only.
- ``severity``: ``srcc`` and ``pairs`` as above, pooled over every kind.
- ``pristine``: judged images without any distortion (``images``), those whose reasoning
  asserts at least one kind (``false_alarms``) and their share (``false_alarm_rate``).
- ``unknown_sentences``: over all reasonings, ``total`` sentences the analyser could not
  read, ``sentences`` read in all, ``share = total / sentences``, ``per_reasoning`` (mean)
  and ``reasonings_with_unknown``.
- ``unreadable``: reasonings that are not readable text (babble; they assert nothing, see
  :mod:`qponder.reasoning`): ``reasonings``, their ``rate`` among all, and the
  ``sentences`` left unread over all reasonings.
- ``confusion``: ``counts[i][j]`` = judged images that have kind ``true[i]`` and whose
  reasoning asserts kind ``asserted[j]``; the row ``"none"`` holds pristine images and the
  column ``"none"`` reasonings that assert nothing. An image with two true kinds, or a
  reasoning with two asserted kinds, counts in each of them: rows do not sum to images.
- ``conflicts``: reasonings that both assert and deny a kind (``reasonings``, ``rate``).
- ``band`` (consistency of the reasoning with its own score; when scores are given):
  ``stated`` (reasonings that state a quality band), ``rate``; ``srcc`` between the stated
  band (moved 0.25 towards the band it leans to) and the score, and ``agreement``: the share
  of them whose score rounds (half up) to the stated band; ``pairs`` (band and score both
  present).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from qponder.data.distortion_labels import DistortionTruth
from qponder.reasoning import DENIED, KIND_NAMES, ReasoningAnalysis

NONE = "none"  # the confusion matrix's row/column for "no kind"


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(sum(kept) / len(kept)) if kept else None


def spearman_or_none(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation, or None when undefined (under 2 pairs, a constant side).

    Example:
        >>> spearman_or_none([1, 2, 3], [2, 4, 5]), spearman_or_none([1, 1], [2, 3])
        (1.0, None)
    """
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic
    return float(rho) if math.isfinite(rho) else None


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _score_band(score: float) -> int:
    return min(5, max(1, math.floor(score + 0.5)))


def _band_value(a: ReasoningAnalysis) -> float | None:
    if a.band is None:
        return None
    if a.band_leaning is None or a.band_leaning == a.band:
        return float(a.band)
    return a.band + (0.25 if a.band_leaning > a.band else -0.25)


def _band_figures(analyses: Sequence[ReasoningAnalysis], scores: Sequence[float | None]) -> dict:
    stated = [a for a in analyses if a.band is not None]
    pairs = [
        (a, float(s))
        for a, s in zip(analyses, scores, strict=True)
        if a.band is not None and s is not None and math.isfinite(s)
    ]
    agree = sum(1 for a, s in pairs if _score_band(s) == a.band)
    return {
        "stated": len(stated),
        "rate": _ratio(len(stated), len(analyses)),
        "pairs": len(pairs),
        "srcc": spearman_or_none([_band_value(a) for a, _ in pairs], [s for _, s in pairs]),
        "agreement": _ratio(agree, len(pairs)),
    }


def _unknown_figures(analyses: Sequence[ReasoningAnalysis]) -> dict:
    total = sum(a.unknown_sentences for a in analyses)
    sentences = sum(a.sentences for a in analyses)
    return {
        "total": total,
        "sentences": sentences,
        "share": _ratio(total, sentences),
        "per_reasoning": _ratio(total, len(analyses)),
        "reasonings_with_unknown": sum(1 for a in analyses if a.unknown_sentences),
    }


def image_counts(
    analysis: ReasoningAnalysis, truth: DistortionTruth, kinds: Sequence[str] = KIND_NAMES
) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of one image over ``kinds``: the per-image terms of the micro
    average (``micro F1 = 2 sum(tp) / (2 sum(tp) + sum(fp) + sum(fn))``), for resampling."""
    said = analysis.asserted
    tp = sum(1 for k in kinds if k in truth.kinds and k in said)
    fp = sum(1 for k in kinds if k in said and k not in truth.kinds)
    fn = sum(1 for k in kinds if k in truth.kinds and k not in said)
    return tp, fp, fn


def _tally(
    analyses: Sequence[ReasoningAnalysis],
    truths: Sequence[DistortionTruth | None],
    kinds: list[str],
) -> dict[str, Any]:
    """Per-kind counts, severity pairs, the confusion matrix and the image tallies."""
    labels = [*kinds, NONE]
    counts = {k: {"support": 0, "asserted": 0, "tp": 0, "fp": 0, "fn": 0, "denied_present": 0}
              for k in kinds}  # fmt: skip
    sev_pairs: dict[str, list[tuple[int, int]]] = {k: [] for k in kinds}
    confusion = [[0] * len(labels) for _ in labels]
    images = dict.fromkeys(("judged", "no_truth", "unmapped", "pristine", "false_alarms"), 0)
    for a, t in zip(analyses, truths, strict=True):
        if t is None or not t.complete:
            images["no_truth" if t is None else "unmapped"] += 1
            continue
        images["judged"] += 1
        said = a.asserted
        if t.pristine:
            images["pristine"] += 1
            images["false_alarms"] += bool(a.asserts_any)
        true_idx = [labels.index(k) for k in kinds if k in t.kinds] or [len(kinds)]
        said_idx = [labels.index(k) for k in kinds if k in said] or [len(kinds)]
        for i in true_idx:
            for j in said_idx:
                confusion[i][j] += 1
        for k in kinds:
            c, has, says = counts[k], k in t.kinds, k in said
            c["support"] += has
            c["asserted"] += says
            c["tp"] += has and says
            c["fp"] += says and not has
            c["fn"] += has and not says
            c["denied_present"] += has and a.status(k) == DENIED
            level, stated = t.kinds.get(k), said.get(k)
            if has and says and level is not None and stated is not None:
                sev_pairs[k].append((stated, level))
    return {"counts": counts, "sev_pairs": sev_pairs, "confusion": confusion,
            "labels": labels, **images}  # fmt: skip


def _unreadable_figures(analyses: Sequence[ReasoningAnalysis]) -> dict:
    n = sum(1 for a in analyses if not a.readable)
    return {
        "reasonings": n,
        "rate": _ratio(n, len(analyses)),
        "sentences": sum(a.unreadable_sentences for a in analyses),
    }


def description_metrics(
    analyses: Sequence[ReasoningAnalysis],
    truths: Sequence[DistortionTruth | None],
    scores: Sequence[float | None] | None = None,
    kinds: Sequence[str] = KIND_NAMES,
) -> dict[str, Any]:
    """Score what reasonings say against the known distortions of their images.

    Args:
        analyses: One analysis per image.
        truths: The image's truth, same order; None where unknown.
        scores: The score each reasoning led to (for the band consistency figures), or None.
        kinds: The kinds to report, default every kind of :data:`qponder.reasoning.KINDS`.

    Returns:
        The figures defined in this module's docstring, JSON-serialisable.

    Raises:
        ValueError: When the sequences differ in length.
    """
    if len(analyses) != len(truths) or (scores is not None and len(scores) != len(analyses)):
        raise ValueError("analyses, truths and scores must have one entry per image")
    kinds = list(kinds)
    t = _tally(analyses, truths, kinds)
    counts, sev_pairs = t["counts"], t["sev_pairs"]
    per_kind = {}
    for k in kinds:
        c, pairs = counts[k], sev_pairs[k]
        per_kind[k] = {
            **c,
            **_prf(c["tp"], c["fp"], c["fn"]),
            "severity_srcc": spearman_or_none([p[0] for p in pairs], [p[1] for p in pairs]),
            "severity_pairs": len(pairs),
        }
    present = [k for k in kinds if counts[k]["support"] > 0]
    tp, fp, fn = (sum(counts[k][x] for k in kinds) for x in ("tp", "fp", "fn"))
    pooled = [p for k in kinds for p in sev_pairs[k]]
    conflicted = sum(1 for a in analyses if a.conflicts)
    out: dict[str, Any] = {
        "images": len(analyses),
        "judged": t["judged"],
        "no_truth": t["no_truth"],
        "unmapped": t["unmapped"],
        "per_kind": per_kind,
        "micro": {"tp": tp, "fp": fp, "fn": fn, **_prf(tp, fp, fn)},
        "macro": {
            "kinds": len(present),
            **{m: _mean([per_kind[k][m] for k in present]) for m in ("precision", "recall", "f1")},
        },
        "severity": {
            "srcc": spearman_or_none([p[0] for p in pooled], [p[1] for p in pooled]),
            "pairs": len(pooled),
        },
        "pristine": {
            "images": t["pristine"],
            "false_alarms": t["false_alarms"],
            "false_alarm_rate": _ratio(t["false_alarms"], t["pristine"]),
        },
        "unknown_sentences": _unknown_figures(analyses),
        "unreadable": _unreadable_figures(analyses),
        "confusion": {"true": t["labels"], "asserted": t["labels"], "counts": t["confusion"]},
        "conflicts": {"reasonings": conflicted, "rate": _ratio(conflicted, len(analyses))},
    }
    if scores is not None:
        out["band"] = _band_figures(analyses, scores)
    return out
