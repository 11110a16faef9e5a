"""The ``qponder`` command line: one sub-command per pipeline stage.

Each command is a module of this package, next to the library function it calls: its
``make_parser(subparsers)`` declares the command's arguments, and its handler (``run``, set
as ``func``) calls that one function. The flags that set recipe keys come from one table
(:mod:`qponder.cli.flags`); the parser class, the argument types and the error boundary are
in :mod:`qponder.cli.common`. Heavy libraries are imported inside the handlers, so that
``qponder --help`` stays fast.

``main`` and ``build_parser`` live here, the package's face, since only the face may import
every command module (a common module that did would import them in a circle).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from qponder import __version__
from qponder.cli import data, demo, distill, env, eval, grpo, model, score, serve, sft
from qponder.cli.common import CLIError, Parser, command_name, run_handler
from qponder.cli.eval import build_compare_parser

# the commands, in the order of `qponder --help`
COMMANDS = (data, model, distill, sft, grpo, eval, score, serve, demo, env)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser."""
    parser = Parser(
        prog="qponder",
        description="Train, evaluate and serve MLLMs that reason about image quality, then score it.",
    )
    parser.add_argument("--version", action="version", version=f"qponder {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for command in COMMANDS:
        command.make_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help, or a bad argument (already reported on one line)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_handler(args)


def _parse(argv: list[str]) -> argparse.Namespace:
    """The arguments of a command line; an unknown flag is an error of the command it was
    given to (``qponder score: error: unrecognized arguments: --mode fast``)."""
    if argv[:2] == ["eval", "compare"]:
        return build_compare_parser().parse_args(argv[2:])
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.prog = command_name(args)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


__all__ = ["COMMANDS", "CLIError", "build_compare_parser", "build_parser", "main"]
