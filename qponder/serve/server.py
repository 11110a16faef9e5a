"""``qponder serve``: the scoring app under uvicorn, on a socket bound before the model
loads (so a busy port is one clear error, not a log line after a minute of loading)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from qponder.errors import QponderError, RunFailedError
from qponder.serve.app import create_app
from qponder.serve.settings import ServeSettings

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


def run_server(
    load_scorer: Callable[[], Any],
    settings: ServeSettings,
    *,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM end it gracefully).

    Args:
        load_scorer: Builds the :class:`qponder.inference.Scorer`; called in the background
            once the socket listens (``/health`` is 503 until it returns).
        settings: Address, batching, limits and the API key.
        log_level: uvicorn's log level.
        access_log: One log line per request.

    Raises:
        QponderError: The address is taken, or the model could not be loaded (then the
            server stops, with the loader's error).
    """
    import uvicorn

    if settings.api_key is None and not _is_loopback(settings.host):
        logger.warning(
            "listening on %s without --api-key-env: anyone who reaches this port can use the model",
            settings.host,
        )
    sock = bind_socket(settings.host, settings.port)
    holder: dict[str, Any] = {}

    def stop_on_load_error(exc: BaseException) -> None:
        holder["error"] = exc
        if "server" in holder:
            holder["server"].should_exit = True

    app = create_app(settings, load_scorer, on_load_error=stop_on_load_error)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        # the app's own limits (body size, images, queue) apply; uvicorn's concurrency
        # limit would turn a burst into bare 503s before the queue could say Retry-After
        limit_concurrency=None,
    )
    server = uvicorn.Server(config)
    holder["server"] = server  # set before run(): the loader starts with the app
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info("qponder serve: http://%s:%s/ (model %s)", shown, port, settings.model_name)
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
