"""Summaries and the Markdown report of an evaluation, computed from prediction rows alone.

A prediction row is one image: ``{id, dataset, image, mos, score, expected_score,
reasoning, error}``. ``score`` is None when the model gave no valid score; ``error`` then
says why: one of the parse failure reasons of :mod:`qponder.parsing` (its
``PARSE_FAILURES``: ``no_answer``, ``no_number``, ``out_of_range``, ``other_scale``,
``ambiguous``, ``no_score_key``), or another error such as ``bad_image:truncated`` or
``request_failed: ...``. Metrics use only rows with a score; every other row is counted, never
given a made-up score.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qponder.evaluation.metrics import FIT_LOGISTIC4, compute_metrics
from qponder.parsing import PARSE_FAILURES


def group_by_dataset(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per dataset name, datasets in order of first appearance."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row.get("dataset", "")), []).append(row)
    return out


def _scored(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(float(r[key]), float(r["mos"])) for r in rows if r.get(key) is not None]
    return [p for p, _ in pairs], [m for _, m in pairs]


def _sample_parse_failures(rows: list[dict[str, Any]]) -> int | None:
    """Parse failures among the k sampled answers (None when no row has samples)."""
    samples = [s for r in rows for s in (r.get("samples") or [])]
    if not samples:
        return None
    return sum(1 for s in samples if s.get("error") in PARSE_FAILURES)


def summarize_dataset(
    rows: list[dict[str, Any]],
    fit: str | None = FIT_LOGISTIC4,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics and failure counts of one dataset's prediction rows.

    Args:
        rows: Prediction rows of one dataset.
        fit: Fit used before PLCC/RMSE (see :func:`~qponder.evaluation.metrics.plcc`).
        n_resamples: Bootstrap resamples for the 95% CIs (0 disables them).
        seed: Bootstrap seed.

    Returns:
        ``{n, n_scored, srcc, plcc, plcc_raw, krcc, rmse, ci95: {srcc, plcc},
        parse_failures, parse_failure_reasons, other_errors, fit, expected_score}``.
        ``n`` counts every image, ``n_scored`` those with a valid score (the ones the
        metrics use); ``expected_score`` holds SRCC/PLCC of the logit read-out (or None
        when no row has one) and ``expected_score_missing`` counts the rows without one by
        their ``expected_score_reason``. With no valid score every metric is None.
    """
    reasons = Counter(r.get("error") for r in rows if r.get("score") is None)
    parse = {k: v for k, v in sorted(reasons.items()) if k in PARSE_FAILURES}
    other = {
        str(k): v
        for k, v in sorted(reasons.items(), key=lambda kv: str(kv[0]))
        if k not in PARSE_FAILURES
    }
    pred, mos = _scored(rows, "score")
    m = compute_metrics(pred, mos, fit=fit, n_resamples=n_resamples, seed=seed)
    summary: dict[str, Any] = {
        "n": len(rows),
        "n_scored": m["n"],
        **{k: m[k] for k in ("srcc", "plcc", "plcc_raw", "krcc", "rmse", "ci95")},
        "parse_failures": sum(parse.values()),
        "parse_failure_reasons": parse,
        "other_errors": other,
        "fit": m["fit"],
    }
    n_sample_fail = _sample_parse_failures(rows)
    if n_sample_fail is not None:
        summary["sample_parse_failures"] = n_sample_fail
    e_pred, e_mos = _scored(rows, "expected_score")
    if e_pred:
        e = compute_metrics(e_pred, e_mos, fit=fit, n_resamples=0)
        summary["expected_score"] = {"n": e["n"], "srcc": e["srcc"], "plcc": e["plcc"]}
    else:
        summary["expected_score"] = None
    # why the read-out is missing, image by image (e.g. a server without logprobs)
    missing = Counter(
        r.get("expected_score_reason") or "unknown" for r in rows if r.get("expected_score") is None
    )
    summary["expected_score_missing"] = dict(sorted(missing.items()))
    summary["description"] = describe_rows(rows)
    gaps = [abs(float(r["score"]) - float(r["implied_score"])) for r in rows
            if r.get("score") is not None and r.get("implied_score") is not None]  # fmt: skip
    summary["description_judge"] = judge_description_rows(rows)
    judged = any("implied_score" in r for r in rows)
    summary["consistency"] = (
        {"n": len(gaps), "mean_abs_gap": sum(gaps) / len(gaps) if gaps else None}
        if judged
        else None
    )
    return summary


def judge_description_rows(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the description judge found (rows with ``description_grades``), or None when no
    row was graded: claims graded, the share it sees in the image (``accuracy``, overall and
    per kind), reasonings graded, and the errors by kind (``request_failed``, ``malformed``,
    ``refused``)."""
    graded = [r["description_grades"] for r in rows if r.get("description_grades") is not None]
    if not graded and not any("description_grades" in r for r in rows):
        return None
    per_kind: dict[str, list[int]] = {}
    errors: Counter = Counter()
    for g in graded:
        if g.get("error"):
            errors[str(g["error"]).split(":", 1)[0]] += 1
            continue
        for kind, visible in g["grades"].items():
            c = per_kind.setdefault(kind, [0, 0])
            c[0] += 1
            c[1] += bool(visible)
    claims = sum(c[0] for c in per_kind.values())
    visible = sum(c[1] for c in per_kind.values())
    return {
        "reasonings": sum(1 for g in graded if not g.get("error")),
        "claims": claims,
        "visible": visible,
        "accuracy": visible / claims if claims else None,
        "per_kind": {
            k: {"claims": c[0], "visible": c[1], "accuracy": c[1] / c[0]}
            for k, c in sorted(per_kind.items())
        },
        "errors": dict(sorted(errors.items())),
    }


def describe_rows(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Description accuracy of the rows whose images have known distortions (rows with a
    ``distortions`` entry, see :mod:`qponder.data.distortion_labels`), or None when none has:
    see :func:`qponder.evaluation.description.description_metrics`. Rows without a
    completion (bad image, failed request) are left out."""
    from qponder.data.distortion_labels import DistortionTruth
    from qponder.evaluation.description import description_metrics
    from qponder.reasoning import analyse_reasoning

    labelled = [r for r in rows if r.get("distortions") is not None and r.get("text")]
    if not labelled:
        return None
    return description_metrics(
        [analyse_reasoning(r.get("reasoning") or "") for r in labelled],
        [DistortionTruth.from_dict(r["distortions"]) for r in labelled],
        scores=[r.get("score") for r in labelled],
    )


def summarize(
    rows: Iterable[dict[str, Any]],
    fit: str | None = FIT_LOGISTIC4,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"datasets": {NAME: summarize_dataset(...)}}`` over rows of several datasets."""
    return {
        "datasets": {
            name: summarize_dataset(ds_rows, fit=fit, n_resamples=n_resamples, seed=seed)
            for name, ds_rows in group_by_dataset(rows).items()
        }
    }


# --------------------------------------------------------------------------- Markdown


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def plot_filename(dataset: str, kind: str = "scatter") -> str:
    """File name of a dataset's plot (``scatter`` or ``confusion``) in the run directory."""
    return f"{kind}-{re.sub(r'[^A-Za-z0-9._-]+', '_', dataset) or 'dataset'}.png"


def _description_details(name: str, d: dict[str, Any], with_plots: bool) -> list[str]:
    """The report's lines on what the reasoning says about a labelled dataset."""
    micro, sev, pristine = d["micro"], d["severity"], d["pristine"]
    lines = [
        f"Description accuracy ({d['judged']} images with known distortions): micro F1 "
        f"{_num(micro['f1'])} (precision {_num(micro['precision'])}, recall "
        f"{_num(micro['recall'])}); severity SRCC {_num(sev['srcc'])} over {sev['pairs']} "
        f"stated severities; unreadable sentences {_num(d['unknown_sentences']['share'])}"
        + (
            f"; false alarms on {pristine['images']} pristine images "
            f"{_num(pristine['false_alarm_rate'])}"
            if pristine["images"]
            else ""
        ),
        "",
        "| kind | images | asserted | precision | recall | F1 | severity SRCC |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, k in d["per_kind"].items():
        if k["support"] or k["asserted"]:
            lines.append(
                f"| {kind} | {k['support']} | {k['asserted']} | {_num(k['precision'])} | "
                f"{_num(k['recall'])} | {_num(k['f1'])} | {_num(k['severity_srcc'])} |"
            )
    if with_plots:
        lines.append(f"\n![{name} description]({plot_filename(name, 'confusion')})")
    return [*lines, ""]


def _dataset_details(name: str, s: dict[str, Any], with_plots: bool) -> list[str]:
    lines = [f"### {name}", ""]
    lines.append(
        f"- images: {s['n']}, scored: {s['n_scored']}, parse failures: {s['parse_failures']}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in s["parse_failure_reasons"].items()) + ")"
            if s["parse_failure_reasons"]
            else ""
        )
    )
    if s.get("other_errors"):
        lines.append(
            "- other errors: " + ", ".join(f"{k}: {v}" for k, v in s["other_errors"].items())
        )
    if s.get("skipped_rows"):
        lines.append(f"- bad label rows skipped (not scored): {s['skipped_rows']}")
    if "sample_parse_failures" in s:
        lines.append(f"- parse failures among sampled answers: {s['sample_parse_failures']}")
    if not s["n_scored"]:
        lines.append("- no image has a valid score: every metric is undefined (null)")
        if with_plots:
            lines.append(f"\n![{name}]({plot_filename(name)})")
        return [*lines, ""]
    lines.append(f"- SRCC {_num(s['srcc'])}{_ci(s['ci95']['srcc'])} (95% bootstrap CI)")
    lines.append(
        f"- PLCC {_num(s['plcc'])}{_ci(s['ci95']['plcc'])}; without fit {_num(s['plcc_raw'])}"
    )
    lines.append(f"- KRCC {_num(s['krcc'])}, RMSE {_num(s['rmse'])}")
    fit = s["fit"]
    if fit["method"] == "none":
        lines.append("- PLCC/RMSE on raw predictions (no fit)")
    elif fit["converged"]:
        params = ", ".join(f"{b:.4g}" for b in fit["params"])
        lines.append(f"- PLCC/RMSE after the {fit['method']} fit, params ({params})")
    else:
        lines.append(
            f"- {fit['method']} fit failed ({fit['reason']}): PLCC/RMSE use raw predictions"
        )
    j = s.get("description_judge")
    if j:
        lines.append(
            f"- description judge: {j['visible']} of {j['claims']} asserted distortions seen in "
            f"the image ({_num(j['accuracy'])}) over {j['reasonings']} reasonings"
            + (f"; not graded: {j['errors']}" if j["errors"] else "")
        )
    c = s.get("consistency")
    if c:
        lines.append(
            f"- consistency: mean |answer - score the reasoning implies| {_num(c['mean_abs_gap'])} "
            f"over {c['n']} images (the judge reads the reasoning alone)"
        )
    e = s.get("expected_score")
    if e:
        lines.append(
            f"- expected-score read-out (n={e['n']}): SRCC {_num(e['srcc'])}, PLCC {_num(e['plcc'])}"
        )
    if with_plots:
        lines.append(f"\n![{name}]({plot_filename(name)})")
    lines.append("")
    if s.get("description"):
        lines += _description_details(name, s["description"], with_plots)
    return lines


def format_report(
    summary: dict[str, Any],
    title: str = "Evaluation report",
    meta: dict[str, Any] | None = None,
    with_plots: bool = True,
) -> str:
    """Render a summary as Markdown: the paper-style table, then details per dataset.

    Args:
        summary: Output of :func:`summarize`.
        title: First heading.
        meta: Lines shown under the title, e.g. ``{"model": ..., "split": ...}``.
        with_plots: Link each dataset's scatter plot (:func:`plot_filename`).

    Returns:
        The Markdown text: a table with datasets as columns and rows PLCC, SRCC and parse
        failures (``failures / images``), as in the paper's tables.
    """
    datasets = summary["datasets"]
    names = list(datasets)
    lines = [f"# {title}", ""]
    for key, value in (meta or {}).items():
        lines.append(f"- {key}: {value}")
    if meta:
        lines.append("")
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    lines.append("| PLCC | " + " | ".join(_num(datasets[n]["plcc"]) for n in names) + " |")
    lines.append("| SRCC | " + " | ".join(_num(datasets[n]["srcc"]) for n in names) + " |")
    lines.append(
        "| Parse failures | "
        + " | ".join(f"{datasets[n]['parse_failures']} / {datasets[n]['n']}" for n in names)
        + " |"
    )
    lines += [
        "",
        "PLCC after the 4-parameter logistic fit (VQEG); images without a valid score are",
        "left out of the metrics and counted as parse failures or errors.",
        "",
    ]
    for name in names:
        lines += _dataset_details(name, datasets[name], with_plots)
    return "\n".join(lines).rstrip() + "\n"


def write_report_files(
    run_dir: str | os.PathLike,
    rows: list[dict[str, Any]],
    fit: str | None = FIT_LOGISTIC4,
    n_resamples: int = 1000,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    dataset_meta: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and one scatter PNG per dataset into ``run_dir``.

    Args:
        run_dir: The run directory (created if needed).
        rows: Every prediction row of the run.
        fit: Fit used before PLCC/RMSE.
        n_resamples: Bootstrap resamples for the CIs.
        seed: Bootstrap seed.
        meta: Extra top-level entries of ``summary.json`` (model, split, ...), also listed
            under the report's title.
        dataset_meta: Extra entries of each dataset's summary, ``{NAME: {...}}`` (eval:
            ``skipped_rows``, the bad label rows left out), for datasets that have rows.

    Returns:
        The summary written to ``summary.json``.
    """
    from qponder.evaluation.plots import plot_confusion, plot_dataset
    from qponder.runfiles import write_json_atomic

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, fit=fit, n_resamples=n_resamples, seed=seed)
    for name, extra in (dataset_meta or {}).items():
        if name in summary["datasets"]:
            summary["datasets"][name].update(extra)
    groups = group_by_dataset(rows)
    for name, ds_summary in summary["datasets"].items():
        plot_dataset(groups[name], ds_summary, run_dir / plot_filename(name), name)
        if ds_summary.get("description"):
            title = f"{name}: what the reasoning describes"
            plot_confusion(ds_summary["description"], run_dir / plot_filename(name, "confusion"),
                           title)  # fmt: skip
    full = {**(meta or {}), **summary}
    write_json_atomic(run_dir / "summary.json", full)
    text = format_report(summary, meta=meta)
    tmp = run_dir / "report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, run_dir / "report.md")
    return full
