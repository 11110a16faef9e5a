"""Compare two evaluation runs: per-dataset SRCC/PLCC differences with bootstrap CIs, and
on labelled datasets the micro F1 of the described distortions (``DescF1``).

The difference is computed from the two runs' ``predictions.jsonl``. Where both runs gave
a valid score to the same images (same dataset and image id), the comparison is paired:
the metrics of both runs are computed on exactly those images and the images are
resampled jointly, which gives a much tighter interval than two independent CIs. When the
runs share no scored image of a dataset, each run is resampled on its own (``paired:
false``). A difference is ``B - A``: positive means run B is better.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qponder.errors import QponderError
from qponder.evaluation.metrics import (
    compute_metrics,
    paired_bootstrap_diff,
    unpaired_bootstrap_diff,
)
from qponder.evaluation.report import group_by_dataset, summarize_dataset
from qponder.runfiles import read_jsonl

COMPARED = ("srcc", "plcc")


def load_run_predictions(run: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of ``RUN/predictions.jsonl`` (``run`` may also be the JSONL file itself).

    Raises:
        QponderError: When the file does not exist.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "predictions.jsonl"
    if not path.is_file():
        raise QponderError(f"{path}: no predictions.jsonl (is {run} a qponder eval run?)")
    return read_jsonl(path)


def _scored_by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for r in rows if r.get("score") is not None}


def _check_same_mos(name: str, common: list[str], a: dict, b: dict) -> None:
    bad = [i for i in common if abs(float(a[i]["mos"]) - float(b[i]["mos"])) > MOS_TOLERANCE]
    if bad:
        i = bad[0]
        shown_a, shown_b = _distinct(float(a[i]["mos"]), float(b[i]["mos"]))
        raise QponderError(
            f"dataset {name!r}: the runs disagree on the MOS of {len(bad)} common image(s), "
            f"e.g. id {i!r}: {shown_a} vs {shown_b}; they did not evaluate the same labels"
        )


MOS_TOLERANCE = 1e-6  # MOS values closer than this are the same label


def _distinct(x: float, y: float) -> tuple[str, str]:
    """``x`` and ``y`` rounded to the fewest decimals (at least 2) that tell them apart:
    ``2.6875999999999998`` is shown as ``2.69`` next to ``3.19``, as ``2.687600`` next to
    ``2.687602``."""
    for digits in range(2, 12):
        shown = f"{x:.{digits}f}", f"{y:.{digits}f}"
        if shown[0] != shown[1]:
            return shown
    return repr(x), repr(y)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare_dataset(
    name: str,
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare one dataset's prediction rows of two runs.

    Returns:
        ``{paired, n_pairs, a: {...}, b: {...}, srcc: {a, b, diff, ci95}, plcc: {...}}``
        where ``a``/``b`` are each run's own figures on all its images (n, n_scored, srcc,
        plcc, parse_failures) and ``srcc``/``plcc`` hold the compared values: on the common
        images when ``paired``, else on each run's own images.
    """
    sa, sb = (summarize_dataset(r, n_resamples=0) for r in (rows_a, rows_b))
    own = ("n", "n_scored", "srcc", "plcc", "parse_failures")
    out: dict[str, Any] = {
        "a": {k: sa[k] for k in own},
        "b": {k: sb[k] for k in own},
    }
    ia, ib = _scored_by_id(rows_a), _scored_by_id(rows_b)
    common = [i for i in ia if i in ib]
    out["paired"] = bool(common)
    out["n_pairs"] = len(common)
    out["only_a"] = len(ia) - len(common)
    out["only_b"] = len(ib) - len(common)
    if common:
        _check_same_mos(name, common, ia, ib)
        mos = [float(ia[i]["mos"]) for i in common]
        pa = [float(ia[i]["score"]) for i in common]
        pb = [float(ib[i]["score"]) for i in common]
        ma = compute_metrics(pa, mos, n_resamples=0)
        mb = compute_metrics(pb, mos, n_resamples=0)
        for metric in COMPARED:
            ci = paired_bootstrap_diff(pa, pb, mos, metric, n_resamples=n_resamples, seed=seed)
            out[metric] = {
                "a": ma[metric],
                "b": mb[metric],
                "diff": _diff(ma[metric], mb[metric]),
                "ci95": ci,
            }
        return out
    pa, ma_ = [float(r["score"]) for r in ia.values()], [float(r["mos"]) for r in ia.values()]
    pb, mb_ = [float(r["score"]) for r in ib.values()], [float(r["mos"]) for r in ib.values()]
    for metric in COMPARED:
        ci = unpaired_bootstrap_diff(pa, ma_, pb, mb_, metric, n_resamples=n_resamples, seed=seed)
        out[metric] = {
            "a": sa[metric],
            "b": sb[metric],
            "diff": _diff(sa[metric], sb[metric]),
            "ci95": ci,
        }
    return out


def _labelled(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows with a completion and a complete distortion truth, by image id."""
    return {
        str(r["id"]): r
        for r in rows
        if r.get("text") and r.get("distortions") and not r["distortions"].get("unmapped")
    }


def compare_description(
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Micro F1 of the described distortions, run B against run A, on the labelled images
    both runs described, with a paired bootstrap CI (images resampled jointly); None when
    they share no such image."""
    import numpy as np

    from qponder.data.distortion_labels import DistortionTruth
    from qponder.evaluation.description import image_counts
    from qponder.evaluation.metrics import percentile_ci
    from qponder.reasoning import analyse_reasoning

    la, lb = _labelled(rows_a), _labelled(rows_b)
    common = [i for i in la if i in lb]
    if not common:
        return None

    def counts(rows: dict[str, dict[str, Any]]) -> np.ndarray:
        return np.array([
            image_counts(analyse_reasoning(rows[i].get("reasoning") or ""),
                         DistortionTruth.from_dict(rows[i]["distortions"]))
            for i in common
        ], dtype=float)  # fmt: skip

    def micro_f1(c: np.ndarray) -> np.ndarray:  # c: [..., images, 3]
        tp, fp, fn = c[..., 0].sum(-1), c[..., 1].sum(-1), c[..., 2].sum(-1)
        den = 2 * tp + fp + fn
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)

    ca, cb = counts(la), counts(lb)
    fa, fb = float(micro_f1(ca)), float(micro_f1(cb))
    idx = np.random.default_rng(seed).integers(0, len(common), (n_resamples, len(common)))
    diffs = micro_f1(cb[idx]) - micro_f1(ca[idx]) if n_resamples else np.array([])
    finite = lambda x: None if math.isnan(x) else x  # noqa: E731
    return {
        "n_pairs": len(common),
        "micro_f1": {
            "a": finite(fa),
            "b": finite(fb),
            "diff": finite(fb - fa),
            "ci95": percentile_ci(diffs[np.isfinite(diffs)]) if len(diffs) else None,
        },
    }


def compare_runs(
    run_a: str | os.PathLike,
    run_b: str | os.PathLike,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-dataset differences of SRCC/PLCC between two eval runs, with 95% bootstrap CIs.

    Args:
        run_a: Run directory (or its predictions.jsonl) of the baseline.
        run_b: Run directory (or its predictions.jsonl) compared against it.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        ``{run_a, run_b, datasets: {NAME: compare_dataset(...)}, only_in_a, only_in_b}``,
        JSON-ready; ``only_in_*`` list datasets evaluated by one run only.

    Raises:
        QponderError: When a run has no predictions, the runs share no dataset, or they
            disagree on a MOS.
    """
    ga = group_by_dataset(load_run_predictions(run_a))
    gb = group_by_dataset(load_run_predictions(run_b))
    if not set(ga) & set(gb):  # nothing to compare: say so, not an empty table
        raise QponderError(
            f"the runs share no dataset: A ({run_a}) has {', '.join(ga) or 'none'}; "
            f"B ({run_b}) has {', '.join(gb) or 'none'}"
        )
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "datasets": {
            name: {
                **compare_dataset(name, ga[name], gb[name], n_resamples=n_resamples, seed=seed),
                "description": compare_description(ga[name], gb[name], n_resamples, seed),
            }
            for name in ga
            if name in gb
        },
        "only_in_a": [n for n in ga if n not in gb],
        "only_in_b": [n for n in gb if n not in ga],
    }


def _f(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _compared(m: dict[str, Any]) -> list[str]:
    """The A, B and ``B-A [95% CI]`` cells of one compared metric (``*``: the CI excludes 0)."""
    ci = m["ci95"]
    star = " *" if ci and (ci[0] > 0 or ci[1] < 0) else ""
    return [_f(m["a"]), _f(m["b"]), f"{_f(m['diff'], signed=True)}{_ci(ci)}{star}"]


_HEAD = ("dataset", "images", "metric", "A", "B", "B-A [95% CI]")
_RIGHT = (False, True, False, True, True, False)  # numbers and counts right-aligned


def format_comparison(result: dict[str, Any]) -> str:
    """Render :func:`compare_runs`'s result as a text table (B - A, 95% CIs).

    Every column is as wide as its widest cell or header, so a long dataset name or image
    count never pushes a row out of line with the header. A difference whose CI excludes 0
    is marked with ``*``.
    """
    body: list[list[str] | str] = []  # a row of cells, or a note under the dataset's rows
    for name, d in result["datasets"].items():
        images = (
            f"{d['n_pairs']} paired"
            if d["paired"]
            else f"{d['a']['n_scored']}/{d['b']['n_scored']} unpaired"
        )
        for metric in COMPARED:
            body.append([name, images, metric.upper(), *_compared(d[metric])])
            name, images = "", ""
        desc = d.get("description")
        if desc:
            body.append(["", f"{desc['n_pairs']} labelled", "DescF1", *_compared(desc["micro_f1"])])
        a, b = d["a"], d["b"]
        body.append(
            f"parse failures: A {a['parse_failures']}/{a['n']}, B {b['parse_failures']}/{b['n']}"
        )
    rows = [r for r in body if isinstance(r, list)]
    widths = [max(len(cell) for cell in column) for column in zip(_HEAD, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, _RIGHT, strict=True)
        ).rstrip()

    indent = " " * (widths[0] + 2)
    table = [line(r) if isinstance(r, list) else indent + r for r in body]
    rule = "-" * max(len(text) for text in [line(_HEAD), *table])
    lines = [f"A: {result['run_a']}", f"B: {result['run_b']}", "", line(_HEAD), rule, *table]
    for key, label in (("only_in_a", "only in A"), ("only_in_b", "only in B")):
        if result[key]:
            lines.append(f"{label}: {', '.join(result[key])}")
    lines += ["", "* the 95% CI of the difference excludes 0."]
    return "\n".join(lines) + "\n"
