"""The demo's training worker: one training stage as ``qponder sft`` / ``qponder grpo`` runs
it, that also follows a CPU thread count written in a file.

The supervisor (:mod:`qponder.demo.supervisor`) starts each training stage as
``python -m qponder.demo.worker ARGS --threads-file PATH``, where ARGS are the stage's
``qponder`` command line (:func:`~qponder.demo.supervisor.stage_command`, which
``report.md`` shows). The worker loads the recipe as that command does and calls the same
library function (:func:`qponder.train.sft.run` / :func:`qponder.train.grpo.run`), adding
:class:`ThreadsFileCallback`: so the CoT SFT run takes over the core that the answer-only
run frees when it ends. The training commands themselves know nothing of thread files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from transformers import TrainerCallback

from qponder.config import Recipe, load_recipe
from qponder.errors import QponderError, RunFailedError

logger = logging.getLogger(__name__)

PROG = "python -m qponder.demo.worker"


class ThreadsFileCallback(TrainerCallback):
    """Use the number of torch CPU threads written in a file, re-read whenever the file
    changes (checked before every optimizer step, one ``stat`` call).

    A run started beside others with a core each (``qponder demo`` trains its two SFT runs
    side by side) can so be handed the cores a finished sibling frees, without a restart.
    The demo's worker adds it; from the library, pass it in ``callbacks`` to
    :func:`qponder.train.sft.run` / :func:`qponder.train.grpo.run`. A missing file changes
    nothing; a file that does not hold a positive integer is logged as a warning and ignored.

    Args:
        path: The file, holding e.g. ``2``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: int | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp == self._seen:
                return
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:  # absent, or removed between the two calls: keep the threads
            return
        self._seen = stamp
        if not text.isdigit() or int(text) < 1:
            logger.warning(
                "%s: expected a positive thread count, found %r; ignored", self.path, text
            )
            return
        import torch

        if int(text) != torch.get_num_threads():
            logger.info("step %d: %d -> %s CPU threads (%s)", state.global_step,
                        torch.get_num_threads(), text, self.path)  # fmt: skip
            torch.set_num_threads(int(text))


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line in the stage's log, exit 2 (as the CLI reports it)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The worker's arguments: those of the ``qponder sft`` / ``qponder grpo`` commands that
    the supervisor writes (:func:`~qponder.demo.supervisor.stage_command`), and the file."""
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sft = sub.add_parser("sft", help="qponder sft, following --threads-file")
    sft.add_argument("--data", required=True, help="cold-start JSONL")
    sft.add_argument("--no-cot", action="store_true", help="train on the answer alone")
    grpo = sub.add_parser("grpo", help="qponder grpo, following --threads-file")
    grpo.add_argument("--dataset", required=True, help="NAME:PATH of the training images")
    grpo.add_argument("--split", default="train")
    for p in (sft, grpo):
        p.add_argument("--config", required=True, help="the demo's recipe.yaml")
        p.add_argument("--model", required=True, help="the model to train from (model.path)")
        p.add_argument("--out", required=True, help="run directory")
        p.add_argument(
            "--threads-file",
            required=True,
            metavar="PATH",
            help="follow the CPU thread count written in PATH",
        )
    return parser


def stage_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe ``qponder sft|grpo`` builds from the same arguments: ``--model`` is
    ``model.path``, ``--no-cot`` is ``sft.no_cot`` (tests/test_demo_worker.py checks that
    the two agree)."""
    flags = {
        "model.path": args.model,
        "sft.no_cot": True if getattr(args, "no_cot", False) else None,
    }
    return load_recipe(args.config, [], flags)


def run_stage(args: argparse.Namespace) -> Path:
    """Train the stage: the library function of its command, with a
    :class:`ThreadsFileCallback` on ``--threads-file``; returns ``RUN/final``."""
    recipe = stage_recipe(args)
    callbacks = [ThreadsFileCallback(args.threads_file)]
    if args.command == "sft":
        from qponder.train.sft import run

        return run(recipe, data=args.data, out=args.out, callbacks=callbacks)
    from qponder.train.grpo import run

    return run(recipe, dataset=args.dataset, split=args.split, out=args.out, callbacks=callbacks)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training stage; returns the exit status (2: bad input, 1: the run failed).

    An expected failure is one line in the stage's log; anything else leaves its traceback
    there, for the supervisor's message to point at.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad argument, already reported on one line
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        final = run_stage(args)
    except QponderError as exc:
        print(f"{PROG} {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1 if isinstance(exc, RunFailedError) else 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    print(f"final checkpoint: {final}", file=sys.stderr)
    return 0


__all__ = ["ThreadsFileCallback", "build_parser", "main", "run_stage", "stage_recipe"]

if __name__ == "__main__":  # pragma: no cover - the supervisor's subprocesses
    sys.exit(main())
