"""A finished ``qponder demo`` run against the project's targets for it.

Run: ``.venv/bin/python benchmarks/demo_targets.py runs/demo [more demo directories]``.

The targets (:mod:`qponder.demo.targets`: at most 15 minutes and 4 GiB on 2 CPU cores,
Q-Ponder's test SRCC at least 0.80 and not below Q-Ponder-CI's, the consistency gap lower
after GRPO, answer-only < CoT <= CoT + GRPO) are the project's own: the demo's report does
not grade a tiny model on synthetic data as passing or failing, so the check lives here,
with the run's figures and, for the orders, how the stages' 95 % CIs relate (the run's
``ablation``). Wall time depends on the machine's load; the SRCCs on its CPU (docs/demo.md).
A summary written by a resume that trained nothing leaves time and memory undecided.
Exits 1 when a target is missed, 2 when a directory has no ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qponder.demo.targets import check_targets


def _figures(summary: dict[str, Any]) -> dict[str, str]:
    """The figure each target reads, as text."""
    st = summary["stages"]

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    nocot, ci, q = (f(st[s]["srcc"]) for s in ("sft_nocot", "qponder_ci", "qponder"))
    return {
        "wall_time_at_most_15_min": f"{summary['wall_s']:.0f} s",
        "peak_memory_at_most_4_gib": f"{summary['peak_rss_gib']:.2f} GiB",
        "qponder_srcc_at_least_0.80": q,
        "qponder_not_below_qponder_ci": f"{q} vs {ci}",
        "consistency_better_after_grpo": (
            f"{f(st['qponder_ci']['consistency'])} -> {f(st['qponder']['consistency'])}"
        ),
        "ablation_order_nocot_lt_cot_le_grpo": f"{nocot} / {ci} / {q}",
    }


def resumed(summary: dict[str, Any]) -> bool:
    """Whether the last invocation found every training stage done (each took under a
    second): its ``wall_s`` and ``peak_rss_gib`` are then not the run's."""
    training = [v for k, v in summary["stage_seconds"].items() if k.startswith(("SFT", "GRPO"))]
    return bool(training) and max(training) < 1.0


def report(directory: Path) -> bool | None:
    """Print one run's targets, their figures and its ablation verdicts; returns whether
    every decided target was met (None: no ``summary.json``)."""
    path = directory / "summary.json"
    if not path.is_file():
        print(f"{directory}: no summary.json (is the demo finished?)", file=sys.stderr)
        return None
    summary = json.loads(path.read_text())
    targets, figures = check_targets(summary), _figures(summary)
    if resumed(summary):  # the time and memory of a resume say nothing about the run's
        for name in ("wall_time_at_most_15_min", "peak_memory_at_most_4_gib"):
            targets[name] = None
            figures[name] += " (a resume that trained nothing: not the run's)"
    quick = " (--quick: the targets are for a full run)" if summary.get("quick") else ""
    print(f"{directory}{quick}")
    for name, met in targets.items():
        verdict = {True: "met", False: "missed", None: "undecided"}[met]
        print(f"  {name.replace('_', ' '):<40} {verdict:<9} {figures[name]}")
    for comparison in summary.get("ablation", []):
        print(f"  {comparison['verdict']}")
    return all(v is not False for v in targets.values())


def main(argv: list[str] | None = None) -> int:
    """Check each directory; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path, help="demo directories (qponder demo --out)")
    results = [report(d) for d in p.parse_args(argv).dirs]
    if None in results:
        return 2
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
