"""JPEGs for the tests of damaged data: a photo-like one, the same bytes at every run, and a
copy of it whose compressed body is damaged."""

from __future__ import annotations

import numpy as np
from PIL import Image


def damaged_jpeg(good, bad, flips=64):
    """A copy of the JPEG ``good`` with bits flipped in ``flips`` bytes of the middle of its
    compressed body. No byte becomes or stops being 0xFF, so no marker is made or broken:
    the damage is to the pixel data alone, which PIL decodes without a word."""
    data = bytearray(good.read_bytes())
    body = data.index(b"\xff\xda") + 20  # past the start-of-scan header
    i, flipped = (body + len(data)) // 2, 0
    while flipped < flips:
        if data[i] not in (0x00, 0xFF) and data[i] ^ 0x5A != 0xFF and data[i - 1] != 0xFF:
            data[i] ^= 0x5A
            flipped += 1
        i += 1
    bad.write_bytes(bytes(data))
    return bad


def seeded_jpeg(path, size=(256, 192)):
    """A photo-like JPEG, the same bytes at every run."""
    rng = np.random.default_rng(7)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h)], axis=-1)
    pixels = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path
