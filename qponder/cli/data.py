"""``qponder data inspect|convert|synth``: summarise, convert and synthesise IQA datasets
(:func:`qponder.data.inspect.inspect_dataset`, :func:`qponder.data.convert.convert_dataset`,
:func:`qponder.data.synthetic.make_synthetic_dataset`)."""

from __future__ import annotations

import argparse
import json
import sys

from qponder.cli.common import CLIError, at_least
from qponder.config import ON_ERROR_POLICIES

ON_ERROR = list(ON_ERROR_POLICIES)  # bad label rows: stop at the first, or skip and list them


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data`` and its sub-commands to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("data", help="inspect, convert and synthesise IQA datasets")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{inspect,convert,synth}")
    _add_inspect(dsub)
    _add_convert(dsub)
    _add_synth(dsub)
    return p


def _add_inspect(dsub: argparse._SubParsersAction) -> None:
    q = dsub.add_parser("inspect", help="summarise a dataset: counts, MOS range, bad images")
    q.add_argument("dataset", help="NAME:PATH, e.g. koniq:/data/koniq10k or generic:labels.csv")
    q.add_argument("--images", help="image folder, when it is not where the adapter looks")
    q.add_argument("--split", help="train|val|test|all (default: all)")
    q.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    q.add_argument("--plot", metavar="FILE.png", help="write a MOS histogram")
    q.add_argument("--no-check-images", action="store_true", help="skip decoding every image")
    q.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="raise",
        help="bad label rows: stop at the first (default) or skip and list them",
    )
    q.set_defaults(func=run_inspect)


def _add_convert(dsub: argparse._SubParsersAction) -> None:
    c = dsub.add_parser("convert", help="write any dataset as the generic JSONL")
    c.add_argument("dataset", help="NAME:PATH")
    c.add_argument("--out", required=True, help="output .jsonl")
    c.add_argument("--images", help="image folder, when it is not where the adapter looks")
    c.add_argument("--split", help="train|val|test|all (default: all)")
    c.add_argument("--on-error", choices=ON_ERROR, default="raise")
    c.set_defaults(func=run_convert)


def _add_synth(dsub: argparse._SubParsersAction) -> None:
    s = dsub.add_parser("synth", help="generate the synthetic distortion dataset (no download)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=at_least(1), default=1000, help="number of images (default 1000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--size", type=at_least(16), default=None, help="image side in pixels (default 112)"
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
    s.set_defaults(func=run_synth)


def run_inspect(args: argparse.Namespace) -> int:
    """``qponder data inspect``: print the dataset's report (text, or JSON with --json)."""
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


def run_convert(args: argparse.Namespace) -> int:
    """``qponder data convert``: write the dataset as the generic JSONL."""
    from qponder.data.convert import convert_dataset

    n = convert_dataset(
        args.dataset, args.out, images=args.images, split=args.split, on_error=args.on_error
    )
    print(f"wrote {n} samples to {args.out}", file=sys.stderr)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """``qponder data synth``: render the synthetic distortion dataset."""
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
