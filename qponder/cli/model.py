"""``qponder model tiny|pretrain-vision``: build a tiny offline VLM
(:func:`qponder.models.tiny.build_tiny_model`), and pretrain a Qwen-VL vision tower on the
demo's self-supervised pretext (:func:`qponder.demo.pretext.pretrain_vision`)."""

from __future__ import annotations

import argparse
import json
import sys

from qponder.cli.common import CLIError, at_least, positive


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``model`` and its sub-commands to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("model", help="model utilities")
    msub = p.add_subparsers(dest="model_cmd", required=True, metavar="{tiny,pretrain-vision}")
    _add_tiny(msub)
    _add_pretrain_vision(msub)
    return p


def _add_tiny(msub: argparse._SubParsersAction) -> None:
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
        "--hidden-size", type=at_least(1), default=64, help="language-model width (default 64)"
    )
    t.add_argument(
        "--layers", type=at_least(1), default=2, help="language-model layers (default 2)"
    )
    t.add_argument("--heads", type=at_least(1), default=4, help="attention heads (default 4)")
    t.add_argument("--vision-depth", type=at_least(1), default=2, help="vision blocks (default 2)")
    t.add_argument(
        "--vision-hidden-size", type=at_least(1), default=32, help="vision width (default 32)"
    )
    t.add_argument(
        "--max-pixels",
        type=at_least(28 * 28),
        default=112 * 112,
        help="pixels per image, Qwen2.5-VL only (default 12544)",
    )
    t.add_argument(
        "--vocab-size",
        type=at_least(300),
        default=1024,
        help="tokenizer vocabulary (default 1024)",
    )
    t.set_defaults(func=run_tiny)


def _add_pretrain_vision(msub: argparse._SubParsersAction) -> None:
    v = msub.add_parser(
        "pretrain-vision",
        help="pretrain a Qwen-VL vision tower on image statistics (self-supervised, no MOS)",
        description="Pretrain the vision encoder and projector of MODEL, in place, to predict "
        "each image's low-level statistics (luminance, clipping, chroma, edge energy, channel "
        "means): the tiny model's stand-in for a pretrained encoder. MOS is not used.",
    )
    v.add_argument("--model", required=True, help="a Qwen-VL checkpoint folder, changed in place")
    v.add_argument("--dataset", required=True, metavar="NAME:PATH", help="images to learn from")
    v.add_argument("--split", default="train", help="train|val|test|all (default train)")
    v.add_argument("--limit", type=at_least(1), default=None, help="use at most N images")
    v.add_argument(
        "--steps", type=at_least(1), default=300, help="optimisation steps (default 300)"
    )
    v.add_argument("--lr", type=positive, default=1e-3, help="peak learning rate (default 1e-3)")
    v.add_argument(
        "--batch-size", type=at_least(1), default=32, help="images per step (default 32)"
    )
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(func=run_pretrain_vision)


def run_tiny(args: argparse.Namespace) -> int:
    """``qponder model tiny``: build and save the tiny model."""
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


def run_pretrain_vision(args: argparse.Namespace) -> int:
    """``qponder model pretrain-vision``: pretrain in place, print the result as JSON."""
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
