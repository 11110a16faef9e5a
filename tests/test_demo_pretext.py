"""The vision pretext: exact image statistics, and a pretraining that changes only the encoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny_models import copy_of

from qponder.demo.pretext import (
    STATISTICS,
    image_statistics,
    pretext_record,
    pretrain_vision,
    warmup_cosine,
)
from qponder.errors import QponderError
from qponder.models import load_model


def _stats(a) -> dict[str, float]:
    return dict(zip(STATISTICS, image_statistics(a).tolist(), strict=True))


def test_statistics_of_a_uniform_red_image():
    red = np.zeros((10, 12, 3), dtype=np.uint8)
    red[..., 0] = 255
    s = _stats(red)
    assert s["luminance_mean"] == pytest.approx(0.299, abs=1e-6)
    assert s["luminance_std"] == pytest.approx(0.0, abs=1e-6)
    assert s["chroma_mean"] == pytest.approx(1.0) and s["chroma_std"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert s["laplacian_mean"] == pytest.approx(0.0, abs=1e-6)
    assert s["gradient_mean"] == pytest.approx(0.0, abs=1e-6)
    assert (s["red_mean"], s["green_mean"], s["blue_mean"]) == pytest.approx((1.0, 0.0, 0.0))
    assert s["highlight_clip"] == 0.0 and s["shadow_clip"] == 0.0


def test_statistics_of_black_and_white_stripes():
    stripes = np.zeros((8, 8, 3), dtype=np.uint8)
    stripes[:, 1::2] = 255  # alternating columns
    s = _stats(Image.fromarray(stripes))
    assert s["luminance_mean"] == pytest.approx(0.5, abs=1e-6)
    assert s["luminance_std"] == pytest.approx(0.5, abs=1e-6)
    assert s["highlight_clip"] == 0.5 and s["shadow_clip"] == 0.5
    assert s["luminance_p05"] == pytest.approx(0.0, abs=1e-6)
    assert s["luminance_p95"] == pytest.approx(1.0, abs=1e-6)
    assert s["gradient_mean"] == pytest.approx(1.0, abs=1e-6)  # every step is black <-> white
    # the 4-neighbour Laplacian of a column pattern: |4g - 2g - 2(1-g)| = 2
    assert s["laplacian_mean"] == pytest.approx(2.0, abs=1e-6)
    assert s["chroma_mean"] == pytest.approx(0.0, abs=1e-6)


def test_statistics_refuse_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match="RGB image"):
        image_statistics(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least 3x3"):
        image_statistics(np.zeros((2, 8, 3), dtype=np.uint8))


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Textures of varying brightness, contrast and saturation."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.random((56, 56, 3)) * rng.uniform(0.1, 1.0) + rng.uniform(0.0, 0.6)
        grey = base.mean(axis=2, keepdims=True)
        a = grey + (base - grey) * rng.uniform(0.0, 2.0)
        out.append(Image.fromarray((np.clip(a, 0, 1) * 255).astype("uint8")))
    return out


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, small_tiny):
    path = copy_of(small_tiny, tmp_path_factory.mktemp("pretext") / "tiny")  # trained in place
    before = load_file(path / "model.safetensors")
    result = pretrain_vision(
        path, _images(24), steps=60, learning_rate=3e-3, batch_size=8, progress=False
    )
    return path, before, result


def test_pretext_learns_the_statistics(pretrained):
    _, _, result = pretrained
    assert len(result.losses) == 60
    assert result.loss_last < 0.5 * result.loss_first


def test_pretext_changes_the_vision_tower_and_nothing_else(pretrained):
    path, before, _ = pretrained
    after = load_file(path / "model.safetensors")
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the vision tower did not change"
    assert all(".visual." in k or k.startswith("visual.") for k in changed)
    assert any("merger" in k for k in changed)  # the projector learns with the encoder
    lm = [k for k in before if "language_model" in k or k.startswith("lm_head")]
    assert lm and all(torch.equal(before[k], after[k]) for k in lm)


def test_pretrained_folder_is_a_complete_checkpoint_with_its_record(pretrained):
    path, _, result = pretrained
    record = pretext_record(path)
    assert record["steps"] == 60 and record["n_images"] == 24
    assert record["statistics"] == list(STATISTICS)
    assert record["loss_last"] == pytest.approx(result.loss_last)
    assert not list(path.parent.glob("*.pretext-tmp"))
    model, processor = load_model(path)
    assert model.config.model_type == "qwen2_5_vl" and processor.image_processor is not None


def test_pretext_refuses_too_few_images_or_steps(pretrained):
    path, _, _ = pretrained
    with pytest.raises(QponderError, match="at least 2 images"):
        pretrain_vision(path, _images(1), steps=5, progress=False)
    with pytest.raises(QponderError, match="steps must be >= 1"):
        pretrain_vision(path, _images(4), steps=0, progress=False)


def test_schedule_warms_up_then_decays_for_any_number_of_steps():
    assert warmup_cosine(0, 1) == 1.0  # a single step runs at the full rate
    factors = [warmup_cosine(s, 100) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == 1.0 and all(
        a >= b for a, b in zip(factors[10:], factors[11:], strict=False)
    )
    assert 0 < factors[-1] < 0.01


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_few_steps_work(tmp_path, steps, small_tiny):
    path = copy_of(small_tiny, tmp_path / "tiny")
    result = pretrain_vision(path, _images(4), steps=steps, batch_size=2, progress=False)
    assert len(result.losses) == steps


def test_pretext_refuses_a_path_that_is_not_a_model_folder(tmp_path):
    with pytest.raises(QponderError, match="not a model folder"):
        pretrain_vision(tmp_path / "nope", _images(4), steps=2, progress=False)


def test_cli_pretrains_on_a_dataset(tmp_path, small_tiny):
    from qponder.data import load_dataset
    from qponder.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "synth", n=30, seed=1)
    model = copy_of(small_tiny, tmp_path / "tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "qponder.cli", "model", "pretrain-vision", "--model", str(model),
         "--dataset", f"synthetic:{data}", "--steps", "4", "--batch-size", "4", "--no-progress"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    n_train = len(list(load_dataset(f"synthetic:{data}", "train")))
    assert report["images"] == n_train and report["steps"] == 4 and report["bad_images"] == 0
    assert pretext_record(model)["n_images"] == n_train


def test_dataset_images_skips_an_unreadable_file_and_counts_it(tmp_path):
    from qponder.data import load_dataset
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.demo.pretext import dataset_images

    data = make_synthetic_dataset(tmp_path / "synth", n=20, seed=2)
    train = list(load_dataset(f"synthetic:{data}", "train"))
    Path(train[0].image_path).write_bytes(b"not an image")
    images, bad = dataset_images(f"synthetic:{data}", "train")
    assert bad == 1 and len(images) == len(train) - 1
    assert all(im.mode == "RGB" for im in images)
    # the limit counts samples read, the bad one among them
    images, bad = dataset_images(f"synthetic:{data}", "train", limit=3)
    assert (len(images), bad) == (2, 1)
