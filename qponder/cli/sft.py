"""``qponder sft``: supervised fine-tuning on the cold-start data, the result Q-Ponder-CI
(:func:`qponder.train.sft.run`)."""

from __future__ import annotations

import argparse

from qponder.cli.common import add_run_args, print_main_process
from qponder.cli.flags import add_recipe_flags, load_command_recipe


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sft`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "sft", help="stage 1b: supervised fine-tuning on cold-start data (Q-Ponder-CI)"
    )
    add_run_args(p)
    p.add_argument("--data", required=True, help="cold-start JSONL from qponder distill")
    add_recipe_flags(p, "model.path")
    p.add_argument("--out", required=True, help="run directory")
    add_recipe_flags(p, "sft.trl.max_steps", "sft.no_cot")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder sft``: train (resuming from the newest complete checkpoint), print the
    final checkpoint's path."""
    from qponder.train.sft import run as train

    final = train(load_command_recipe(args), data=args.data, out=args.out)
    print_main_process(f"final checkpoint: {final}")
    return 0
