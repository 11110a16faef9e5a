"""``qponder serve``: an HTTP scoring server over one model worker
(:func:`qponder.serve.run_server`), configured by the recipe's ``serve`` section (where it
listens, what it refuses) and ``eval`` section (how it scores)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from qponder.cli.common import add_run_args
from qponder.cli.flags import add_recipe_flags, load_command_recipe

if TYPE_CHECKING:  # the server's modules load only when it runs
    from qponder.config import Recipe
    from qponder.serve import ServeSettings


def make_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "serve",
        help="an HTTP scoring server with a web page (FastAPI + uvicorn)",
        description="Serve MODEL over HTTP: POST /v1/score (base64 JSON), POST "
        "/v1/score/upload (multipart), GET / (web page), /health, /v1/models, /metrics. "
        "Concurrent requests are micro-batched on one model worker. See docs/serving.md.",
    )
    add_run_args(p)
    p.add_argument("--model", required=True, help="checkpoint, or served name for --backend openai")
    add_recipe_flags(
        p,
        "eval.backend",
        "eval.base_url",
        "serve.host",
        "serve.port",
        ("eval.batch_size", "--max-batch"),
        "serve.max_wait_ms",
        "serve.max_queue",
        "eval.samples",
        "serve.api_key_env",
        "serve.max_body_mb",
        "serve.max_images",
        "serve.access_log",
    )
    p.set_defaults(func=run)
    return p


def serve_settings(recipe: Recipe, model: str) -> ServeSettings:
    """The server's :class:`qponder.serve.ServeSettings`: where it listens and what it
    refuses from ``recipe.serve``, how it batches and samples from ``recipe.eval``.

    Raises:
        QponderError: ``serve.api_key_env`` names a variable that is unset or empty.
    """
    from qponder.serve import ServeSettings, read_api_key

    s = recipe.serve
    return ServeSettings(
        model_name=model,
        backend=recipe.eval.backend,
        host=s.host,
        port=s.port,
        max_batch=recipe.eval.batch_size,
        max_wait_ms=s.max_wait_ms,
        max_queue=s.max_queue,
        samples=recipe.eval.samples,
        max_images=s.max_images,
        max_body_bytes=int(s.max_body_mb * 1024 * 1024),
        api_key=read_api_key(s.api_key_env) if s.api_key_env else None,
    )


def run(args: argparse.Namespace) -> int:
    """``qponder serve``: listen, load the model in the background, serve until interrupted."""
    from qponder.prompts import load_prompts
    from qponder.serve import run_server

    recipe = load_command_recipe(args)
    recipe.eval.require_endpoint()
    settings = serve_settings(recipe, args.model)
    instruction = load_prompts(recipe.prompts).student_instruction

    def load_scorer():
        from qponder.inference import Scorer

        return Scorer.from_config(
            args.model, recipe.eval, model_config=recipe.model, instruction=instruction
        )

    run_server(load_scorer, settings, access_log=recipe.serve.access_log)
    return 0
