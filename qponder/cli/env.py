"""``qponder env``: versions, device and git commit as JSON
(:func:`qponder.runfiles.environment_info`)."""

from __future__ import annotations

import argparse
import json


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``env`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("env", help="print versions, device and git commit as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``qponder env``: print the environment as JSON."""
    from qponder.runfiles import environment_info

    print(json.dumps(environment_info(), indent=2))
    return 0
