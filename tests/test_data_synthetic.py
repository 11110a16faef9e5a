"""The synthetic dataset: visible distortions, a documented MOS model, content-disjoint
splits, byte-identical output for a seed, and metadata a teacher can describe."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from qponder.data import load_dataset
from qponder.data.synthetic import (
    DISTORTIONS,
    RATER_NOISE_STD,
    SEVERITY_COLUMNS,
    apply_distortions,
    make_synthetic_dataset,
    model_mos,
    procedural_scene,
)

CONTRACT_KINDS = {
    "gaussian_blur", "motion_blur", "gaussian_noise", "impulse_noise", "jpeg",
    "overexposure", "underexposure", "contrast_loss", "saturation_shift", "pixelation",
}  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(out, n=240, seed=7)
    return out


def _rows(out):
    with (out / "labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _digest(out):
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_registry_has_the_contract_kinds_at_five_levels():
    assert set(DISTORTIONS) >= CONTRACT_KINDS and len(DISTORTIONS) >= 8
    for d in DISTORTIONS.values():
        assert len(d.amounts) == 5 and d.aspect in SEVERITY_COLUMNS
        assert 0 < d.loss(1) < d.loss(3) < d.loss(5) <= 1


def test_labels_csv_layout_and_images(synth):
    rows = _rows(synth)
    assert len(rows) == 240
    assert list(rows[0])[:3] == ["image", "mos", "std"]
    assert {"distortion", "level", "distortions", "content", "split", *SEVERITY_COLUMNS} <= set(
        rows[0]
    )
    img = Image.open(synth / rows[0]["image"])
    assert img.size == (112, 112) and img.mode == "RGB"
    assert (synth / "synthetic.json").is_file()


def test_reads_back_with_its_metadata(synth):
    ds = load_dataset(f"synthetic:{synth}")
    same = load_dataset(f"synthetic:{synth / 'labels.csv'}")
    assert [s.id for s in ds] == [s.id for s in same]
    assert ds.split_counts() == {"train": 168, "val": 24, "test": 48}
    kinds = set()
    for s in ds:
        assert isinstance(s.meta["content"], str) and s.meta["content"]
        assert isinstance(s.meta["distortions"], list)
        for d in s.meta["distortions"]:
            assert d["kind"] in DISTORTIONS and 1 <= d["level"] <= 5
            kinds.add(d["kind"])
        assert s.std == RATER_NOISE_STD and 1.0 <= s.mos <= 5.0
    assert kinds == set(DISTORTIONS)
    assert any(len(s.meta["distortions"]) == 2 for s in ds)
    assert any(s.meta["distortions"] == [] for s in ds)


def test_splits_are_disjoint_in_content(synth):
    ds = load_dataset(f"synthetic:{synth}")
    sides = {}
    for s in ds:
        sides.setdefault(s.meta["content"], set()).add(s.split)
    assert all(len(v) == 1 for v in sides.values())
    assert {s.meta["content_kind"] for s in ds} == {"photo", "procedural"}


def test_same_seed_gives_identical_output_and_another_seed_does_not(tmp_path):
    make_synthetic_dataset(tmp_path / "a", n=25, seed=3)
    make_synthetic_dataset(tmp_path / "b", n=25, seed=3)
    make_synthetic_dataset(tmp_path / "c", n=25, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_mos_spreads_over_the_scale_and_follows_the_severity(synth):
    rows = _rows(synth)
    mos = np.array([float(r["mos"]) for r in rows])
    loss = np.array([float(r["quality_loss"]) for r in rows])
    pristine = mos[[r["distortion"] == "none" for r in rows]]
    assert pristine.mean() > 4.4
    assert mos.min() < 1.8 and mos.max() > 4.6
    assert np.percentile(mos, 90) - np.percentile(mos, 10) > 2.0
    assert spearmanr(loss, mos)[0] < -0.95
    noise = mos - np.array([float(r["mos_clean"]) for r in rows])
    assert 0.1 < noise[(mos > 1.01) & (mos < 4.99)].std() < 0.2


def test_perceptual_model_is_documented_arithmetic():
    assert model_mos([], 4.7) == (4.7, 0.0)
    one, loss = model_mos([{"kind": "jpeg", "level": 5}], 4.7)
    assert one == pytest.approx(1 + 3.7 * (1 - 0.8)) and loss == pytest.approx(0.8)
    two, _ = model_mos([{"kind": "jpeg", "level": 5}, {"kind": "gaussian_noise", "level": 5}], 4.7)
    assert two < one


@pytest.mark.parametrize("kind", sorted(DISTORTIONS))
def test_each_distortion_is_visible_and_grows_with_level(kind):
    scene = procedural_scene(112, seed=11)
    diffs, salient = [], []
    for level in range(1, 6):
        out = apply_distortions(scene, [{"kind": kind, "level": level}], np.random.default_rng(0))
        assert out.shape == scene.shape and out.min() >= 0 and out.max() <= 1
        change = np.abs(out - scene)
        diffs.append(float(change.mean()))
        salient.append(float((change.max(axis=-1) > 0.25).mean()))
    # visible at level 1: > 2 grey levels on average, or >= 1 % of pixels changed by a quarter
    assert diffs[0] > 0.008 or salient[0] >= 0.008, (kind, diffs[0] * 255, salient[0])
    assert all(b > a for a, b in zip(diffs, diffs[1:], strict=False)), diffs


def test_aspects_describe_the_distortions(synth):
    for r in _rows(synth):
        for d in json.loads(r["distortions"]):
            aspect = DISTORTIONS[d["kind"]].aspect
            value = int(r[aspect])
            assert abs(value) >= d["level"]
            if d["kind"] == "underexposure" or d.get("direction") == "decrease":
                assert value < 0


def test_size_is_configurable(tmp_path):
    labels = make_synthetic_dataset(tmp_path, n=4, seed=0, size=64)
    first = _rows(tmp_path)[0]["image"]
    assert labels == tmp_path / "labels.csv"
    assert Image.open(tmp_path / first).size == (64, 64)


def test_kinds_and_photo_share_restrict_what_is_drawn(tmp_path):
    kinds = ["overexposure", "contrast_loss"]
    make_synthetic_dataset(tmp_path, n=60, seed=3, kinds=kinds, photo_share=0.0)
    rows = _rows(tmp_path)
    drawn = {d["kind"] for r in rows for d in json.loads(r["distortions"])}
    assert drawn == set(kinds)
    assert {r["content_kind"] for r in rows} == {"procedural"}
    info = json.loads((tmp_path / "synthetic.json").read_text())
    assert info["kinds"] == kinds and info["photo_share"] == 0.0


def test_an_unknown_kind_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown distortion kind.*'blurr'.*gaussian_blur"):
        make_synthetic_dataset(tmp_path, n=5, kinds=["blurr"])
    with pytest.raises(ValueError, match="photo_share"):
        make_synthetic_dataset(tmp_path, n=5, photo_share=1.5)
