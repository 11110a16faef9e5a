"""The ``qponder`` command line: one sub-command per pipeline stage.

This module only parses arguments and dispatches to one library function per command;
heavy libraries are imported inside the handlers so that ``qponder --help`` stays fast.
Each ``_add_*`` function defines one command and its handler (``set_defaults(func=...)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from qponder import __version__


class CLIError(Exception):
    """An error to report to the user as one line, with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``qponder sft: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _at_least(lowest: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``lowest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be >= {lowest}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _load_recipe(args: argparse.Namespace, flags: dict[str, object]) -> object:
    """The recipe of a command: ``--config``, then ``--set``, then the command's own flags
    (``flags`` maps each flag's recipe key to its value; None = not given), validated once."""
    from qponder.config import load_recipe

    return load_recipe(args.config, args.overrides, flags)


def _add_common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe: a file or a shipped name (tiny-demo, ...)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set grpo.num_generations=8 (repeatable); "
        "a command's own flags win over --set, which wins over the --config file",
    )


# --------------------------------------------------------------------------- data


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect, convert and synthesise IQA datasets")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{inspect,convert,synth}")

    q = dsub.add_parser("inspect", help="summarise a dataset: counts, MOS range, bad images")
    q.add_argument("dataset", help="NAME:PATH, e.g. koniq:/data/koniq10k or generic:labels.csv")
    q.add_argument("--images", help="image folder, when it is not where the adapter looks")
    q.add_argument("--split", help="train|val|test (default: all)")
    q.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    q.add_argument("--plot", metavar="FILE.png", help="write a MOS histogram")
    q.add_argument("--no-check-images", action="store_true", help="skip decoding every image")
    q.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="bad label rows: stop at the first (default) or skip and list them",
    )
    q.set_defaults(func=_cmd_data_inspect)

    c = dsub.add_parser("convert", help="write any dataset as the generic JSONL")
    c.add_argument("dataset", help="NAME:PATH")
    c.add_argument("--out", required=True, help="output .jsonl")
    c.add_argument("--images", help="image folder, when it is not where the adapter looks")
    c.add_argument("--split", help="train|val|test (default: all)")
    c.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    c.set_defaults(func=_cmd_data_convert)

    s = dsub.add_parser("synth", help="generate the synthetic distortion dataset (no download)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=_at_least(1), default=1000, help="number of images (default 1000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--size", type=_at_least(16), default=None, help="image side in pixels (default 112)"
    )
    s.add_argument(
        "--kinds", help="comma-separated distortion kinds to draw from (default: all ten)"
    )
    s.add_argument(
        "--photo-share",
        type=float,
        default=None,
        help="share of photograph crops among the contents (default 0.35; 0 = scenes only)",
    )
    s.set_defaults(func=_cmd_data_synth)


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from qponder.data.inspect import inspect_dataset

    report = inspect_dataset(
        args.dataset,
        images=args.images,
        split=args.split,
        check_images=not args.no_check_images,
        plot=args.plot,
        on_error=args.on_error,
    )
    if args.json:
        print(json.dumps(report))
    else:
        from qponder.data.inspect import format_report

        print(format_report(report))
    return 0


def _cmd_data_convert(args: argparse.Namespace) -> int:
    from qponder.data.convert import convert_dataset

    n = convert_dataset(
        args.dataset, args.out, images=args.images, split=args.split, on_error=args.on_error
    )
    print(f"wrote {n} samples to {args.out}", file=sys.stderr)
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from qponder.data.synthetic import make_synthetic_dataset

    kwargs: dict = {"size": args.size} if args.size else {}
    if args.kinds:
        kwargs["kinds"] = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.photo_share is not None:
        kwargs["photo_share"] = args.photo_share
    try:
        labels = make_synthetic_dataset(args.out, n=args.n, seed=args.seed, **kwargs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {labels}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- model


def _add_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model utilities")
    msub = p.add_subparsers(dest="model_cmd", required=True, metavar="{tiny,pretrain-vision}")
    from qponder.models.families import FAMILY_NAMES

    t = msub.add_parser(
        "tiny",
        help="build a tiny offline VLM of any supported family (random weights)",
        description="Build a tiny, randomly initialised model of a VLM family, offline: the "
        "family's real model and processor classes and chat template, a small tokenizer "
        "trained here, saved as a standard checkpoint. Families and what works with each: "
        "docs/models.md.",
    )
    t.add_argument("--out", required=True, help="output folder (a standard checkpoint)")
    t.add_argument(
        "--family",
        choices=FAMILY_NAMES,
        default="qwen2_5_vl",
        help="model family (default qwen2_5_vl)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--hidden-size", type=_at_least(1), default=64, help="language-model width (default 64)"
    )
    t.add_argument(
        "--layers", type=_at_least(1), default=2, help="language-model layers (default 2)"
    )
    t.add_argument("--heads", type=_at_least(1), default=4, help="attention heads (default 4)")
    t.add_argument("--vision-depth", type=_at_least(1), default=2, help="vision blocks (default 2)")
    t.add_argument(
        "--vision-hidden-size", type=_at_least(1), default=32, help="vision width (default 32)"
    )
    t.add_argument(
        "--max-pixels",
        type=_at_least(28 * 28),
        default=112 * 112,
        help="pixels per image, Qwen2.5-VL only (default 12544)",
    )
    t.add_argument(
        "--vocab-size",
        type=_at_least(300),
        default=1024,
        help="tokenizer vocabulary (default 1024)",
    )
    t.set_defaults(func=_cmd_model_tiny)
    v = msub.add_parser(
        "pretrain-vision",
        help="pretrain a Qwen-VL vision tower on image statistics (self-supervised, no MOS)",
        description="Pretrain the vision encoder and projector of MODEL, in place, to predict "
        "each image's low-level statistics (luminance, clipping, chroma, edge energy, channel "
        "means): the tiny model's stand-in for a pretrained encoder. MOS is not used.",
    )
    v.add_argument("--model", required=True, help="a Qwen-VL checkpoint folder, changed in place")
    v.add_argument("--dataset", required=True, metavar="NAME:PATH", help="images to learn from")
    v.add_argument("--split", default="train", help="split of the dataset (default train)")
    v.add_argument("--limit", type=_at_least(1), default=None, help="use at most N images")
    v.add_argument(
        "--steps", type=_at_least(1), default=300, help="optimisation steps (default 300)"
    )
    v.add_argument("--lr", type=_positive, default=1e-3, help="peak learning rate (default 1e-3)")
    v.add_argument(
        "--batch-size", type=_at_least(1), default=32, help="images per step (default 32)"
    )
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(func=_cmd_model_pretrain_vision)


def _cmd_model_pretrain_vision(args: argparse.Namespace) -> int:
    from qponder.demo.pretext import dataset_images, pretrain_vision

    images, bad = dataset_images(args.dataset, args.split, args.limit, not args.no_progress)
    result = pretrain_vision(
        args.model,
        images,
        steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    report = {
        "images": result.n_images,
        "bad_images": bad,
        "steps": result.steps,
        "loss_first": round(result.loss_first, 4),
        "loss_last": round(result.loss_last, 4),
        "seconds": result.seconds,
    }
    print(json.dumps(report))
    return 0


def _cmd_model_tiny(args: argparse.Namespace) -> int:
    from qponder.models.tiny import build_tiny_model

    try:
        path = build_tiny_model(
            args.out,
            seed=args.seed,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=args.heads,
            vision_depth=args.vision_depth,
            vision_hidden_size=args.vision_hidden_size,
            max_pixels=args.max_pixels,
            vocab_size=args.vocab_size,
            family=args.family,
        )
    except ValueError as exc:  # sizes that do not fit together
        raise CLIError(str(exc)) from None
    print(f"wrote tiny {args.family} model to {path}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- distill


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="stage 1: distil cold-start reasoning from a teacher")
    _add_common_run_args(p)
    p.add_argument("--dataset", required=True, help="NAME:PATH of the training images")
    p.add_argument("--split", default="train", help="dataset split (default train)")
    p.add_argument("--teacher", choices=["openai", "hf", "synthetic"])
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    p.add_argument("--model", help="served model name (openai) or model path (hf)")
    p.add_argument("--out", required=True, help="kept records (.jsonl); rejects go beside it")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--timeout", type=float, help="seconds per request")
    p.add_argument("--tolerance", type=float, help="keep when |score - MOS| <= T (default 0.5)")
    p.add_argument("--samples", type=int, help="blind mode: best of K samples")
    p.add_argument("--mode", choices=["blind", "guided"])
    p.add_argument("--limit", type=_at_least(1), help="process at most N images")
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
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from qponder.distill import run_distillation

    keys = (
        "teacher",
        "base_url",
        "model",
        "concurrency",
        "timeout",
        "tolerance",
        "samples",
        "mode",
    )
    recipe = _load_recipe(args, {f"distill.{k}": getattr(args, k) for k in keys})
    if args.export_batch or args.import_batch:
        return _distill_batch(args, recipe)
    if recipe.distill.base_url and recipe.distill.teacher != "openai":
        raise CLIError(
            f"distill.base_url: an endpoint needs --teacher openai (the teacher is "
            f"{recipe.distill.teacher})"
        )
    try:
        report = run_distillation(
            recipe,
            dataset=args.dataset,
            split=args.split,
            out=args.out,
            limit=args.limit,
            retry_errors=args.retry_errors,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("qponder distill: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2))
    return 0


def _distill_batch(args: argparse.Namespace, recipe: object) -> int:
    from qponder.distill.batch import export_batch, import_batch

    common = {"split": args.split, "out": args.out, "limit": args.limit}
    if args.export_batch:
        report = export_batch(recipe, args.dataset, args.export_batch, **common,
                              retry_errors=args.retry_errors)  # fmt: skip
    else:
        report = import_batch(recipe, args.dataset, args.import_batch, **common)
    print(json.dumps(report, indent=2))
    return 0


# --------------------------------------------------------------------------- training


def _add_sft(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sft", help="stage 1b: supervised fine-tuning on cold-start data (Q-Ponder-CI)"
    )
    _add_common_run_args(p)
    p.add_argument("--data", required=True, help="cold-start JSONL from qponder distill")
    p.add_argument("--model", help="student model path or hub name")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-cot", action="store_true", help="train on the answer alone (ablation)")
    p.set_defaults(func=_cmd_sft)


def _cmd_sft(args: argparse.Namespace) -> int:
    from qponder.train.sft import run

    flags = {
        "model.path": args.model,
        "sft.no_cot": True if args.no_cot else None,
        "sft.trl.max_steps": args.max_steps,
    }
    recipe = _load_recipe(args, flags)
    final = run(recipe, data=args.data, out=args.out)
    _print_main_process(f"final checkpoint: {final}")
    return 0


def _is_main_process() -> bool:
    """Whether this is the main process under ``accelerate launch`` (always, alone).

    Goes through :func:`qponder.inference.files.process_state`: accelerate's state is set
    up once per process, and on a CPU it must be told so the first time."""
    from qponder.inference.files import process_state

    return process_state().is_main_process


def _print_main_process(message: str) -> None:
    """Print to stderr once under ``accelerate launch`` (from the main process)."""
    if _is_main_process():
        print(message, file=sys.stderr)


def _add_grpo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grpo", help="stage 2: GRPO with score + consistency rewards (Q-Ponder)")
    _add_common_run_args(p)
    p.add_argument("--dataset", required=True, help="NAME:PATH of the training images")
    p.add_argument("--split", default="train")
    p.add_argument("--model", help="initial policy (usually the SFT run's final/)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--max-steps", type=int)
    p.set_defaults(func=_cmd_grpo)


def _cmd_grpo(args: argparse.Namespace) -> int:
    from qponder.train.grpo import run

    recipe = _load_recipe(args, {"model.path": args.model, "grpo.trl.max_steps": args.max_steps})
    final = run(recipe, dataset=args.dataset, split=args.split, out=args.out)
    _print_main_process(f"final checkpoint: {final}")
    return 0


# --------------------------------------------------------------------------- eval / score


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate on IQA benchmarks (SRCC/PLCC); `qponder eval compare A B` compares runs",
    )
    _add_common_run_args(p)
    p.add_argument("--model", required=True, help="checkpoint, or served name for --backend openai")
    p.add_argument("--dataset", action="append", required=True, help="NAME:PATH (repeatable)")
    p.add_argument(
        "--split", default=None, help="split to evaluate (default: test where one exists)"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--limit", type=int, help="at most N images per dataset")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--samples", type=int, help="k sampled answers per image (mean, std)")
    p.add_argument("--backend", choices=["hf", "vllm", "openai"])
    p.add_argument("--base-url", help="endpoint for --backend openai")
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
    p.set_defaults(func=_cmd_eval)


def build_compare_parser() -> argparse.ArgumentParser:
    """Parser of ``qponder eval compare RUN_A RUN_B``."""
    p = _Parser(
        prog="qponder eval compare",
        description="Per-dataset metric differences between two eval runs, with 95% CIs.",
    )
    p.add_argument("run_a", help="baseline run directory")
    p.add_argument("run_b", help="run compared with it (differences are B - A)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--bootstrap", type=_at_least(0), default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_eval_compare, command="eval compare", verbose=False)
    return p


def _cmd_eval(args: argparse.Namespace) -> int:

    from qponder.evaluation.runner import run_eval
    from qponder.prompts import load_prompts

    keys = ("split", "limit", "batch_size", "samples", "backend", "base_url")
    flags = {"eval.datasets": list(args.dataset), **{f"eval.{k}": getattr(args, k) for k in keys}}
    recipe = _load_recipe(args, flags)
    recipe.eval.require_endpoint()
    instruction = load_prompts(recipe.prompts).student_instruction
    judge = None
    if args.consistency and _is_main_process():  # the main process judges
        from qponder.models.judge import build_judge

        judge = build_judge(recipe.grpo.consistency, args.model, recipe.model, instruction)
        judge.check()  # an unusable judge fails before any image is scored
    grader = None
    if args.describe_judge_url and _is_main_process():
        from qponder.models.description_judge import DescriptionJudge

        if not args.describe_judge_model:
            raise CLIError("--describe-judge-url needs --describe-judge-model NAME")
        grader = DescriptionJudge(args.describe_judge_url, args.describe_judge_model)
    summary = run_eval(
        args.model,
        recipe.eval,
        out=args.out,
        model_config=recipe.model,
        resume=args.resume,
        instruction=instruction,
        judge=judge,
        describe_judge=grader,
    )
    if _is_main_process():  # under accelerate launch, print once
        print(json.dumps(summary, indent=2))
    return 0


def _cmd_eval_compare(args: argparse.Namespace) -> int:
    from qponder.evaluation.compare import compare_runs, format_comparison

    result = compare_runs(args.run_a, args.run_b, n_resamples=args.bootstrap, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score images, folders or globs with explanations")
    _add_common_run_args(p)
    p.add_argument("paths", nargs="+", help="image files, folders (recursive) or globs")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="FILE.jsonl or FILE.csv")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--samples", type=int, help="k sampled answers per image (mean, std)")
    p.add_argument("--backend", choices=["hf", "vllm", "openai"])
    p.add_argument("--base-url", help="endpoint for --backend openai")
    p.add_argument("--resume", action="store_true", help="skip files already in --out")
    p.set_defaults(func=_cmd_score)


def _cmd_score(args: argparse.Namespace) -> int:
    from qponder.inference import score_paths
    from qponder.prompts import load_prompts

    keys = ("batch_size", "samples", "backend", "base_url")
    recipe = _load_recipe(args, {f"eval.{k}": getattr(args, k) for k in keys})
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
    if stats.get("processes", 1) == 1 or _is_main_process():  # under accelerate launch, once
        print(json.dumps(stats), file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- serve


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="an HTTP scoring server with a web page (FastAPI + uvicorn)",
        description="Serve MODEL over HTTP: POST /v1/score (base64 JSON), POST "
        "/v1/score/upload (multipart), GET / (web page), /health, /v1/models, /metrics. "
        "Concurrent requests are micro-batched on one model worker. See docs/serving.md.",
    )
    _add_common_run_args(p)
    p.add_argument("--model", required=True, help="checkpoint, or served name for --backend openai")
    p.add_argument("--backend", choices=["hf", "vllm", "openai"])
    p.add_argument("--base-url", help="endpoint for --backend openai (e.g. a vLLM fleet)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)",
    )
    p.add_argument("--port", type=_at_least(0), default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--max-batch", type=_at_least(1), help="most images per model call (eval.batch_size)"
    )
    p.add_argument(
        "--max-wait-ms",
        type=_at_least(0),
        default=10,
        help="longest wait for more images to fill a batch (default 10)",
    )
    p.add_argument(
        "--max-queue",
        type=_at_least(1),
        default=256,
        help="most images waiting; more gets 503 with Retry-After (default 256)",
    )
    p.add_argument(
        "--samples",
        type=int,
        help="sampled answers per image when a request does not say (eval.samples)",
    )
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require 'Authorization: Bearer KEY', KEY read from the environment variable NAME",
    )
    p.add_argument(
        "--max-body-mb", type=_positive, default=32.0, help="largest request body (default 32)"
    )
    p.add_argument(
        "--max-images", type=_at_least(1), default=64, help="most images per request (default 64)"
    )
    p.add_argument("--no-access-log", action="store_true", help="no log line per request")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from qponder.prompts import load_prompts
    from qponder.serve import ServeSettings, read_api_key, run_server

    flags = {
        "eval.backend": args.backend,
        "eval.base_url": args.base_url,
        "eval.samples": args.samples,
        "eval.batch_size": args.max_batch,
    }
    recipe = _load_recipe(args, flags)
    recipe.eval.require_endpoint()
    settings = ServeSettings(
        model_name=args.model,
        backend=recipe.eval.backend,
        host=args.host,
        port=args.port,
        max_batch=recipe.eval.batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        samples=recipe.eval.samples,
        max_images=args.max_images,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        api_key=read_api_key(args.api_key_env) if args.api_key_env else None,
    )
    instruction = load_prompts(recipe.prompts).student_instruction

    def load_scorer():
        from qponder.inference import Scorer

        return Scorer.from_config(
            args.model, recipe.eval, model_config=recipe.model, instruction=instruction
        )

    run_server(load_scorer, settings, access_log=not args.no_access_log)
    return 0


# --------------------------------------------------------------------------- demo / env


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on a tiny offline model and synthetic data, CPU only",
        description="Build a tiny Qwen2.5-VL and synthetic data, distil, SFT (with and without "
        "CoT), GRPO, evaluate every stage; writes DIR/report.md and DIR/summary.json. "
        "Running again on the same --out resumes.",
    )
    _add_common_run_args(p)
    p.set_defaults(config="tiny-demo")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument(
        "--quick", action="store_true", help="the recipe's demo.quick settings (a few minutes)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from qponder.demo import run_demo

    summary = run_demo(
        args.out,
        quick=args.quick,
        config=args.config,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    print(
        json.dumps(
            {k: summary[k] for k in ("stages", "targets", "wall_s", "peak_rss_gib")}, indent=2
        )
    )
    return 0


def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions, device and git commit as JSON")
    p.set_defaults(func=_cmd_env)


def _cmd_env(args: argparse.Namespace) -> int:
    from qponder.runfiles import environment_info

    print(json.dumps(environment_info(), indent=2))
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser."""
    parser = _Parser(
        prog="qponder",
        description="Train, evaluate and serve MLLMs that reason about image quality, then score it.",
    )
    parser.add_argument("--version", action="version", version=f"qponder {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for add in (
        _add_data,
        _add_model,
        _add_distill,
        _add_sft,
        _add_grpo,
        _add_eval,
        _add_score,
        _add_serve,
        _add_demo,
        _add_env,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:2] == ["eval", "compare"]:
            args = build_compare_parser().parse_args(argv[2:])
        else:
            args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already reported on one line)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from qponder.errors import QponderError, RunFailedError

    try:
        return int(args.func(args) or 0)
    except (QponderError, CLIError) as exc:
        return _fail(args, str(exc), code=1 if isinstance(exc, RunFailedError) else 2)
    except OSError as exc:  # the file system: a path that cannot be read or written
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(args, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"qponder {args.command}: interrupted", file=sys.stderr)
        return 130


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    """Report an expected failure as one line (with the traceback under ``-v``); returns
    the exit status: 2 for bad input, 1 for a run that failed."""
    if args.verbose:
        import traceback

        traceback.print_exc()
    line = " ".join(message.split())  # one line, whatever the message held
    words = [args.command, getattr(args, "data_cmd", None), getattr(args, "model_cmd", None)]
    print(f"qponder {' '.join(w for w in words if w)}: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
