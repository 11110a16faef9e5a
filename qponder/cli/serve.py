"""``qponder serve``: an HTTP scoring server over one model worker
(:func:`qponder.serve.serve`), configured by the recipe's ``serve`` section (where it
listens, what it refuses) and ``eval`` section (how it scores)."""

from __future__ import annotations

import argparse

from qponder.cli.common import add_run_args
from qponder.cli.flags import add_recipe_flags, load_command_recipe


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


def run(args: argparse.Namespace) -> int:
    """``qponder serve``: listen, load the model in the background, serve until interrupted.

    A model that is not there fails before the server listens: once it does, the model
    loads in the background and its error would come after the server had started."""
    from qponder.serve import serve

    recipe = load_command_recipe(args)
    if recipe.eval.backend != "openai":  # openai: --model is the served name, not a path
        from qponder.models.checkpoint import check_model_path

        check_model_path(args.model)
    try:
        serve(recipe, args.model)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, re-raised by uvicorn once it has shut down
        return 0  # gracefully (requests in flight answered): how a server is meant to stop
    return 0
