"""load_image turns any file a dataset ships into RGB, or a BadImageError naming path and reason."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from damaged_jpegs import damaged_jpeg, seeded_jpeg
from PIL import Image

import qponder.errors
from qponder.data import BadImageError, check_image, load_image


def _png(path, size=(32, 32), colour=(200, 10, 10)):
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def _noisy_jpeg(path, size=(128, 128)):
    Image.effect_noise(size, 60).convert("RGB").save(path, format="JPEG", quality=90)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a token amount of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- failures


def test_bad_image_error_is_the_shared_error_type():
    assert BadImageError is qponder.errors.BadImageError


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError) as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.reason == "missing"
    assert "nope.jpg" in str(info.value) and "missing" in str(info.value)


def test_directory(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadImageError) as info:
        load_image(tmp_path / "folder.png")
    assert info.value.reason == "is_directory"


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        load_image(tmp_path / "empty.jpg")
    assert info.value.reason == "empty"
    assert str(tmp_path / "empty.jpg") in str(info.value)


def test_non_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    with pytest.raises(BadImageError) as info:
        load_image(tmp_path / "notes.png")
    assert info.value.reason == "not_an_image"


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_file(tmp_path, fmt):
    full = _png(tmp_path / "full.png") if fmt == "png" else _noisy_jpeg(tmp_path / "full.jpg")
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as info:
        load_image(cut)
    assert info.value.reason == "truncated"
    assert str(cut) in str(info.value)


def test_corrupted_pixel_data(tmp_path):
    ok = tmp_path / "ok.png"
    Image.effect_noise((64, 64), 60).convert("RGB").save(ok)
    data = bytearray(ok.read_bytes())
    i = data.find(b"IDAT")
    data[i + 40 : i + 56] = bytes(range(16))  # break the compressed stream, keep the header
    bad = tmp_path / "broken.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadImageError) as info:
        load_image(bad)
    assert info.value.reason == "corrupted"


def test_a_jpeg_with_damaged_body_bytes_is_corrupted_not_decoded_with_made_up_blocks(tmp_path):
    from qponder.data.images import decode_image

    good = seeded_jpeg(tmp_path / "good.jpg")
    bad = damaged_jpeg(good, tmp_path / "bad.jpg")
    Image.open(bad).load()  # PIL alone decodes it without a word: the reason for the check
    with pytest.raises(BadImageError) as info:
        load_image(bad)
    assert info.value.reason == "corrupted" and "Corrupt JPEG data" in str(info.value)
    assert str(bad) in str(info.value)
    with pytest.raises(BadImageError) as upload:  # an upload to the server: the same check
        decode_image(bad.read_bytes(), "upload-0")
    assert upload.value.reason == "corrupted"
    assert check_image(bad) == "corrupted" and check_image(good) is None
    assert load_image(good, max_side=64).size == (64, 48)


def test_a_stray_byte_before_the_end_marker_is_not_corruption(tmp_path):
    good = seeded_jpeg(tmp_path / "good.jpg")
    data = good.read_bytes()
    assert data.endswith(b"\xff\xd9")
    padded = tmp_path / "padded.jpg"  # what some encoders write: the pixels are all there
    padded.write_bytes(data[:-2] + b"\x00" + data[-2:])
    assert np.array_equal(np.asarray(load_image(padded)), np.asarray(load_image(good)))


@pytest.mark.parametrize("kind", ["grey", "cmyk", "progressive", "mpo", "icc"])
def test_whole_jpegs_of_every_kind_pass_the_damage_check(tmp_path, kind):
    img = Image.effect_noise((96, 64), 50).convert("RGB")
    path = tmp_path / f"{kind}.jpg"
    if kind == "grey":
        img.convert("L").save(path, format="JPEG")
    elif kind == "cmyk":
        img.convert("CMYK").save(path, format="JPEG")
    elif kind == "progressive":
        img.save(path, format="JPEG", progressive=True, optimize=True)
    elif kind == "mpo":  # a phone's two views in one file
        img.save(path, format="MPO", save_all=True, append_images=[img.rotate(180)])
    else:
        from PIL import ImageCms

        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        img.save(path, format="JPEG", icc_profile=icc)
    assert load_image(path).size == (96, 64)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20_000, 20_000))  # 400 MP claimed, a few bytes of data
    with pytest.raises(BadImageError) as info:
        load_image(bomb)
    assert info.value.reason == "too_many_pixels"


def test_pixel_limit_is_configurable(tmp_path):
    path = _png(tmp_path / "img.png", size=(200, 100))
    with pytest.raises(BadImageError) as info:
        load_image(path, max_pixels=10_000)
    assert info.value.reason == "too_many_pixels"
    assert "200x100" in str(info.value)
    assert load_image(path, max_pixels=20_000).size == (200, 100)
    assert load_image(path, max_pixels=None).size == (200, 100)


def test_check_image_returns_the_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert check_image(tmp_path / "empty.png") == "empty"
    assert check_image(_png(tmp_path / "ok.png")) is None


# --------------------------------------------------------------------------- conversions


def test_content_is_sniffed_not_the_extension(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    _png(path, colour=(0, 0, 255))
    img = load_image(path)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (0, 0, 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    img.save(path, format="JPEG", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_cmyk_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)
    r, g, b = load_image(path).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.mode == "RGB"
    assert all(120 <= c <= 135 for c in out.getpixel((0, 0)))


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    out = load_image(path)
    assert out.getpixel((1, 1)) == (255, 0, 0)
    assert out.getpixel((6, 1)) == (255, 255, 255)


@pytest.mark.parametrize("mode,colour", [("LA", (0, 0)), ("RGBA", (255, 0, 0, 128))])
def test_alpha_is_composited_on_white(tmp_path, mode, colour):
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (8, 8), colour).save(path)
    r, g, b = load_image(path).getpixel((0, 0))
    if mode == "LA":  # fully transparent
        assert (r, g, b) == (255, 255, 255)
    else:  # half-transparent red over white
        assert r == 255 and 120 <= g <= 135 and g == b


def test_animated_file_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 200 and b < 50


def test_max_side_shrinks_keeping_the_aspect_ratio(tmp_path):
    path = _noisy_jpeg(tmp_path / "wide.jpg", size=(512, 256))
    assert load_image(path, max_side=64).size == (64, 32)
    assert load_image(path, max_side=1024).size == (512, 256)


def test_result_is_detached_from_the_file(tmp_path):
    path = _png(tmp_path / "a.png")
    img = load_image(path)
    path.unlink()
    assert img.getpixel((0, 0)) == (200, 10, 10)
    assert isinstance(img, Image.Image)
