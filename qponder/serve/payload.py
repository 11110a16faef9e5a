"""Uploaded image data: a base64 string or a ``data:`` URL in, the file's bytes out, and
the bytes decoded with the checks of :func:`qponder.data.load_image`.

The server never opens a path or fetches a URL that a client sends: a ``data`` value that
looks like one (``http://``, ``https://``, ``file:``, any other scheme, ``/etc/...``,
``~/...``, ``./...``, ``C:\\...``) is refused before anything else, as is anything that is
not base64. The bytes are the client's file exactly: nothing is re-encoded, so a lossless
image stays lossless. An empty ``data`` is an empty file (the base64 of zero bytes), which
the route answers with its ``bad_image:empty`` row, as ``qponder score`` answers a 0-byte
file.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from qponder.data.images import decode_image
from qponder.errors import BadImageError

# A URL scheme ("http:", "file:", "s3:"); base64 never holds a colon, a data URL is handled
# before this, and a Windows drive ("C:\...") matches too.
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# A data URL: data:[<media type>][;param=value]*;base64,<payload>
_DATA_URL_RE = re.compile(r"^data:([^,]*?),", re.IGNORECASE | re.DOTALL)
_WHITESPACE_RE = re.compile(r"\s+")


class PayloadError(ValueError):
    """A ``data`` value that is not base64 or a base64 ``data:`` URL (the request is 422)."""


def _looks_like_path(text: str) -> bool:
    if text.startswith(("~", "./", "../", "\\")):
        return True
    # base64 starting with "/" is a file whose first byte is 0xFC-0xFF: of images, only
    # JPEG (FF D8, "/9j/"); anything else starting with "/" is an absolute path
    return text.startswith("/") and not text.startswith("/9j/")


def decode_data(text: str) -> bytes:
    """Return the file bytes held in ``text``: standard or URL-safe base64 (line breaks
    allowed), or a ``data:`` URL with ``;base64``. Empty text (or an empty data URL) is an
    empty file: ``b""``.

    Raises:
        PayloadError: A URL, a file path, a data URL without base64, or not base64.

    Example:
        >>> decode_data("data:image/png;base64,iVBORw0KGgo=")
        b'\\x89PNG\\r\\n\\x1a\\n'
        >>> decode_data("https://example.com/cat.jpg")
        Traceback (most recent call last):
        qponder.serve.payload.PayloadError: a URL: the server never fetches URLs; send the image bytes as base64
    """
    text = text.strip()
    match = _DATA_URL_RE.match(text)
    if match:
        params = [p.strip().lower() for p in match.group(1).split(";")]
        if "base64" not in params[1:]:
            raise PayloadError("a data URL without ;base64: send the image bytes as base64")
        text = text[match.end() :]
    elif _SCHEME_RE.match(text):
        raise PayloadError("a URL: the server never fetches URLs; send the image bytes as base64")
    elif _looks_like_path(text):
        raise PayloadError(
            "a file path: the server never opens paths; send the image bytes as base64"
        )
    try:
        return base64.b64decode(text, validate=True)  # the common case, at C speed
    except (binascii.Error, ValueError):
        return _lenient_b64decode(text)


def _lenient_b64decode(text: str) -> bytes:
    """Base64 with line breaks, the URL-safe alphabet or without padding."""
    text = _WHITESPACE_RE.sub("", text)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("not base64: send the image bytes as base64 or a data URL") from None


def open_image(data: bytes, name: str, max_pixels: int | None) -> Any:
    """Decode uploaded bytes as an RGB image, or return the :class:`BadImageError` that says
    why they cannot be used (``not_an_image``, ``truncated``, ``too_many_pixels``, ...)."""
    try:
        return decode_image(data, name, max_pixels=max_pixels)
    except BadImageError as exc:
        return exc
