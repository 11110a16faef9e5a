"""``qponder serve``: the scoring app under uvicorn, on a socket bound before the model
loads (so a busy port is one clear error, not a log line after a minute of loading).

:func:`serve` is the library entry (recipe and model in, a running server); the command
line only maps its flags to recipe keys and calls it."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from qponder.config import Recipe
from qponder.errors import QponderError, RunFailedError
from qponder.serve.app import create_app
from qponder.serve.settings import check_serve_recipe, read_api_key

logger = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6).

    Raises:
        QponderError: The address cannot be used (port taken, unknown host, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise QponderError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(recipe: Recipe, model: str, *, log_level: str = "info") -> None:
    """Serve ``model`` over HTTP with the recipe's settings until interrupted: ``qponder serve``.

    Args:
        recipe: The validated recipe. ``serve``: address, queue, limits, the name of the
            API key's environment variable, access log. ``eval``: backend, endpoint,
            ``batch_size`` (the most images per model call), ``samples`` (per image when a
            request does not say) and decoding. ``model``: loading options and the image
            resize policy. ``prompts``: the student instruction.
        model: Checkpoint (``hf``/``vllm``) or served model name (``openai``).
        log_level: uvicorn's log level.

    Raises:
        QponderError: The recipe cannot be served (``eval.samples`` over 32, ``openai``
            without an endpoint), the key's variable is unset or empty, the address is
            taken, or the model could not be loaded.
    """
    from qponder.prompts import load_prompts

    recipe.eval.require_endpoint()
    check_serve_recipe(recipe)
    env = recipe.serve.api_key_env
    api_key = read_api_key(env) if env else None
    instruction = load_prompts(recipe.prompts).student_instruction

    def load_scorer() -> Any:
        from qponder.inference import Scorer

        return Scorer.from_config(
            model, recipe.eval, model_config=recipe.model, instruction=instruction
        )

    run_server(recipe, model, load_scorer, api_key=api_key, log_level=log_level)


def run_server(
    recipe: Recipe,
    model: str,
    load_scorer: Callable[[], Any],
    *,
    api_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Bind ``serve.host:serve.port``, then serve until interrupted (Ctrl-C or SIGTERM end
    it gracefully).

    Args:
        recipe: The validated recipe (see :func:`serve`).
        model: The served model's name.
        load_scorer: Builds the :class:`qponder.inference.Scorer`; called in the background
            once the socket listens (``/health`` is 503 until it returns).
        api_key: The bearer key requests need, or None.
        log_level: uvicorn's log level.

    Raises:
        QponderError: The address is taken, or the model could not be loaded (then the
            server stops, with the loader's error).
    """
    import uvicorn

    host, port = recipe.serve.host, recipe.serve.port
    if api_key is None and not _is_loopback(host):
        logger.warning(
            "listening on %s without --api-key-env: anyone who reaches this port can use the model",
            host,
        )
    sock = bind_socket(host, port)
    holder: dict[str, Any] = {}

    def stop_on_load_error(exc: BaseException) -> None:
        holder["error"] = exc
        if "server" in holder:
            holder["server"].should_exit = True

    app = create_app(recipe, model, load_scorer, api_key=api_key, on_load_error=stop_on_load_error)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=recipe.serve.access_log,
        timeout_graceful_shutdown=10,
        # the app's own limits (body size, images, queue) apply; uvicorn's concurrency
        # limit would turn a burst into bare 503s before the queue could say Retry-After
        limit_concurrency=None,
    )
    server = uvicorn.Server(config)
    holder["server"] = server  # set before run(): the loader starts with the app
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logger.info("qponder serve: http://%s:%s/ (model %s)", shown, bound_port, model)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    error = holder.get("error")
    if isinstance(error, QponderError):
        raise error
    if error is not None:
        raise RunFailedError(
            f"could not load the model: {type(error).__name__}: {error}"
        ) from error


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
