"""The real label files in ../shared/data load with the right counts (skipped when absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from qponder.data import load_dataset, load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = SHARED / "label-formats"
BIQ_SAMPLE = SHARED / "biq2021-train-sample"
ICBCBICC = sorted((LABELS / "icbcbicc_IQA-Dataset").glob("*.csv")) if LABELS.is_dir() else []

needs_labels = pytest.mark.skipif(not LABELS.is_dir(), reason=f"{LABELS} not present")
needs_biq = pytest.mark.skipif(not BIQ_SAMPLE.is_dir(), reason=f"{BIQ_SAMPLE} not present")


@pytest.fixture(autouse=True)
def _split_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@needs_labels
def test_koniq_official_split_counts():
    ds = load_dataset(f"koniq:{LABELS / 'koniq_official'}")
    assert ds.split_counts() == {"train": 7058, "val": 1000, "test": 2015}
    assert len(load_dataset(f"koniq:{LABELS / 'koniq_official'}", "val")) == 1000
    assert all(1.0 <= s.mos <= 5.0 for s in ds)


@needs_labels
def test_koniq_mos_from_the_distribution_matches_the_published_1_to_5_mos():
    ds = {s.id: s.mos for s in load_dataset(f"koniq:{LABELS / 'koniq_official'}")}
    with (LABELS / "icbcbicc_IQA-Dataset" / "KonIQ-10k.csv").open(newline="") as f:
        published = {
            r["dis_img_path"].rsplit("/", 1)[-1]: float(r["score"]) for r in csv.DictReader(f)
        }
    assert set(ds) == set(published)
    assert max(abs(ds[k] - published[k]) for k in ds) < 1e-9


@needs_labels
def test_agiqa3k_count():
    ds = load_dataset(f"agiqa3k:{LABELS / 'AGIQA-3K'}")
    assert len(ds) == 2982
    assert sum(ds.split_counts().values()) == 2982


@needs_labels
@pytest.mark.parametrize("path", ICBCBICC, ids=[p.stem for p in ICBCBICC])
def test_every_icbcbicc_csv_loads_completely(path):
    with path.open(newline="", encoding="utf-8") as f:
        rows = sum(1 for r in csv.DictReader(f) if any(v and v.strip() for v in r.values()))
    ds = load_dataset(f"icbcbicc:{path}")
    assert len(ds) == rows
    assert all(1.0 <= s.mos <= 5.0 for s in ds)
    assert set(ds.split_counts()) == {"train", "val", "test"}


@needs_biq
def test_biq2021_sample_loads_with_its_images():
    ds = load_dataset(f"biq2021:{BIQ_SAMPLE}", require_images=True)
    assert len(ds) == 1000
    assert ds.split_counts() == {"train": 900, "val": 100}
    img = load_image(ds.samples[0].image_path)
    assert img.mode == "RGB" and img.size == (512, 512)
