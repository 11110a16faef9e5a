"""``qponder distill``: cold-start reasoning from a teacher
(:func:`qponder.distill.run_distillation`), or through an OpenAI Batch file
(:func:`qponder.distill.batch.export_batch` / :func:`~qponder.distill.batch.import_batch`)."""

from __future__ import annotations

import argparse
import json

from qponder.cli.common import CLIError, add_run_args, at_least
from qponder.cli.flags import add_recipe_flags, load_command_recipe
from qponder.config import Recipe


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``distill`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("distill", help="stage 1: distil cold-start reasoning from a teacher")
    add_run_args(p)
    p.add_argument("--dataset", required=True, help="NAME:PATH of the training images")
    p.add_argument("--split", default="train", help="train|val|test|all (default train)")
    add_recipe_flags(p, "distill.teacher", "distill.base_url", "distill.model")
    p.add_argument("--out", required=True, help="kept records (.jsonl); rejects go beside it")
    add_recipe_flags(
        p,
        "distill.concurrency",
        "distill.timeout",
        "distill.tolerance",
        "distill.samples",
        "distill.mode",
    )
    p.add_argument("--limit", type=at_least(1), help="process at most N images")
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="process again the images rejected with teacher_error by an earlier run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument(
        "--export-batch",
        metavar="REQUESTS.jsonl",
        help="write the teacher requests of the pending images as an OpenAI Batch input file "
        "(for vllm run-batch or a hosted batch API) instead of calling the teacher; needs --model",
    )
    batch.add_argument(
        "--import-batch",
        metavar="RESULTS.jsonl",
        help="judge a Batch output file's replies into --out, as a live run would; needs --model",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder distill``: distil (resumable), print the report as JSON; a stop is 130
    (Ctrl-C) or 143 (SIGTERM), and the same command again resumes."""
    from qponder.distill import run_distillation

    recipe = load_command_recipe(args)
    if args.export_batch or args.import_batch:
        return _run_batch(args, recipe)
    if recipe.distill.base_url and recipe.distill.teacher != "openai":
        raise CLIError(
            f"distill.base_url: an endpoint needs --teacher openai (the teacher is "
            f"{recipe.distill.teacher})"
        )
    # a stop (Ctrl-C 130, SIGTERM 143) is the common boundary's, with how to go on
    report = run_distillation(
        recipe,
        dataset=args.dataset,
        split=args.split,
        out=args.out,
        limit=args.limit,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
    )
    print(json.dumps(report, indent=2))
    return 0


def _run_batch(args: argparse.Namespace, recipe: Recipe) -> int:
    from qponder.distill.batch import export_batch, import_batch

    common = {"split": args.split, "out": args.out, "limit": args.limit}
    if args.export_batch:
        report = export_batch(recipe, args.dataset, args.export_batch, **common,
                              retry_errors=args.retry_errors)  # fmt: skip
    else:
        report = import_batch(recipe, args.dataset, args.import_batch, **common)
    print(json.dumps(report, indent=2))
    return 0
