"""``qponder grpo``: GRPO with the score and consistency rewards, the result Q-Ponder
(:func:`qponder.train.grpo.run`)."""

from __future__ import annotations

import argparse

from qponder.cli.common import add_run_args, print_main_process
from qponder.cli.flags import add_recipe_flags, load_command_recipe


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``grpo`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "grpo", help="stage 2: GRPO with score + consistency rewards (Q-Ponder)"
    )
    add_run_args(p)
    p.add_argument("--dataset", required=True, help="NAME:PATH of the training images")
    p.add_argument("--split", default="train", help="train|val|test|all (default train)")
    add_recipe_flags(p, "model.path")
    p.add_argument("--out", required=True, help="run directory")
    add_recipe_flags(p, "grpo.trl.max_steps")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder grpo``: train (resuming from the newest complete checkpoint), print the
    final checkpoint's path."""
    from qponder.train.grpo import run as train

    final = train(load_command_recipe(args), dataset=args.dataset, split=args.split, out=args.out)
    print_main_process(f"final checkpoint: {final}")
    return 0
