"""Scatter plots of predictions against MOS with the fitted logistic curve, and the
confusion of described against true distortion kinds (PNG, no display).

Figures are drawn on matplotlib's Agg canvas without pyplot, so plotting needs no display,
leaves no global figure state behind and is safe in worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qponder.evaluation.metrics import LogisticFit, logistic4


def _fit_params(fit: LogisticFit | dict[str, Any] | None) -> list[float] | None:
    if fit is None:
        return None
    if isinstance(fit, LogisticFit):
        return list(fit.params) if fit.params is not None else None
    return fit.get("params")


def plot_scatter(
    pred: list[float] | np.ndarray,
    mos: list[float] | np.ndarray,
    out: str | os.PathLike,
    fit: LogisticFit | dict[str, Any] | None = None,
    title: str = "",
    note: str = "",
) -> Path:
    """Write a scatter plot of predictions (x) against MOS (y) as a PNG.

    Args:
        pred: Predicted scores of the images that have one.
        mos: Their MOS.
        out: Output PNG path.
        fit: The logistic fit (a :class:`LogisticFit` or its ``to_dict()``); its curve is
            drawn when it converged.
        title: Figure title, e.g. the dataset name and SRCC/PLCC.
        note: Text written in the plot, e.g. the parse failure count. With no points the
            plot shows only this note.

    Returns:
        The path written.
    """
    out = Path(out)
    fig = Figure(figsize=(4.8, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    if pred.size:
        ax.scatter(pred, mos, s=9, alpha=0.6, edgecolors="none", label="images")
        params = _fit_params(fit)
        if params is not None:
            xs = np.linspace(min(pred.min(), 1.0), max(pred.max(), 5.0), 200)
            ax.plot(xs, logistic4(xs, *params), color="black", lw=1.5, label="logistic fit")
        ax.legend(loc="upper left", fontsize=8)
    else:
        note = note or "no valid predictions"
    if note:
        ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    ax.set_xlim(0.8, 5.2)
    ax.set_ylim(0.8, 5.2)
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS (1-5)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_dataset(
    rows: list[dict[str, Any]], summary: dict[str, Any], out: str | os.PathLike, name: str
) -> Path:
    """Scatter plot of one dataset's prediction rows, annotated from its summary."""
    pairs = [(r["score"], r["mos"]) for r in rows if r.get("score") is not None]
    title = f"{name}: SRCC {_fmt(summary.get('srcc'))}, PLCC {_fmt(summary.get('plcc'))}"
    note = f"n={summary.get('n_scored', len(pairs))}, parse failures {summary.get('parse_failures', 0)}"
    return plot_scatter(
        [p for p, _ in pairs],
        [m for _, m in pairs],
        out,
        fit=summary.get("fit"),
        title=title,
        note=note,
    )


def plot_confusion(description: dict[str, Any], out: str | os.PathLike, title: str) -> Path:
    """Heat map of the description confusion matrix (true kind x asserted kind), each row
    divided by its number of images so that rows of rare kinds stay readable.

    Args:
        description: A ``description`` summary (:mod:`qponder.evaluation.description`).
        out: The PNG to write.
        title: The figure's title.
    """
    conf = description["confusion"]
    true, said = conf["true"], conf["asserted"]
    counts = np.asarray(conf["counts"], dtype=float)
    support = [description["per_kind"].get(k, {}).get("support", 0) for k in true[:-1]]
    support.append(description["pristine"]["images"])
    keep = [i for i, n in enumerate(support) if n]  # rows with images only
    shares = counts[keep] / np.asarray([support[i] for i in keep], dtype=float)[:, None]
    fig = Figure(figsize=(1.2 + 0.55 * len(said), 1.0 + 0.45 * max(1, len(keep))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(shares if len(keep) else np.zeros((1, len(said))), vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(said)), said, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), [f"{true[i]} ({support[i]})" for i in keep], fontsize=8)
    for r, i in enumerate(keep):
        for c in range(len(said)):
            if counts[i, c]:
                ax.text(c, r, f"{shares[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if shares[r, c] > 0.6 else "black")  # fmt: skip
    ax.set_xlabel("kind the reasoning asserts")
    ax.set_ylabel("true kind (images)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
