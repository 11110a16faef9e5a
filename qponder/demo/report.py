"""The demo's ``report.md`` and its figures: what the run demonstrates and what a reader may
conclude from it, the stage table, training curves (loss, validation SRCC, GRPO reward
components), one scatter plot per stage, and where the trained model is; and the lines
``qponder demo`` prints when done."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qponder.config import Recipe
from qponder.demo.config import demo_settings
from qponder.demo.findings import STAGE_NAMES, closing_lines, conclusions, stage_changes
from qponder.demo.paths import STAGE_TITLES, STAGES, TRAINED_STAGES, DemoPaths
from qponder.demo.supervisor import stage_command
from qponder.rewards import REWARD_NAMES
from qponder.runfiles import read_jsonl, write_text_atomic


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [s for s, _ in pts], [v for _, v in pts]


def plot_training(runs: dict[str, Path], out: str | os.PathLike) -> Path:
    """Training loss and validation SRCC of the SFT runs, validation SRCC of GRPO.

    Args:
        runs: Stage name -> run directory (with ``metrics.jsonl``); ``qponder`` is GRPO.
        out: PNG path.
    """
    fig = _figure(12.0, 3.6)
    loss_ax, val_ax, grpo_ax = fig.subplots(1, 3)
    for stage, run in runs.items():
        records = read_jsonl(Path(run) / "metrics.jsonl")
        steps, vals = _series(records, "val/srcc")
        if stage == "qponder":
            grpo_ax.plot(steps, vals, marker="o", ms=3, label="Q-Ponder (GRPO)")
            continue
        ls, lv = _series([r for r in records if "train_loss" not in r], "loss")
        loss_ax.plot(ls, lv, label=stage)
        val_ax.plot(steps, vals, marker="o", ms=3, label=stage)
    for ax, title in (
        (loss_ax, "SFT loss (completion tokens)"),
        (val_ax, "SFT: validation SRCC"),
        (grpo_ax, "GRPO: validation SRCC"),
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    loss_ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out)
    return Path(out)


def plot_rewards(grpo_run: Path, out: str | os.PathLike) -> Path:
    """Mean of each GRPO reward component per logging step."""
    records = read_jsonl(Path(grpo_run) / "metrics.jsonl")
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    for name in REWARD_NAMES:
        steps, vals = _series(records, f"rewards/{name}/mean")
        if steps:
            ax.plot(steps, vals, label=name)
    ax.set_title("GRPO reward components (mean per step)", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    return Path(out)


def plot_stage_scatters(
    rows: dict[str, list[dict[str, Any]]], titles: dict[str, str], out: str | os.PathLike
) -> Path:
    """One panel per stage: parsed score against MOS on the test split."""
    fig = _figure(3.2 * len(rows), 3.4)
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, (stage, stage_rows) in zip(axes, rows.items(), strict=True):
        pairs = [(r["score"], r["mos"]) for r in stage_rows if r.get("score") is not None]
        if pairs:
            ax.scatter(
                [p for p, _ in pairs], [m for _, m in pairs], s=6, alpha=0.5, edgecolors="none"
            )
        failed = len(stage_rows) - len(pairs)
        ax.text(0.97, 0.03, f"parse failures {failed}/{len(stage_rows)}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7)  # fmt: skip
        ax.plot([1, 5], [1, 5], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0.8, 5.2)
        ax.set_ylim(0.8, 5.2)
        ax.set_title(titles[stage], fontsize=8)
        ax.set_xlabel("predicted score")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MOS")
    fig.tight_layout()
    fig.savefig(out)
    return Path(out)


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _demonstrated(summary: dict[str, Any], pretext_steps: int) -> list[str]:
    """The report's first section: that every stage ran, and what each changed."""
    n_test = summary["stages"]["base"]["n"]
    kept = (summary.get("distillation") or {}).get("kept")
    rows = f" ({kept:,} rows kept)" if kept is not None else ""
    pretext = f" and its vision pretext ({pretext_steps} steps)" if pretext_steps else ""
    return [
        "## What this run demonstrates",
        "",
        "Every stage of the Q-Ponder pipeline ran to completion, offline, on this CPU: "
        f"synthetic data ({summary['training_data']['images']:,} training images), the tiny "
        f"model{pretext}, distillation from the synthetic teacher{rows}, "
        "answer-only and CoT SFT, GRPO from the CoT SFT model, the evaluation of four models "
        f"on {n_test} held-out test images, and the consistency judge. What each stage "
        "changed, from the table below:",
        "",
        *[f"- {line}" for line in stage_changes(summary)],
        "",
    ]


def _conclusions(summary: dict[str, Any]) -> list[str]:
    """What a reader may and may not conclude from the run."""
    may, may_not = conclusions(summary)
    return [
        "## What you may and may not conclude",
        "",
        "You may conclude:",
        "",
        *[f"- {line}" for line in may],
        "",
        "You may not conclude:",
        "",
        *[f"- {line}" for line in may_not],
        "",
    ]


def _stage_table(summary: dict[str, Any], titles: dict[str, str]) -> list[str]:
    """The held-out test table, one row per stage, and what its columns mean."""
    lines = [
        "## Held-out test split",
        "",
        "| stage | SRCC | SRCC 95% CI | PLCC | parse failures | consistency (mean abs gap to judge) "
        "| SRCC of the expected score | description F1 |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage, s in summary["stages"].items():
        ci = s.get("srcc_ci95")
        ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        lines.append(
            f"| {titles[stage]} | {_num(s['srcc'])} | {ci_text} | {_num(s['plcc'])} | "
            f"{s['parse_failures']}/{s['n']} | {_num(s['consistency'])} | "
            f"{_num(s.get('srcc_expected'))} | {_num(s.get('description_f1'))} |"
        )
    lines += [
        "",
        "Consistency: the frozen Q-Ponder-CI (GRPO's judge) reads each reasoning without the "
        "image and the answer; its probability-weighted score is compared with the answer. "
        "Lower is more consistent; n/a where there is no reasoning or no parsed answer. "
        "The expected score is the probability-weighted score digit at the answer position "
        "(next to the parsed answer in predictions.jsonl); the SRCC column is of the parsed answer. "
        "Description F1: the micro F1 of the distortion kinds the reasoning asserts against the "
        "synthetic images' known distortions (docs/evaluation.md); each stage's eval/report.md "
        "has the per-kind table.",
        "",
    ]
    return lines


def format_report(
    summary: dict[str, Any], titles: dict[str, str], commands: list[str], pretext_steps: int = 0
) -> str:
    """The Markdown text of ``report.md``: what the run demonstrates and what not, its
    table, figures, stage times and commands, and last the trained model and its warning
    (``pretext_steps``: those of the tiny model's vision pretext, 0 for none)."""
    quick = " (--quick)" if summary.get("quick") else ""
    lines = [
        "# qponder demo",
        "",
        f"Whole pipeline on the tiny offline Qwen2.5-VL and synthetic data{quick}: "
        f"{summary['wall_s']:.0f} s wall time, peak memory {summary['peak_rss_gib']:.2f} GiB "
        "(resident memory of the demo and its subprocesses, summed).",
        "",
        *_demonstrated(summary, pretext_steps),
        *_conclusions(summary),
        *_stage_table(summary, titles),
        "## Figures",
        "",
        "![scatter](scatter.png)",
        "",
        "![training](training.png)",
        "",
        "![rewards](rewards.png)",
        "",
        "## Stage times (s)",
        "",
        *[f"- {k}: {v:.0f}" for k, v in summary["stage_seconds"].items()],
        "",
        "## How each training stage was run",
        "",
        "The demo ran each training command through `python -m qponder.demo.worker`, which "
        "adds `--threads-file DIR/logs/<stage>.threads` (the cores a finished run frees go to "
        "the runs still training) and otherwise trains as the command does.",
        "",
        "```",
        *commands,
        "```",
        "",
        "## The trained model",
        "",
        *[part for line in closing_lines(summary) for part in (line, "")],
    ]
    return "\n".join(lines)


def format_console(summary: dict[str, Any], report: str | os.PathLike) -> str:
    """What ``qponder demo`` prints when it is done: the test SRCCs, what each stage
    changed, where the report is, and last the trained model and its warning."""
    lines = [f"held-out test split, SRCC [95% CI] ({summary['wall_s']:.0f} s, peak "
             f"{summary['peak_rss_gib']:.2f} GiB):"]  # fmt: skip
    for stage, s in summary["stages"].items():
        ci = s.get("srcc_ci95")
        ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        lines.append(
            f"  {STAGE_NAMES[stage]:<20} {_num(s['srcc'])}{ci_text}"
            f"  ({s['parse_failures']}/{s['n']} parse failures)"
        )
    lines += ["", *[f"- {line}" for line in stage_changes(summary)], ""]
    lines += [f"Report, with what this run does and does not show: {report}", ""]
    lines += closing_lines(summary)
    return "\n".join(lines)


def write_report(paths: DemoPaths, recipe: Recipe, summary: dict[str, Any]) -> Path:
    """Write ``report.md``, ``scatter.png``, ``training.png`` and ``rewards.png`` into the
    demo directory; returns the report's path."""
    root = paths.root
    rows = {s: read_jsonl(paths.eval(s) / "predictions.jsonl") for s in STAGES}
    plot_stage_scatters(rows, STAGE_TITLES, root / "scatter.png")
    plot_training({s: paths.run(s) for s in TRAINED_STAGES}, root / "training.png")
    plot_rewards(paths.run("qponder"), root / "rewards.png")
    commands = [
        "qponder " + " ".join(stage_command(paths, s))
        for s in ("qponder_ci", "sft_nocot", "qponder")
    ]
    t = demo_settings(recipe).tiny
    if t.pretext_steps > 0:
        commands.insert(
            0,
            f"qponder model pretrain-vision --model {paths.tiny} --dataset {paths.dataset} "
            f"--steps {t.pretext_steps} --lr {t.pretext_learning_rate} "
            f"--batch-size {t.pretext_batch_size} --seed {t.seed}",
        )
    text = format_report(summary, STAGE_TITLES, commands, t.pretext_steps)
    write_text_atomic(root / "report.md", text)
    return root / "report.md"


__all__ = [
    "format_console",
    "format_report",
    "plot_rewards",
    "plot_stage_scatters",
    "plot_training",
    "write_report",
]
