"""Uploaded image data: base64 and data URLs decode to the exact file bytes; URLs, paths and
non-base64 are refused without being opened; bad bytes become BadImageErrors with the
reasons of load_image."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from serve_support import bomb_png

from qponder.errors import BadImageError
from qponder.serve.payload import PayloadError, decode_data, open_image


def _png() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: base64.b64encode(b).decode(),
        lambda b: "data:image/png;base64," + base64.b64encode(b).decode(),
        lambda b: "DATA:image/png;charset=x;BASE64," + base64.b64encode(b).decode(),
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
        lambda b: base64.encodebytes(b).decode(),  # wrapped at 76 characters, as `base64` does
    ],
    ids=["base64", "data-url", "data-url-params", "urlsafe-unpadded", "wrapped"],
)
def test_base64_forms_give_the_exact_bytes(encode):
    for raw in (_png(), _jpeg()):
        assert decode_data(encode(raw)) == raw


def test_jpeg_base64_starting_with_a_slash_is_not_taken_for_a_path():
    text = base64.b64encode(_jpeg()).decode()
    assert text.startswith("/9j/")
    assert decode_data(text) == _jpeg()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://example.com/a.png", "URL"),
        ("https://example.com/a.png", "URL"),
        ("HTTPS://example.com/a.png", "URL"),
        ("file:///etc/passwd", "URL"),
        ("file:/etc/passwd", "URL"),
        ("s3://bucket/key.png", "URL"),
        ("C:\\photos\\a.png", "URL"),
        ("/etc/passwd", "path"),
        ("/etc/passwd1", "path"),  # valid base64 as it happens: refused all the same
        ("/home/user/photo.jpg", "path"),
        ("~/photo.jpg", "path"),
        ("./photo.jpg", "path"),
        ("../photo.jpg", "path"),
        ("\\\\server\\share\\a.png", "path"),
        ("photo.jpg", "base64"),
        ("not base64 at all!", "base64"),
        ("data:image/png,rawbytes", "without ;base64"),
        ("data:image/png;base64,%%%", "base64"),
    ],
)
def test_urls_paths_and_non_base64_are_refused(text, why):
    with pytest.raises(PayloadError, match=why):
        decode_data(text)


@pytest.mark.parametrize("text", ["", "   ", "\n", "data:image/jpeg;base64,"])
def test_empty_data_is_an_empty_file_not_a_malformed_request(text):
    # the base64 of a 0-byte file is "": it gets the bad_image:empty row, as in qponder score
    assert decode_data(text) == b""
    assert open_image(decode_data(text), "empty.jpg", max_pixels=None).reason == "empty"


def test_decoded_images_are_the_pixels_of_the_file():
    raw = _png()
    img = open_image(raw, "a", max_pixels=None)
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello, not an image", "not_an_image"),
        (b"", "empty"),
        (_png()[:60], "truncated"),
        (bomb_png(), "too_many_pixels"),
    ],
)
def test_bad_bytes_become_the_reasons_of_load_image(data, reason):
    err = open_image(data, "upload-7", max_pixels=64_000_000)
    assert isinstance(err, BadImageError)
    assert err.reason == reason and "upload-7" in str(err)


def test_the_pixel_limit_is_the_servers():
    raw = _png()  # 600 pixels
    assert isinstance(open_image(raw, "a", max_pixels=599), BadImageError)
    assert not isinstance(open_image(raw, "a", max_pixels=600), BadImageError)
