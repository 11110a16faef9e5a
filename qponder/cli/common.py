"""What every command of the ``qponder`` command line shares: the parser class (a bad
argument is one line, exit 2; no abbreviated flags), the argument types, the ``--config`` /
``--set`` arguments, the process checks under ``accelerate launch``, and the error boundary
that turns an expected failure into one line, and a stop (Ctrl-C, SIGTERM) into one line
that says how to go on."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

# What a stopped command kept, and how to go on from it (a command not named: nothing to say).
RESUME_HINTS = {
    "score": "the rows written so far are kept; run the same command with --resume to go on",
    "eval": "the predictions written so far are kept; run the same command with --resume to go on",
    "distill": "the records written so far are kept; run the same command again to go on",
    "sft": "run the same command again: it resumes from the newest complete checkpoint",
    "grpo": "run the same command again: it resumes from the newest complete checkpoint",
}
# The shell's convention: 128 + the signal's number.
EXIT_INTERRUPTED = 130  # SIGINT, Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM, what a batch scheduler sends before it kills a job


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that a command stops as on Ctrl-C: every
    ``finally`` runs, and what was written stays."""


class CLIError(Exception):
    """An error to report to the user as one line, with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``qponder sft: error: ...``), exit 2, and a
    flag is only ever its full name.

    argparse's prefix matching (``allow_abbrev``) is off for this parser and, through
    ``parser_class``, for every sub-parser: with it, ``qponder score IMG --model runs/x
    --mode fast`` read ``--mode`` as ``--model`` and scored with a model called ``fast``.
    An unknown flag is now an error naming it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def at_least(lowest: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``lowest``.

    Example:
        >>> at_least(1)("3")
        3
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be >= {lowest}, got {value}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type: a number > 0.

    Example:
        >>> positive("0.5")
        0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--set``: the recipe of a command that reads one."""
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


def is_main_process() -> bool:
    """Whether this is the main process under ``accelerate launch`` (always, alone).

    Goes through :func:`qponder.inference.files.process_state`: accelerate's state is set
    up once per process, and on a CPU it must be told so the first time."""
    from qponder.inference.files import process_state

    return process_state().is_main_process


def print_main_process(message: str) -> None:
    """Print to stderr once under ``accelerate launch`` (from the main process)."""
    if is_main_process():
        print(message, file=sys.stderr)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While in this block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)
    in the main thread; a second SIGTERM ends the process at once, as by default.

    Outside the main thread (where Python takes no signal handler) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the next one is not asked twice
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_handler(args: argparse.Namespace) -> int:
    """The error boundary: run the command's handler (``args.func``) and turn an expected
    failure into one line on stderr, and a stop (Ctrl-C, SIGTERM) into one line that says
    what was kept and how to go on.

    Returns:
        The exit status: the handler's, 2 for bad input (a ``QponderError``, a
        :class:`CLIError`, a file that cannot be read or written), 1 for a run that failed
        on its own (``RunFailedError``), 130 when interrupted (Ctrl-C), 143 when
        terminated (SIGTERM).
    """
    from qponder.errors import QponderError, RunFailedError

    try:
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except (QponderError, CLIError) as exc:
        return fail(args, str(exc), code=1 if isinstance(exc, RunFailedError) else 2)
    except OSError as exc:  # the file system: a path that cannot be read or written
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return fail(args, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt as exc:
        return stopped(args, terminated=isinstance(exc, Terminated))


def stopped(args: argparse.Namespace, terminated: bool) -> int:
    """Report a stopped command as one line (what was kept, how to go on, from
    :data:`RESUME_HINTS`); returns 143 when ``terminated`` (SIGTERM), else 130."""
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    hint = RESUME_HINTS.get(args.command)
    print(f"{command_name(args)}: {what}" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    """Report an expected failure as one line (with the traceback under ``-v``); returns
    the exit status: 2 for bad input, 1 for a run that failed."""
    if args.verbose:
        import traceback

        traceback.print_exc()
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{command_name(args)}: error: {line}", file=sys.stderr)
    return code


def command_name(args: argparse.Namespace) -> str:
    """The command as the user typed it, e.g. ``qponder data synth``."""
    words = [args.command, getattr(args, "data_cmd", None), getattr(args, "model_cmd", None)]
    return " ".join(["qponder", *(w for w in words if w)])


__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "RESUME_HINTS",
    "CLIError",
    "Parser",
    "Terminated",
    "add_run_args",
    "at_least",
    "command_name",
    "fail",
    "is_main_process",
    "positive",
    "print_main_process",
    "run_handler",
    "sigterm_as_interrupt",
    "stopped",
]
