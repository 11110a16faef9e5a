"""What the server takes from the recipe, beyond the recipe's own checks.

The ``serve`` section (:class:`qponder.config.ServeConfig`) says where the server listens
and what it refuses; how it scores comes from the ``eval`` section, as for ``qponder eval``:
``eval.backend``, ``eval.batch_size`` (the most images per model call), ``eval.samples``
(sampled answers per image when a request does not say) and the decoding settings.
"""

from __future__ import annotations

import os

from qponder.config import MAX_SAMPLES, ConfigError, Recipe
from qponder.data.images import DEFAULT_MAX_PIXELS
from qponder.errors import QponderError

# The most pixels an uploaded image may have (width x height): larger ones get a
# ``bad_image:too_many_pixels`` row, read from the header before anything is decoded.
UPLOAD_MAX_PIXELS = DEFAULT_MAX_PIXELS


def check_serve_recipe(recipe: Recipe) -> None:
    """Refuse what the recipe allows but a server cannot take.

    Raises:
        ConfigError: ``eval.samples`` above :data:`qponder.config.MAX_SAMPLES` (a request
            may not ask for more either).
    """
    if recipe.eval.samples > MAX_SAMPLES:
        raise ConfigError(
            f"eval.samples: qponder serve takes at most {MAX_SAMPLES} sampled answers per "
            f"image, got {recipe.eval.samples}"
        )


def max_body_bytes(recipe: Recipe) -> int:
    """The largest request body in bytes (``serve.max_body_mb``)."""
    return int(recipe.serve.max_body_mb * 1024 * 1024)


def read_api_key(env_name: str) -> str:
    """The bearer key held in the environment variable ``env_name``.

    Raises:
        QponderError: When the variable is unset or empty (a server meant to be protected
            never starts open).
    """
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise QponderError(
            f"--api-key-env {env_name}: the environment variable {env_name} is not set or empty"
        )
    return key
