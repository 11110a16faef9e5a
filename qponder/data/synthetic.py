"""The embedded synthetic IQA dataset: realistic data with no download.

``make_synthetic_dataset(out, n, seed)`` renders ``n`` small images (default 112 x 112) from
pristine content -- crops of the colour photographs bundled with scikit-image (astronaut,
chelsea, coffee, rocket, motorcycle, immunohistochemistry) and procedural scenes of shapes,
stripes and gradients -- degrades most of them with KADID-style distortions at five levels
(some with two), and gives each a MOS from a documented perceptual model plus rater noise.

Perceptual model (also written to ``DIR/synthetic.json``):

- each distortion kind ``k`` at level ``L`` (1..5) costs a fraction of the quality range
  ``loss_k(L) = weight_k * CURVE[L]`` with ``CURVE = (0.15, 0.33, 0.52, 0.74, 1.0)``;
- losses combine multiplicatively, ``Q = prod_k (1 - loss_k)``;
- ``mos_clean = 1 + (q_content - 1) * Q``, where the pristine quality ``q_content`` lies in
  [4.55, 4.85] (fixed per content);
- ``mos = clip(mos_clean + N(0, RATER_NOISE_STD), 1, 5)``; the noise std (0.15) is written
  in the ``std`` column.

``DIR/labels.csv`` has one row per image: ``image, mos, std, split, content, content_kind,
content_desc, distortion, level, distortions`` (JSON list of ``{"kind", "level", "amount",
...}``), per-aspect severity levels (``sharpness, noise, compression, resolution, exposure,
contrast, colour``; 0 = unaffected, signed for exposure and colour: negative = under-exposed /
desaturated), ``mos_clean``, ``quality_loss`` and measured ``luminance``/``colourfulness``:
enough for a synthetic teacher to describe every aspect. The train/val/test split is
disjoint in content. The same seed gives byte-identical output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from qponder.data.splits import group_split

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 112
RATER_NOISE_STD = 0.15
CURVE = (0.15, 0.33, 0.52, 0.74, 1.0)  # share of a kind's maximum loss at levels 1..5
PRISTINE_SHARE = 0.08  # images left undistorted
TWO_DISTORTION_SHARE = 0.2  # of the distorted images
PHOTO_SHARE = 0.35  # images whose content is a photograph crop
CONTENT_QUALITY = (4.55, 4.85)  # MOS of pristine content
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
FORMAT_VERSION = 1

# the label file's per-aspect severity columns, one per distortion family (the aspects a
# reasoning covers are qponder.prompts.ASPECTS)
SEVERITY_COLUMNS = (
    "sharpness",
    "noise",
    "compression",
    "resolution",
    "exposure",
    "contrast",
    "colour",
)
COLUMNS = (
    "image",
    "mos",
    "std",
    "split",
    "content",
    "content_kind",
    "content_desc",
    "distortion",
    "level",
    "distortions",
    *SEVERITY_COLUMNS,
    "mos_clean",
    "quality_loss",
    "luminance",
    "colourfulness",
)

Array = np.ndarray


# --------------------------------------------------------------------------- distortions


@dataclass(frozen=True)
class Distortion:
    """One distortion kind.

    Attributes:
        kind: Registry key, e.g. ``"gaussian_blur"``.
        aspect: Quality aspect it affects (one of ``SEVERITY_COLUMNS``).
        description: Plain words for reports and teachers.
        amounts: Parameter at levels 1..5 (blur sigma in px at 112 px, noise std, JPEG
            quality, exposure gain, ...); see ``unit``.
        unit: What ``amounts`` measure.
        weight: Quality loss at level 5, as a share of the quality range.
        stage: Order of application (capture, then noise, then resampling and coding).
        apply: ``(image in [0, 1], amount, rng, extras) -> image``.
    """

    kind: str
    aspect: str
    description: str
    amounts: tuple[float, ...]
    unit: str
    weight: float
    stage: int
    apply: Callable[[Array, float, np.random.Generator, dict], Array]

    def loss(self, level: int) -> float:
        """Share of the quality range lost at ``level`` (1..5)."""
        return self.weight * CURVE[level - 1]


def _scale(img: Array) -> float:
    return img.shape[0] / DEFAULT_SIZE


def _gaussian_blur(img: Array, sigma: float, rng, extras: dict) -> Array:
    from scipy.ndimage import gaussian_filter

    s = sigma * _scale(img)
    return gaussian_filter(img, sigma=(s, s, 0), mode="reflect")


def _motion_blur(img: Array, length: float, rng, extras: dict) -> Array:
    from scipy.ndimage import convolve

    angle = float(rng.integers(0, 12)) * 15.0
    extras["angle"] = angle
    n = max(3, int(round(length * _scale(img))) | 1)
    kernel = np.zeros((n, n), dtype=np.float32)
    c = n // 2
    dx, dy = math.cos(math.radians(angle)), -math.sin(math.radians(angle))
    for t in np.linspace(-c, c, 4 * n):
        kernel[int(round(c + t * dy)), int(round(c + t * dx))] = 1.0
    kernel /= kernel.sum()
    return np.stack([convolve(img[..., ch], kernel, mode="reflect") for ch in range(3)], axis=-1)


def _gaussian_noise(img: Array, std: float, rng, extras: dict) -> Array:
    return img + rng.normal(0.0, std, img.shape).astype(np.float32)


def _impulse_noise(img: Array, density: float, rng, extras: dict) -> Array:
    out = img.copy()
    u = rng.random(img.shape[:2])
    out[u < density / 2] = 0.0
    out[(u >= density / 2) & (u < density)] = 1.0
    return out


def _jpeg(img: Array, quality: float, rng, extras: dict) -> Array:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def _exposure(img: Array, gain: float, rng, extras: dict) -> Array:
    linear = np.clip(img, 0, 1) ** 2.2 * gain
    return np.clip(linear, 0, 1) ** (1 / 2.2)


def _contrast_loss(img: Array, keep: float, rng, extras: dict) -> Array:
    mean = img.mean(axis=(0, 1), keepdims=True)
    return mean + (img - mean) * keep


def _saturation_shift(img: Array, amount: float, rng, extras: dict) -> Array:
    up = bool(rng.random() < 0.5)
    extras["direction"] = "increase" if up else "decrease"
    factor = 1.0 + 3.0 * amount if up else 1.0 - amount
    luma = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return luma + (img - luma) * factor


def _pixelation(img: Array, block: float, rng, extras: dict) -> Array:
    size = img.shape[0]
    b = max(2, int(round(block * _scale(img))))
    small = Image.fromarray(to_uint8(img)).resize(
        (max(1, size // b), max(1, size // b)), Image.Resampling.BOX
    )
    big = small.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(big, dtype=np.float32) / 255.0


DISTORTIONS: dict[str, Distortion] = {
    d.kind: d
    for d in (
        Distortion("gaussian_blur", "sharpness", "Gaussian blur", (0.7, 1.2, 1.8, 2.6, 3.6), "sigma px", 0.85, 0, _gaussian_blur),
        Distortion("motion_blur", "sharpness", "motion blur", (3, 5, 8, 11, 15), "streak length px", 0.85, 0, _motion_blur),
        Distortion("overexposure", "exposure", "over-exposure", (1.6, 2.2, 3.0, 4.2, 6.0), "linear gain", 0.8, 0, _exposure),
        Distortion("underexposure", "exposure", "under-exposure", (0.55, 0.35, 0.2, 0.11, 0.05), "linear gain", 0.8, 0, _exposure),
        Distortion("contrast_loss", "contrast", "loss of contrast", (0.7, 0.5, 0.35, 0.22, 0.12), "contrast kept", 0.7, 0, _contrast_loss),
        Distortion("saturation_shift", "colour", "colour saturation shift", (0.4, 0.6, 0.75, 0.9, 1.0), "saturation change", 0.55, 0, _saturation_shift),
        Distortion("gaussian_noise", "noise", "Gaussian noise", (0.03, 0.06, 0.1, 0.15, 0.22), "noise std", 0.8, 1, _gaussian_noise),
        Distortion("impulse_noise", "noise", "impulse (salt-and-pepper) noise", (0.01, 0.03, 0.06, 0.11, 0.18), "pixel share", 0.75, 1, _impulse_noise),
        Distortion("pixelation", "resolution", "pixelation", (2, 3, 4, 6, 8), "block px", 0.85, 2, _pixelation),
        Distortion("jpeg", "compression", "JPEG compression", (45, 25, 14, 8, 4), "JPEG quality", 0.8, 3, _jpeg),
    )
}  # fmt: skip

_CONFLICTS = {
    frozenset({"overexposure", "underexposure"}),
    frozenset({"gaussian_blur", "motion_blur"}),
}


def to_uint8(img: Array) -> Array:
    """Float image in [0, 1] to uint8 (rounded, clipped)."""
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def apply_distortions(img: Array, distortions: list[dict], rng: np.random.Generator) -> Array:
    """Apply ``[{"kind", "level"}, ...]`` in stage order; adds ``amount`` (and extras) to each."""
    for d in sorted(distortions, key=lambda d: DISTORTIONS[d["kind"]].stage):
        spec = DISTORTIONS[d["kind"]]
        amount = spec.amounts[d["level"] - 1]
        d["amount"] = amount
        img = np.clip(spec.apply(img.astype(np.float32), amount, rng, d), 0.0, 1.0)
    return img


def model_mos(distortions: list[dict], content_quality: float) -> tuple[float, float]:
    """The perceptual model: ``(mos_clean, quality_loss)`` for a list of distortions."""
    keep = 1.0
    for d in distortions:
        keep *= 1.0 - DISTORTIONS[d["kind"]].loss(d["level"])
    return 1.0 + (content_quality - 1.0) * keep, 1.0 - keep


# --------------------------------------------------------------------------- content

PHOTOS = {
    "astronaut": "a portrait of an astronaut in front of a flag",
    "chelsea": "a close-up of a tabby cat",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on its launch pad",
    "motorcycle": "a motorcycle in a workshop",
    "immunohistochemistry": "a stained microscopy slide",
}


@cache
def _photo(name: str) -> Image.Image | None:
    """A bundled scikit-image photograph, or ``None`` where the install lacks it."""
    try:
        import skimage.data as skdata

        arr = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    except Exception as exc:  # data file missing, or a pooch download required
        logger.warning("skimage.data.%s unavailable (%s); using procedural scenes", name, exc)
        return None
    return Image.fromarray(np.asarray(arr)[..., :3]).convert("RGB")


def available_photos() -> list[str]:
    """Names of the bundled photographs that load offline."""
    return [name for name in PHOTOS if _photo(name) is not None]


def photo_crop(name: str, size: int, rng: np.random.Generator) -> tuple[Array, list[int]]:
    """A random square crop (55-100 % of the short side) of a photograph, resized."""
    img = _photo(name)
    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.55, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    box = [x, y, x + side, y + side]
    small = img.resize((size, size), Image.Resampling.LANCZOS, box=tuple(box), reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32) / 255.0, box


def _colour(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def procedural_scene(size: int, seed: int) -> Array:
    """A crisp, colourful scene: gradient sky and ground, shapes, stripes and lines.

    Drawn at twice the size and downsampled, so edges are sharp but not aliased.
    """
    rng = np.random.default_rng(seed)
    big = 2 * size
    y = np.linspace(0.0, 1.0, big, dtype=np.float32)[:, None, None]
    top, bottom = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    sky = top + (bottom - top) * y
    horizon = int(big * rng.uniform(0.45, 0.75))
    ground = np.array(_colour(rng, 20, 160), np.float32) * (0.8 + 0.4 * (y - 0.5))
    canvas = np.where(np.arange(big)[:, None, None] < horizon, sky, ground)
    img = Image.fromarray(np.clip(np.broadcast_to(canvas, (big, big, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    # a striped or checkered patch: fine detail that blur, noise and pixelation destroy
    x0, y0 = (int(v) for v in rng.integers(0, big // 2, 2))
    w, h = (int(v) for v in rng.integers(big // 5, big // 2, 2))
    period = int(rng.integers(4, 12))
    c1, c2 = _colour(rng), _colour(rng)
    checker = rng.random() < 0.5
    for i in range(0, w, period):
        for j in range(0, h, period) if checker else [0]:
            odd = ((i // period) + (j // period)) % 2 if checker else (i // period) % 2
            draw.rectangle(
                [x0 + i, y0 + j, x0 + i + period - 1, y0 + (j + period - 1 if checker else h)],
                fill=c1 if odd else c2,
            )
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = (int(v) for v in rng.integers(0, big, 2))
        r = int(rng.integers(big // 16, big // 5))
        shape = rng.integers(0, 3)
        fill, outline = _colour(rng), _colour(rng, 0, 80)
        if shape == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=3)
        elif shape == 1:
            draw.rectangle(
                [cx - r, cy - r // 2, cx + r, cy + r // 2], fill=fill, outline=outline, width=3
            )
        else:
            draw.polygon(
                [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill, outline=outline
            )
    for _ in range(int(rng.integers(1, 4))):
        pts = [tuple(int(v) for v in rng.integers(0, big, 2)) for _ in range(2)]
        draw.line(pts, fill=_colour(rng, 0, 255), width=int(rng.integers(2, 5)))
    small = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float32) / 255.0


def colourfulness(img: Array) -> float:
    """Hasler and Suesstrunk's colourfulness of an RGB image in [0, 1] (about 0 to 1)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


# --------------------------------------------------------------------------- dataset


def _unit_hash(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _draw_distortions(rng: np.random.Generator, kinds: list[str]) -> list[dict]:
    if rng.random() < PRISTINE_SHARE:
        return []
    first = kinds[int(rng.integers(len(kinds)))]
    chosen = [first]
    others = [k for k in kinds if k != first and frozenset({first, k}) not in _CONFLICTS]
    if others and rng.random() < TWO_DISTORTION_SHARE:
        chosen.append(others[int(rng.integers(len(others)))])
    return [{"kind": k, "level": int(rng.integers(1, 6))} for k in chosen]


def _aspects(distortions: list[dict]) -> dict[str, int]:
    out = dict.fromkeys(SEVERITY_COLUMNS, 0)
    for d in distortions:
        aspect = DISTORTIONS[d["kind"]].aspect
        sign = -1 if d["kind"] == "underexposure" or d.get("direction") == "decrease" else 1
        if abs(sign * d["level"]) > abs(out[aspect]):
            out[aspect] = sign * d["level"]
    return out


def _contents(n: int, seed: int) -> tuple[list[str], dict[str, str]]:
    """Content ids and their split: photographs and procedural scenes split separately."""
    photos = available_photos()
    scenes = [f"scene_{i:03d}" for i in range(max(6, round(n / 12)))]
    split: dict[str, str] = {}
    for group in (photos, scenes):
        if group:
            split.update(group_split(group, seed, SPLIT_FRACTIONS))
    return photos + scenes, split


def image_splits(n: int, seed: int) -> list[str]:
    """Split of each image: exact shares of ``SPLIT_FRACTIONS``, in a seeded order."""
    counts = {"val": round(n * SPLIT_FRACTIONS["val"]), "test": round(n * SPLIT_FRACTIONS["test"])}
    if n >= 3:
        counts = {k: max(1, v) for k, v in counts.items()}
    splits = ["test"] * counts["test"] + ["val"] * counts["val"]
    splits += ["train"] * (n - len(splits))
    order = np.random.default_rng([seed, n]).permutation(n)
    return [splits[j] for j in order]


def _render(
    i: int,
    seed: int,
    size: int,
    photos: list[str],
    scenes: list[str],
    kinds: list[str],
    photo_share: float = PHOTO_SHARE,
) -> dict:
    """Render image ``i`` from content drawn among ``photos``/``scenes`` (one split's pools),
    degraded with distortions drawn among ``kinds``."""
    rng = np.random.default_rng([seed, i])
    use_photo = bool(photos) and (not scenes or rng.random() < photo_share)
    if use_photo:
        content = photos[int(rng.integers(len(photos)))]
        base, box = photo_crop(content, size, rng)
        kind, desc = "photo", PHOTOS[content]
    else:
        content = scenes[int(rng.integers(len(scenes)))]
        base = _scene(size, seed, content)
        kind, desc, box = (
            "procedural",
            "a synthetic scene of coloured shapes, stripes and lines",
            None,
        )
    distortions = _draw_distortions(rng, kinds)
    img = apply_distortions(base, distortions, rng)
    q_content = CONTENT_QUALITY[0] + (CONTENT_QUALITY[1] - CONTENT_QUALITY[0]) * _unit_hash(
        seed, content
    )
    mos_clean, loss = model_mos(distortions, q_content)
    mos = min(5.0, max(1.0, mos_clean + float(rng.normal(0.0, RATER_NOISE_STD))))
    pixels = to_uint8(img)
    final = pixels.astype(np.float32) / 255.0
    row = {
        "image": f"images/{i:05d}.png",
        "mos": f"{mos:.4f}",
        "std": f"{RATER_NOISE_STD:.2f}",
        "content": content,
        "content_kind": kind,
        "content_desc": desc,
        "distortion": "+".join(d["kind"] for d in distortions) or "none",
        "level": max((d["level"] for d in distortions), default=0),
        "distortions": json.dumps(distortions, separators=(",", ":")),
        **_aspects(distortions),
        "mos_clean": f"{mos_clean:.4f}",
        "quality_loss": f"{loss:.4f}",
        "luminance": f"{float((final @ np.array([0.299, 0.587, 0.114])).mean()):.4f}",
        "colourfulness": f"{colourfulness(final):.4f}",
    }
    return {"row": row, "pixels": pixels, "crop": box}


@lru_cache(maxsize=256)
def _scene_cached(size: int, seed: int, content: str) -> bytes:
    return procedural_scene(size, seed * 100_003 + int(content.split("_")[1])).tobytes()


def _scene(size: int, seed: int, content: str) -> Array:
    return np.frombuffer(_scene_cached(size, seed, content), dtype=np.float32).reshape(
        size, size, 3
    )


def model_description() -> dict:
    """The perceptual model and distortion parameters, as written to ``synthetic.json``."""
    return {
        "curve": list(CURVE),
        "content_quality": list(CONTENT_QUALITY),
        "rater_noise_std": RATER_NOISE_STD,
        "combination": "mos_clean = 1 + (q_content - 1) * prod_k (1 - weight_k * curve[level_k - 1])",
        "distortions": {
            k: {
                "aspect": d.aspect,
                "description": d.description,
                "amounts": list(d.amounts),
                "unit": d.unit,
                "weight": d.weight,
                "stage": d.stage,
            }
            for k, d in DISTORTIONS.items()
        },
    }


def make_synthetic_dataset(
    out: str | Path,
    n: int = 1000,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    kinds: Sequence[str] | None = None,
    photo_share: float = PHOTO_SHARE,
) -> Path:
    """Write the synthetic dataset: ``out/images/*.png``, ``out/labels.csv``, ``out/synthetic.json``.

    Args:
        out: Output folder (created; existing files of the same names are overwritten).
        n: Number of images.
        seed: Seed of everything: content, distortions, rater noise and split.
        size: Image side in pixels; distortion amounts are given at 112 px and scale with it.
        kinds: Distortion kinds to draw from (keys of ``DISTORTIONS``); all of them when None.
        photo_share: Share of images whose content is a photograph crop (0 = procedural
            scenes only).

    Returns:
        The path of ``labels.csv``; read it back with ``load_dataset("synthetic:" + out)``.

    Raises:
        ValueError: ``n < 1``, ``size < 16``, an unknown kind or a share outside [0, 1].
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 px, got {size}")
    kinds = list(DISTORTIONS) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in DISTORTIONS]
    if unknown or not kinds:
        what = f"unknown distortion kind(s) {unknown}" if unknown else "no distortion kind given"
        raise ValueError(f"{what}; known: {', '.join(DISTORTIONS)}")
    if not 0.0 <= photo_share <= 1.0:
        raise ValueError(f"photo_share must lie in [0, 1], got {photo_share}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    contents, split_of = _contents(n, seed)
    pools = {
        split: (
            [c for c in contents if c in PHOTOS and split_of[c] == split],
            [c for c in contents if c not in PHOTOS and split_of[c] == split],
        )
        for split in SPLIT_FRACTIONS
    }
    labels = out / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, split in enumerate(image_splits(n, seed)):
            item = _render(i, seed, size, *pools[split], kinds, photo_share)
            Image.fromarray(item["pixels"]).save(out / item["row"]["image"], format="PNG")
            writer.writerow({**item["row"], "split": split})
    info = {
        "format": FORMAT_VERSION,
        "n": n,
        "seed": seed,
        "size": size,
        "kinds": kinds,
        "photo_share": photo_share,
        "split_fractions": SPLIT_FRACTIONS,
        "contents": {c: split_of[c] for c in contents},
        "model": model_description(),
    }
    (out / "synthetic.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return labels
