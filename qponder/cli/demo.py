"""``qponder demo``: the whole pipeline on the tiny offline model and synthetic data, CPU
only (:func:`qponder.demo.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qponder.cli.common import add_run_args


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``demo`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on a tiny offline model and synthetic data, CPU only",
        description="Build a tiny Qwen2.5-VL and synthetic data, distil, SFT (with and without "
        "CoT), GRPO, evaluate every stage; writes DIR/report.md and DIR/summary.json. "
        "Running again on the same --out resumes.",
    )
    add_run_args(p)
    p.set_defaults(config="tiny-demo")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument(
        "--quick", action="store_true", help="the recipe's demo.quick settings (a few minutes)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder demo``: run (or resume) the demo; print its test SRCCs, what each stage
    changed, and last where the trained model is, with a warning about what it has seen."""
    from qponder.demo import run_demo
    from qponder.demo.report import format_console

    summary = run_demo(
        args.out,
        quick=args.quick,
        config=args.config,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    print(format_console(summary, Path(args.out) / "report.md"))
    return 0
