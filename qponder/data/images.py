"""Defensive image loading: any file a dataset ships becomes an RGB image or a clear error.

:func:`load_image` sniffs the content (never trusts the extension), applies the EXIF
orientation, converts CMYK, 16-bit, palette, grey+alpha and RGBA images to 8-bit RGB
(transparent areas composited on white), takes the first frame of animated files and refuses
decompression bombs by pixel count before decoding. Truncated files are an error (unless
some other code sets PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES``). Every failure is a
:class:`~qponder.errors.BadImageError` whose message names the path and the reason.

A JPEG whose compressed data is damaged (bytes changed in its body) is ``corrupted`` too.
PIL cannot tell: its decoder silences libjpeg's "Corrupt JPEG data" warnings and fills the
damaged part with made-up blocks, whose quality a model would then score. So the data is
read a second time by libjpeg-turbo through ``simplejpeg``, which reports those warnings
(at 1/8 scale: the whole compressed stream is still read, few pixels are made).
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from qponder.errors import BadImageError

# 64 megapixels (e.g. 8000 x 8000): above any IQA benchmark image, far below what would
# exhaust memory when decoded (3 bytes per pixel).
DEFAULT_MAX_PIXELS = 64_000_000

# Reasons, as stored in BadImageError.reason and in `qponder data inspect` reports.
MISSING = "missing"
IS_DIRECTORY = "is_directory"
EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPTED = "corrupted"
TOO_MANY_PIXELS = "too_many_pixels"

_PIL_LIMIT_LOCK = threading.Lock()
_WHITE = (255, 255, 255)

logger = logging.getLogger(__name__)

# libjpeg-turbo's warnings (jerror.h) that say the compressed pixel data is damaged and the
# decoder went on with made-up blocks. Its other warnings are about metadata (an unknown
# JFIF revision, a bad ICC marker, odd scan parameters) or a truncated file (PIL's
# ``truncated``), and leave the pixels that are there as they are.
_DAMAGED_DATA = re.compile(
    r"bad huffman code|bad arithmetic code|premature end of data segment|instead of rst"
)
_STRAY_BYTES = re.compile(r"(\d+) extraneous bytes before marker")
# A few stray bytes before a marker are a quirk of some encoders, seen in large photo
# collections, and hide at most a block or two; a decoder that lost its place in damaged
# data nearly always leaves more unread (in a trial of 400 damaged files, 3 left 4 or fewer).
_MAX_STRAY_BYTES = 4
_NO_CHECKER_TOLD = threading.Event()


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    verify_jpeg: bool = True,
) -> Image.Image:
    """Load an image file as an 8-bit RGB PIL image, fully decoded.

    Args:
        path: The image file.
        max_pixels: Refuse images with more pixels than this (width x height, checked from
            the header before decoding); ``None`` disables the check, PIL's own limit included.
        max_side: If given, shrink the image so that its longer side is at most this many
            pixels (JPEGs are decoded at reduced size directly, which is much faster).
        verify_jpeg: Check a JPEG's compressed data for damage (a second, 1/8-scale decode:
            about a third more time); off where the same file was checked before (training
            decodes each image again at every step, after a check at load time).

    Returns:
        An RGB image, detached from the file.

    Raises:
        BadImageError: ``reason`` is one of ``missing``, ``is_directory``, ``empty``,
            ``not_an_image``, ``truncated``, ``corrupted``, ``too_many_pixels``.

    Example:
        >>> load_image("photo.heic")  # doctest: +SKIP
        Traceback (most recent call last):
        qponder.errors.BadImageError: photo.heic: not_an_image (cannot identify image file)
    """
    path = Path(path)
    return decode_image(
        _read_bytes(path), path, max_pixels=max_pixels, max_side=max_side, verify_jpeg=verify_jpeg
    )


def decode_image(
    data: bytes,
    name: str | os.PathLike = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    verify_jpeg: bool = True,
) -> Image.Image:
    """Decode an image file held in memory (an upload) as :func:`load_image` does a file on
    disk, with the same checks and reasons; ``name`` stands for the path in errors."""
    if not data:
        raise BadImageError(str(name), EMPTY, "zero bytes")
    path = Path(name)
    img = _open(path, data, max_pixels)
    try:
        if max_side is not None and img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))
        img.load()
        if verify_jpeg and img.format in ("JPEG", "MPO"):  # MPO: a JPEG with a second view
            _check_jpeg_data(path, data)
        rgb = to_rgb(_oriented(img))
    except BadImageError:
        raise
    except Exception as exc:
        raise _decode_error(path, exc) from None
    finally:
        img.close()
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return rgb


def _jpeg_damage(data: bytes) -> str | None:
    """What libjpeg-turbo says is damaged in a JPEG's compressed data, if anything.

    Returns:
        libjpeg's warning (``Corrupt JPEG data: bad Huffman code``, ``... 2589 extraneous
        bytes before marker 0xd9``) when the data is damaged; None when it is whole, when
        it only warns about metadata, or when ``simplejpeg`` is not installed (said once in
        the log). A change that still reads as valid data (a flipped bit, often) cannot be
        seen by any decoder.
    """
    try:
        import simplejpeg
    except ImportError:  # a dependency; an install that lacks it checks nothing, and says so
        if not _NO_CHECKER_TOLD.is_set():
            _NO_CHECKER_TOLD.set()
            logger.warning("simplejpeg is not installed: JPEG data is not checked for "
                           "damage (pip install simplejpeg)")  # fmt: skip
        return None
    try:
        space = simplejpeg.decode_jpeg_header(data, strict=False)[2]
        target = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(space, "RGB")
        simplejpeg.decode_jpeg(data, colorspace=target, min_factor=8, strict=True)
    except ValueError as exc:  # the first warning (strict), or an error PIL did not meet
        message = str(exc)
        stray = _STRAY_BYTES.search(message)
        if _DAMAGED_DATA.search(message.lower()) or (
            stray and int(stray.group(1)) > _MAX_STRAY_BYTES
        ):
            return message
    return None


def _check_jpeg_data(path: Path, data: bytes) -> None:
    damage = _jpeg_damage(data)
    if damage is not None:
        raise BadImageError(
            str(path), CORRUPTED, f"{damage}; the decoder would fill in made-up blocks"
        )


def check_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> str | None:
    """Return ``None`` when :func:`load_image` would succeed, else the failure reason."""
    try:
        load_image(path, max_pixels=max_pixels)
    except BadImageError as exc:
        return exc.reason
    return None


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise BadImageError(str(path), IS_DIRECTORY, "a directory, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(str(path), MISSING, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(str(path), IS_DIRECTORY, "a directory, not a file") from None
    except OSError as exc:
        raise BadImageError(str(path), MISSING, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise BadImageError(str(path), EMPTY, "zero bytes")
    return data


def _open(path: Path, data: bytes, max_pixels: int | None) -> Image.Image:
    """Identify the format from the bytes and check the pixel count before decoding."""
    try:
        if max_pixels is None or max_pixels > 2 * (Image.MAX_IMAGE_PIXELS or 0):
            img = _open_without_pil_limit(data)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadImageError(str(path), TOO_MANY_PIXELS, str(exc)) from None
    except UnidentifiedImageError:
        raise BadImageError(str(path), NOT_AN_IMAGE, "cannot identify image file") from None
    except Exception as exc:  # a broken header fails inside the format plugin
        raise _decode_error(path, exc) from None
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        img.close()
        raise BadImageError(
            str(path), TOO_MANY_PIXELS, f"{width}x{height} exceeds the limit of {max_pixels} pixels"
        )
    if width <= 0 or height <= 0:
        raise BadImageError(str(path), CORRUPTED, f"invalid size {width}x{height}")
    return img


def _open_without_pil_limit(data: bytes) -> Image.Image:
    # PIL checks its global MAX_IMAGE_PIXELS inside Image.open; lift it only around our call.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # broken EXIF is common in camera files and is no reason to drop them
        return img


def _decode_error(path: Path, exc: BaseException) -> BadImageError:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "truncated" in lowered or "end of file" in lowered or isinstance(exc, EOFError):
        return BadImageError(str(path), TRUNCATED, text)
    if isinstance(
        exc, (OSError, SyntaxError, ValueError, zlib.error, IndexError, KeyError, EOFError)
    ):
        return BadImageError(str(path), CORRUPTED, text)
    return BadImageError(str(path), CORRUPTED, f"{type(exc).__name__}: {text}")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB.

    16-bit and 32-bit grey levels are scaled (not clipped) to 8 bits; alpha (RGBA, LA, PA,
    palette transparency) is composited on white; CMYK, YCbCr, LAB and HSV are converted.
    """
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _wide_grey_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "LAB":
        from PIL import ImageCms

        lab_to_rgb = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(img, lab_to_rgb)
    return img.convert("RGB")


def _wide_grey_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        peak = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
    elif img.mode == "I" and arr.size and arr.max() <= 255:
        peak = 255.0
    else:
        peak = 65535.0
    grey = np.clip(np.nan_to_num(arr) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
