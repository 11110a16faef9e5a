"""Perception pretraining of a Qwen-VL vision tower on low-level image statistics.

A real student (Qwen2.5-VL-7B) comes with a vision encoder pretrained on billions of
images; the tiny offline model's encoder is random, and learning to see from the IQA
fine-tuning signal alone takes it far longer than the demo's budget (docs/demo.md). This
module gives it a cheap stand-in for that pretraining: a self-supervised pretext task in
which the encoder (with the projector into the language model) learns to regress each
image's low-level statistics (luminance, clipping, percentiles, chroma, edge energy,
channel means) through a temporary linear head. No quality label is used, so the pretext
can run on the training images without touching their MOS.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qponder.errors import QponderError
from qponder.runfiles import write_json_atomic

logger = logging.getLogger(__name__)

STATISTICS: tuple[str, ...] = (
    "luminance_mean",
    "luminance_std",
    "highlight_clip",  # share of pixels with luminance > 0.95
    "shadow_clip",  # share of pixels with luminance < 0.05
    "luminance_p05",
    "luminance_p50",
    "luminance_p95",
    "chroma_mean",  # max - min over R, G, B
    "chroma_std",
    "laplacian_mean",  # mean |4-neighbour Laplacian| of the luminance
    "gradient_mean",  # mean |horizontal difference| of the luminance
    "red_mean",
    "green_mean",
    "blue_mean",
)
PRETEXT_FILE = "pretext.json"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def image_statistics(image: Any) -> np.ndarray:
    """The low-level statistics of an RGB image, in the order of :data:`STATISTICS`.

    Args:
        image: A PIL image (converted to RGB) or an ``(H, W, 3)`` uint8 array.

    Returns:
        A float32 vector of ``len(STATISTICS)`` values; pixel values are on [0, 1].

    Example:
        >>> white = np.full((8, 8, 3), 255, dtype=np.uint8)
        >>> float(image_statistics(white)[STATISTICS.index("highlight_clip")])
        1.0
    """
    a = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 3:
        raise ValueError(f"image_statistics needs an RGB image of at least 3x3, got {a.shape}")
    a = a / 255.0
    g = a @ _LUMA
    chroma = a.max(axis=2) - a.min(axis=2)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    p05, p50, p95 = np.percentile(g, [5, 50, 95])
    return np.array(
        [
            g.mean(),
            g.std(),
            (g > 0.95).mean(),
            (g < 0.05).mean(),
            p05,
            p50,
            p95,
            chroma.mean(),
            chroma.std(),
            lap.mean(),
            np.abs(np.diff(g, axis=1)).mean(),
            *a.reshape(-1, 3).mean(axis=0),
        ],
        dtype=np.float32,
    )


@dataclass
class PretextResult:
    """What :func:`pretrain_vision` did; also written to ``MODEL/pretext.json``."""

    steps: int
    learning_rate: float
    batch_size: int
    seed: int
    n_images: int
    statistics: list[str] = field(default_factory=lambda: list(STATISTICS))
    # mean MSE on the standardised statistics over the first / last 10 % of the steps
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def dataset_images(
    spec: str, split: str = "train", limit: int | None = None, progress: bool = False
) -> tuple[list[Any], int]:
    """The decoded images of a dataset split for the pretext, skipping unreadable files.

    Args:
        spec: A dataset spec, ``NAME:PATH``.
        split: The split to read.
        limit: Read at most this many samples.
        progress: Show a progress bar.

    Returns:
        ``(images, n_bad)``: the RGB images, and how many files were skipped (each logged
        with its path and reason).
    """
    from tqdm.auto import tqdm

    from qponder.data import load_dataset, load_image
    from qponder.errors import BadImageError

    samples = list(load_dataset(spec, split))[:limit]
    images, bad = [], 0
    for s in tqdm(samples, desc="loading images", disable=not progress, unit="img"):
        try:
            images.append(load_image(s.image_path))
        except BadImageError as exc:
            bad += 1
            logger.warning("skipped: %s", exc)
    return images, bad


def pretext_record(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``pretext.json`` of a pretrained model folder, or None when it has none."""
    path = Path(model_dir) / PRETEXT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def warmup_cosine(step: int, total: int, warmup_share: float = 0.1) -> float:
    """Learning-rate factor at ``step`` of ``total``: linear warm-up over the first
    ``warmup_share`` of the steps (at least one), then a cosine decay to zero.

    Example:
        >>> [round(warmup_cosine(s, 10), 3) for s in (0, 1, 5, 9)]
        [1.0, 1.0, 0.587, 0.03]
    """
    warmup = max(1, int(total * warmup_share))
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def _visual(model: Any) -> Any:
    for owner in (getattr(model, "model", None), model):
        vis = getattr(owner, "visual", None)
        if vis is not None:
            return vis
    raise QponderError(
        "pretrain_vision: the model has no Qwen-VL vision tower (model.visual); "
        "the pretext task supports Qwen2-VL, Qwen2.5-VL and Qwen3-VL models"
    )


def _save_weights(model: Any, model_dir: Path) -> None:
    """Write the model into ``model_dir`` without ever leaving a torn checkpoint: save to
    a sibling folder, then move each file over the old one."""
    tmp = model_dir.with_name(model_dir.name + ".pretext-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for f in tmp.iterdir():
        os.replace(f, model_dir / f.name)
    tmp.rmdir()


def _check_inputs(model_dir: str | os.PathLike, images: Sequence[Any], steps: int) -> Path:
    """Refuse what cannot be pretrained, before the model loads; returns the folder."""
    if len(images) < 2:
        raise QponderError(f"pretrain_vision: needs at least 2 images, got {len(images)}")
    if steps < 1:
        raise QponderError(f"pretrain_vision: steps must be >= 1, got {steps}")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise QponderError(f"pretrain_vision: {model_dir} is not a model folder (no config.json)")
    return model_dir


def _load_tower(model_dir: Path) -> tuple[Any, Any, Any]:
    """The model (in float32, for training), its vision tower and its image processor."""
    from qponder.config import ModelConfig
    from qponder.models import load_model

    model, processor = load_model(model_dir, ModelConfig(dtype="float32"), for_training=True)
    vis = _visual(model)
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise QponderError(f"pretrain_vision: {model_dir} has no image processor")
    return model, vis, image_processor


def _train_tower(
    model: Any,
    vis: Any,
    image_processor: Any,
    images: Sequence[Any],
    targets: Any,
    *,
    steps: int,
    learning_rate: float,
    batch: int,
    rng: random.Random,
    progress: bool,
) -> list[float]:
    """The pretext's optimisation: the tower and a throw-away linear head regress
    ``targets`` from the mean of each image's visual tokens; returns the loss per step."""
    import torch
    from tqdm.auto import tqdm

    # the projector maps the visual tokens into the language model's width
    head = torch.nn.Linear(model.config.get_text_config().hidden_size, targets.shape[1])
    params = [*vis.parameters(), *head.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: warmup_cosine(step, steps))
    vis.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="vision pretext", disable=not progress, unit="step")
    for _ in bar:
        idx = rng.sample(range(len(images)), batch)
        enc = image_processor(images=[images[i] for i in idx], return_tensors="pt")
        out = vis(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
        out = getattr(out, "pooler_output", out)  # transformers 5 returns a model output
        tokens = enc["image_grid_thw"].prod(-1) // (getattr(vis, "spatial_merge_size", 2) ** 2)
        pooled = torch.stack([t.mean(0) for t in torch.split(out, tokens.tolist())])
        loss = torch.nn.functional.mse_loss(head(pooled), targets[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(round(float(loss.detach()), 5))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    vis.eval()
    return losses


def pretrain_vision(
    model_dir: str | os.PathLike,
    images: Sequence[Any],
    *,
    steps: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> PretextResult:
    """Pretrain the vision tower of the model in ``model_dir`` on the pretext task, in place.

    The encoder and its projector learn to predict the standardised
    :func:`image_statistics` of each image from the mean of its visual tokens, through a
    linear head that is thrown away afterwards (AdamW, MSE, :func:`warmup_cosine`). Only the
    vision tower's weights change; the language model, tokenizer and processor stay as
    they were. The folder then holds ``pretext.json`` (a :class:`PretextResult`).

    Args:
        model_dir: A Qwen-VL checkpoint folder (e.g. from :func:`qponder.models.tiny.build_tiny_model`).
        images: PIL images; the statistics are computed on them as given, the encoder sees
            them through the model's image processor.
        steps: Optimisation steps.
        learning_rate: Peak learning rate.
        batch_size: Images per step (at most ``len(images)``).
        seed: Seed of the head, the batches and the schedule.
        progress: Show a progress bar.

    Returns:
        The :class:`PretextResult`.

    Raises:
        QponderError: When there are fewer than two images, ``steps < 1``, or the model has
            no Qwen-VL vision tower.
    """
    import torch

    model_dir = _check_inputs(model_dir, images, steps)
    start = time.monotonic()
    # seeded before the model loads: the head is drawn from the same generator afterwards
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, vis, image_processor = _load_tower(model_dir)
    stats = np.stack([image_statistics(im) for im in images])
    targets = torch.tensor((stats - stats.mean(0)) / (stats.std(0) + 1e-6))
    batch = min(batch_size, len(images))
    losses = _train_tower(model, vis, image_processor, images, targets, steps=steps,
                          learning_rate=learning_rate, batch=batch, rng=rng,
                          progress=progress)  # fmt: skip
    _save_weights(model, model_dir)
    tenth = max(1, steps // 10)
    result = PretextResult(
        steps=steps,
        learning_rate=learning_rate,
        batch_size=batch,
        seed=seed,
        n_images=len(images),
        loss_first=float(np.mean(losses[:tenth])),
        loss_last=float(np.mean(losses[-tenth:])),
        seconds=round(time.monotonic() - start, 1),
        losses=losses,
    )
    write_json_atomic(model_dir / PRETEXT_FILE, asdict(result))
    logger.info(
        "vision pretext: %d steps on %d images, loss %.3f -> %.3f, %.0f s",
        steps, len(images), result.loss_first, result.loss_last, result.seconds,
    )  # fmt: skip
    return result


__all__ = [
    "STATISTICS",
    "PretextResult",
    "dataset_images",
    "image_statistics",
    "pretext_record",
    "pretrain_vision",
    "warmup_cosine",
]
