"""What a demo run shows, in statements that follow from its own figures: how the trained
stages' test SRCCs compare by their 95 % CIs (the paper's ablation), what each stage changed
(answer format, reasoning, consistency), what a reader may and may not conclude from a tiny
model trained on synthetic images, and where the trained model is.

The report (:mod:`qponder.demo.report`) and ``qponder demo``'s output print these; the
project's own targets for a full run are elsewhere (:mod:`qponder.demo.targets`, checked by
``benchmarks/demo_targets.py`` and the test suite), because a demo that scores a tiny model
on synthetic data has nothing to pass or fail for its reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STAGE_NAMES: dict[str, str] = {
    "base": "the untrained model",
    "sft_nocot": "answer-only SFT",
    "qponder_ci": "Q-Ponder-CI",
    "qponder": "Q-Ponder",
}
"""Each stage's name in a sentence."""

ABLATION: tuple[tuple[str, str], ...] = (("qponder_ci", "sft_nocot"), ("qponder", "qponder_ci"))
"""The paper's ablation as pairs (stage, the stage it adds to): CoT against the answers
alone, then GRPO against the SFT it starts from."""

WITHIN, OVERLAP, APART = "within", "overlap", "apart"


def ci_relation(
    a: float | None, ci_a: Sequence[float] | None, b: float | None, ci_b: Sequence[float] | None
) -> str | None:
    """How two estimates and their 95 % CIs relate.

    Returns:
        ``"within"``: each estimate lies inside the other's CI; ``"overlap"``: the CIs share
        values, but an estimate lies outside the other's CI; ``"apart"``: the CIs share no
        value; None when an estimate or a CI is missing.

    Example:
        >>> ci_relation(0.80, [0.76, 0.83], 0.81, [0.77, 0.84])
        'within'
        >>> ci_relation(0.81, [0.77, 0.84], 0.75, [0.71, 0.79])
        'overlap'
        >>> ci_relation(0.85, [0.82, 0.88], 0.70, [0.65, 0.75])
        'apart'
    """
    if a is None or b is None or not ci_a or not ci_b:
        return None
    if ci_a[1] < ci_b[0] or ci_b[1] < ci_a[0]:
        return APART
    if ci_a[0] <= b <= ci_a[1] and ci_b[0] <= a <= ci_b[1]:
        return WITHIN
    return OVERLAP


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def compare_stages(stages: dict[str, dict[str, Any]], stage: str, other: str) -> dict[str, Any]:
    """The test SRCC of ``stage`` against ``other``'s, by their 95 % CIs.

    Args:
        stages: The summary's ``stages`` (``srcc``, ``srcc_ci95`` of each).
        stage: The stage that adds something (e.g. ``qponder``).
        other: The stage it is compared with (e.g. ``qponder_ci``).

    Returns:
        ``{"stages": [stage, other], "srcc": [...], "srcc_ci95": [...], "relation":
        within | overlap | apart | None, "verdict": one sentence naming both CIs}``.
    """
    a, b = stages[stage]["srcc"], stages[other]["srcc"]
    ci_a, ci_b = stages[stage].get("srcc_ci95"), stages[other].get("srcc_ci95")
    relation = ci_relation(a, ci_a, b, ci_b)
    head = f"{STAGE_NAMES[stage]} {_num(a)} vs {STAGE_NAMES[other]} {_num(b)}"
    if relation is None:
        verdict = f"{head}: not compared (an SRCC or its CI is missing)"
    else:
        cis = f"{_ci(ci_a)} and {_ci(ci_b)}"
        if relation == WITHIN:
            verdict = f"{head}: within each other's 95% CIs ({cis}), which do not separate them"
        elif relation == OVERLAP:
            verdict = f"{head}: the 95% CIs overlap ({cis}) and do not separate them"
        else:
            higher = STAGE_NAMES[stage] if a > b else STAGE_NAMES[other]
            verdict = f"{head}: {higher} is higher, and the 95% CIs do not overlap ({cis})"
    return {"stages": [stage, other], "srcc": [a, b], "srcc_ci95": [ci_a, ci_b],
            "relation": relation, "verdict": verdict}  # fmt: skip


def ablation(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair of :data:`ABLATION` compared (:func:`compare_stages`): the summary's
    ``ablation``."""
    return [compare_stages(stages, stage, other) for stage, other in ABLATION]


def _format_line(stages: dict[str, dict[str, Any]]) -> str:
    """What SFT did to the answer format: parse failures of each stage."""
    fails = {s: f"{r['parse_failures']}/{r['n']}" for s, r in stages.items()}
    counts = (
        f"{fails['base']} for the untrained model, {fails['sft_nocot']} after answer-only SFT, "
        f"{fails['qponder_ci']} for Q-Ponder-CI, {fails['qponder']} for Q-Ponder"
    )
    trained = [stages[s]["parse_failures"] for s in ("sft_nocot", "qponder_ci", "qponder")]
    if max(trained) < stages["base"]["parse_failures"]:
        return f"SFT taught the answer format: parse failures {counts}."
    return f"Parse failures: {counts}."


def _reasoning_line(stages: dict[str, dict[str, Any]]) -> str | None:
    """What CoT SFT adds: a reasoning, graded against the known distortions."""
    ci, q = stages["qponder_ci"].get("description_f1"), stages["qponder"].get("description_f1")
    if ci is None:
        return None
    return (
        "CoT SFT adds a reasoning: it names the test images' known distortions with micro F1 "
        f"{ci:.3f} (Q-Ponder {_num(q)}); answer-only SFT writes none."
    )


def _consistency_line(stages: dict[str, dict[str, Any]]) -> str | None:
    """What GRPO did to the gap between the answer and the score its reasoning implies."""
    ci, q = stages["qponder_ci"]["consistency"], stages["qponder"]["consistency"]
    if ci is None or q is None:
        return None
    change = (
        "lower, so the answers agree more with their own reasoning"
        if q < ci
        else "not lower, so in this run GRPO did not make the answers agree more with their "
        "reasoning"
    )
    return (
        f"GRPO took the consistency gap (mean |answer - score implied by the reasoning alone|) "
        f"from {ci:.3f} (Q-Ponder-CI) to {q:.3f} (Q-Ponder), {change} (one measurement, no CI)."
    )


def stage_changes(summary: dict[str, Any]) -> list[str]:
    """What each stage changed in this run, one sentence each, from its figures: the answer
    format, the ablation's comparisons (their ``verdict``), the reasoning, the consistency."""
    stages = summary["stages"]
    lines = [_format_line(stages)]
    lines += [f"{c['verdict']}." for c in summary["ablation"]]
    lines += [x for x in (_reasoning_line(stages), _consistency_line(stages)) if x]
    return lines


def conclusions(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What a reader may conclude from this run, and what not.

    Args:
        summary: With ``training_data`` (``images``, ``photos``, ``parameters``).

    Returns:
        ``(may, may_not)``, one sentence each.
    """
    data = summary["training_data"]
    may = [
        "that every stage of the pipeline runs end to end, offline, on a CPU, each handing "
        "its files to the next, with the commands below and the recipe in recipe.yaml;",
        "what the table says about these held-out synthetic images (whose contents no "
        "training image shares): the answer format, the ranking (SRCC), the consistency gap.",
    ]
    may_not = [
        f"anything about photographs or any real IQA dataset: the model has "
        f"{data['parameters'] / 1e6:.1f} M parameters, started from random weights, and "
        f"learnt from {data['images']:,} synthetic images ({_photo_words(data)});",
        "anything about Q-Ponder at the paper's scale (a 7B student distilled from a 72B "
        "teacher on KonIQ-10k);",
        "an order between two stages whose 95% CIs overlap;",
        "these digits on another machine: the same machine type and seed give the same "
        "digits, but another CPU's kernels give other digits, so far by less than the width "
        "of a CI (docs/demo.md lists the runs seen).",
    ]
    return may, may_not


def _photo_words(data: dict[str, Any]) -> str:
    if not data["photos"]:
        return "procedural scenes of coloured shapes, none a photograph"
    return f"{data['photos']:,} of them crops of scikit-image's sample photographs"


def closing_lines(summary: dict[str, Any]) -> list[str]:
    """The last lines of the report and of ``qponder demo``'s output: where the trained
    model is, how to score with it, and a one-line warning about what it has seen."""
    data, q = summary["training_data"], summary["models"]["qponder"]
    if data["photos"]:
        seen = (
            f"this model has seen no photograph but {data['photos']:,} crops of scikit-image's "
            "sample photos among its synthetic training images"
        )
    else:
        seen = "this model has never seen a photograph, only synthetic scenes of coloured shapes"
    return [
        f"Trained model (Q-Ponder): {q} (Q-Ponder-CI: {summary['models']['qponder_ci']}); "
        f"score images with: qponder score --model {q} --out scores.jsonl IMAGES",
        f"Warning: {seen}; its scores and reasoning for real photos mean nothing.",
    ]


__all__ = [
    "ABLATION",
    "STAGE_NAMES",
    "ablation",
    "ci_relation",
    "closing_lines",
    "compare_stages",
    "conclusions",
    "stage_changes",
]
