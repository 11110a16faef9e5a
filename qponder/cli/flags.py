"""The one table of command-line flags that set recipe keys.

Each flag that sets a recipe key is declared once here, with that dotted key, its type, its
choices (the config's own lists: :data:`qponder.config.BACKENDS`, ``TEACHERS``, ...) and
its help. A command picks the flags it takes by key (:func:`add_recipe_flags`), and
:func:`load_command_recipe` gives their values to :func:`qponder.config.load_recipe`,
which applies them last: defaults < YAML < ``--set`` < flags. Every flag defaults to None
(not given), so a flag never overrides a recipe value unless it is on the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qponder.cli.common import at_least, positive
from qponder.config import (
    BACKENDS,
    DISTILL_MODES,
    ON_ERROR_POLICIES,
    TEACHERS,
    Recipe,
    ServeConfig,
    load_recipe,
)


@dataclass(frozen=True)
class RecipeFlag:
    """A command-line flag that sets one recipe key.

    Args:
        flag: The flag, e.g. ``--max-steps``.
        key: The dotted recipe key it sets, e.g. ``sft.trl.max_steps``.
        help: What it does (the key is added to the help text).
        type: Parses the value (argparse's ``type``); None: a string.
        choices: The values allowed.
        const: For a flag without a value (``--no-cot``): the value it sets.
        append: Repeatable, each value added to a list (``--dataset``).
        required: The command needs it.
        metavar: The value's name in the help.
    """

    flag: str
    key: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    const: Any = None
    append: bool = False
    required: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The attribute argparse stores the value in (``--max-steps`` -> ``max_steps``)."""
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Declare the flag on ``parser``, defaulting to None (not given)."""
        kwargs: dict[str, Any] = {
            "dest": self.dest,
            "default": None,
            "help": f"{self.help} [{self.key}]",
        }
        if self.const is not None:
            kwargs["action"] = "store_const"
            kwargs["const"] = self.const
        else:
            kwargs["action"] = "append" if self.append else "store"
            kwargs.update(type=self.type, choices=self.choices, metavar=self.metavar)
        parser.add_argument(self.flag, required=self.required, **kwargs)


_SERVE = ServeConfig  # the server's defaults, named in the help of its flags

RECIPE_FLAGS: tuple[RecipeFlag, ...] = (
    # the model trained from
    RecipeFlag(
        "--model",
        "model.path",
        "the model to start from: a checkpoint folder or hub "
        "name (grpo: the initial policy, usually the SFT run's final/)",
    ),
    # distill
    RecipeFlag("--teacher", "distill.teacher", "who writes the reasoning", choices=TEACHERS),
    RecipeFlag(
        "--base-url", "distill.base_url", "OpenAI-compatible endpoint, e.g. http://host:8000/v1"
    ),
    RecipeFlag("--model", "distill.model", "served model name (openai) or model path (hf)"),
    RecipeFlag("--concurrency", "distill.concurrency", "requests in flight", type=int),
    RecipeFlag("--timeout", "distill.timeout", "seconds per request", type=float),
    RecipeFlag(
        "--tolerance", "distill.tolerance", "keep when |score - MOS| <= T (default 0.5)", type=float
    ),
    RecipeFlag("--samples", "distill.samples", "blind mode: best of K samples", type=int),
    RecipeFlag("--mode", "distill.mode", "blind, or guided by the MOS", choices=DISTILL_MODES),
    # sft, grpo
    RecipeFlag("--max-steps", "sft.trl.max_steps", "optimizer steps", type=int),
    RecipeFlag("--no-cot", "sft.no_cot", "train on the answer alone (ablation)", const=True),
    RecipeFlag("--max-steps", "grpo.trl.max_steps", "optimizer steps", type=int),
    # eval, score, serve: what is scored, and how
    RecipeFlag("--dataset", "eval.datasets", "NAME:PATH (repeatable)", append=True, required=True),
    RecipeFlag(
        "--split",
        "eval.split",
        "split to evaluate: train, val, test (default) or all (every sample)",
    ),
    RecipeFlag(
        "--on-error",
        "eval.on_error",
        "bad label rows: stop at the first (default), or skip them, counted in the summary",
        choices=ON_ERROR_POLICIES,
    ),
    RecipeFlag("--limit", "eval.limit", "at most N images per dataset", type=int),
    RecipeFlag("--batch-size", "eval.batch_size", "images per model call", type=int),
    RecipeFlag("--max-batch", "eval.batch_size", "most images per model call", type=at_least(1)),
    RecipeFlag(
        "--samples",
        "eval.samples",
        "k sampled answers per image, mean and std reported (serve: when a request does not say)",
        type=int,
    ),
    RecipeFlag("--backend", "eval.backend", "the scoring backend", choices=BACKENDS),
    RecipeFlag(
        "--base-url", "eval.base_url", "endpoint for --backend openai, e.g. a vLLM server or fleet"
    ),
    # serve
    RecipeFlag(
        "--host",
        "serve.host",
        f"interface to listen on (default {_SERVE.host}: this machine only; 0.0.0.0 for all)",
    ),
    RecipeFlag("--port", "serve.port", f"TCP port (default {_SERVE.port})", type=at_least(0)),
    RecipeFlag(
        "--max-wait-ms",
        "serve.max_wait_ms",
        f"longest wait for more images to fill a batch (default {_SERVE.max_wait_ms:g})",
        type=at_least(0),
    ),
    RecipeFlag(
        "--max-queue",
        "serve.max_queue",
        f"most images waiting; more gets 503 with Retry-After (default {_SERVE.max_queue})",
        type=at_least(1),
    ),
    RecipeFlag(
        "--max-images",
        "serve.max_images",
        f"most images per request (default {_SERVE.max_images})",
        type=at_least(1),
    ),
    RecipeFlag(
        "--max-body-mb",
        "serve.max_body_mb",
        f"largest request body (default {_SERVE.max_body_mb:g})",
        type=positive,
    ),
    RecipeFlag(
        "--api-key-env",
        "serve.api_key_env",
        "require 'Authorization: Bearer KEY', KEY read from the environment variable NAME",
        metavar="NAME",
    ),
    RecipeFlag("--no-access-log", "serve.access_log", "no log line per request", const=False),
)


def recipe_flag(key: str, flag: str | None = None) -> RecipeFlag:
    """The table's flag for ``key``: the first one declared, or the one spelt ``flag`` (a key
    may have two spellings: ``eval.batch_size`` is ``--batch-size`` in eval and score,
    ``--max-batch`` in serve).

    Raises:
        KeyError: The table has no such flag (a command's mistake, found by any test that
            builds the parser).
    """
    found = [f for f in RECIPE_FLAGS if f.key == key and flag in (None, f.flag)]
    if not found:
        raise KeyError(f"no flag {flag or ''} for {key} in RECIPE_FLAGS")
    return found[0]


def add_recipe_flags(parser: argparse.ArgumentParser, *picks: str | tuple[str, str]) -> None:
    """Declare the table's flags for ``picks`` on ``parser``, in that order, and record them
    for :func:`load_command_recipe` (may be called more than once, to interleave them with
    a command's other arguments in its help).

    Args:
        parser: The command's parser.
        picks: Recipe keys, or ``(key, flag)`` where the key has two spellings.
    """
    chosen = [recipe_flag(*((p,) if isinstance(p, str) else p)) for p in picks]
    for f in chosen:
        f.add_to(parser)
    parser.set_defaults(recipe_flags=(*(parser.get_default("recipe_flags") or ()), *chosen))


def command_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Recipe key -> value of the command's recipe flags (None where not given)."""
    return {f.key: getattr(args, f.dest) for f in getattr(args, "recipe_flags", ())}


def load_command_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe of a command: ``--config``, then ``--set``, then the command's recipe
    flags, validated once (:func:`qponder.config.load_recipe`).

    Raises:
        ConfigError: Listing every problem, each with its dotted key.
    """
    return load_recipe(args.config, args.overrides, command_flags(args))


__all__ = [
    "RECIPE_FLAGS",
    "RecipeFlag",
    "add_recipe_flags",
    "command_flags",
    "load_command_recipe",
    "recipe_flag",
]
