"""``qponder score``: score image files, folders or globs with their reasoning
(:func:`qponder.inference.score_paths`)."""

from __future__ import annotations

import argparse
import json
import sys

from qponder.cli.common import add_run_args, is_main_process
from qponder.cli.flags import add_recipe_flags, load_command_recipe


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``score`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("score", help="score images, folders or globs with explanations")
    add_run_args(p)
    p.add_argument("paths", nargs="+", help="image files, folders (recursive) or globs")
    p.add_argument("--model", required=True, help="checkpoint, or served name for --backend openai")
    p.add_argument("--out", required=True, help="FILE.jsonl or FILE.csv")
    add_recipe_flags(p, "eval.batch_size", "eval.samples", "eval.backend", "eval.base_url")
    p.add_argument("--resume", action="store_true", help="skip files already in --out")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder score``: write one row per file, print the counts (once under
    ``accelerate launch``)."""
    from qponder.inference import score_paths
    from qponder.prompts import load_prompts

    recipe = load_command_recipe(args)
    recipe.eval.require_endpoint()
    stats = score_paths(
        args.paths,
        args.model,
        args.out,
        recipe.eval,
        model_config=recipe.model,
        resume=args.resume,
        instruction=load_prompts(recipe.prompts).student_instruction,
    )
    if stats.get("processes", 1) == 1 or is_main_process():  # under accelerate launch, once
        print(json.dumps(stats), file=sys.stderr)
    return 0
