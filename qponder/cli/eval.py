"""``qponder eval``: evaluate a model on IQA benchmarks
(:func:`qponder.evaluation.runner.run_eval`), and ``qponder eval compare RUN_A RUN_B``:
compare two runs (:func:`qponder.evaluation.compare.compare_runs`)."""

from __future__ import annotations

import argparse
import json
import sys

from qponder.cli.common import CLIError, Parser, add_run_args, at_least, is_main_process
from qponder.cli.flags import add_recipe_flags, load_command_recipe


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to ``subparsers``; returns its parser (``eval compare`` has its own:
    :func:`build_compare_parser`)."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate on IQA benchmarks (SRCC/PLCC); `qponder eval compare A B` compares runs",
    )
    add_run_args(p)
    p.add_argument("--model", required=True, help="checkpoint, or served name for --backend openai")
    add_recipe_flags(p, "eval.datasets", "eval.split", "eval.on_error")
    p.add_argument("--out", required=True, help="run directory")
    add_recipe_flags(
        p, "eval.limit", "eval.batch_size", "eval.samples", "eval.backend", "eval.base_url"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--consistency",
        action="store_true",
        help="also measure the consistency gap: the recipe's judge (grpo.consistency; "
        "'policy' = the evaluated model) reads each reasoning without image or answer",
    )
    p.add_argument(
        "--describe-judge-url",
        metavar="URL",
        help="grade each reasoning's asserted distortions against the image with a VLM behind "
        "this OpenAI-compatible endpoint (for datasets without distortion labels)",
    )
    p.add_argument("--describe-judge-model", metavar="NAME", help="that endpoint's model name")
    p.set_defaults(func=run)
    return p


def build_compare_parser() -> argparse.ArgumentParser:
    """Parser of ``qponder eval compare RUN_A RUN_B``."""
    p = Parser(
        prog="qponder eval compare",
        description="Per-dataset metric differences between two eval runs, with 95% CIs.",
    )
    p.add_argument("run_a", help="baseline run directory")
    p.add_argument("run_b", help="run compared with it (differences are B - A)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--bootstrap", type=at_least(0), default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run_compare, command="eval compare", verbose=False)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder eval``: score every dataset, write the run, print the summary (once under
    ``accelerate launch``)."""
    from qponder.evaluation.runner import run_eval
    from qponder.inference.parallel import on_main_process, process_state
    from qponder.prompts import load_prompts

    recipe = load_command_recipe(args)
    recipe.eval.require_endpoint()
    if args.describe_judge_url and not args.describe_judge_model:
        raise CLIError("--describe-judge-url needs --describe-judge-model NAME")
    instruction = load_prompts(recipe.prompts).student_instruction
    judges: dict[str, object] = {}

    def load_judges() -> None:  # the main process judges; an unusable judge stops them all
        if args.consistency:
            from qponder.models.judge import build_judge

            judge = build_judge(recipe.grpo.consistency, args.model, recipe.model, instruction)
            judge.check()  # an unusable judge fails before any image is scored
            judges["judge"] = judge
        if args.describe_judge_url:
            from qponder.models.description_judge import DescriptionJudge

            judges["grader"] = DescriptionJudge(args.describe_judge_url, args.describe_judge_model)

    on_main_process(process_state(), load_judges)
    summary = run_eval(
        args.model,
        recipe.eval,
        out=args.out,
        model_config=recipe.model,
        resume=args.resume,
        instruction=instruction,
        judge=judges.get("judge"),
        describe_judge=judges.get("grader"),
        announce=lambda line: print(f"qponder eval: {line}", file=sys.stderr),
    )
    if is_main_process():  # under accelerate launch, print once
        print(json.dumps(summary, indent=2))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``qponder eval compare``: print the comparison (a table, or JSON with --json)."""
    from qponder.evaluation.compare import compare_runs, format_comparison

    result = compare_runs(args.run_a, args.run_b, n_resamples=args.bootstrap, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0
