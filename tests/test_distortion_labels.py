"""Each labelled dataset's distortion types map to the shared kinds, with their levels, from
what the adapters read (and from the file names where an adapter keeps only those)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from qponder.data import Sample, load_dataset
from qponder.data.distortion_labels import (
    CSIQ_TYPES,
    KADID10K_TYPES,
    LIVE_TYPES,
    SYNTHETIC_ASPECTS,
    TID2013_TYPES,
    distortion_truth,
)
from qponder.data.synthetic import DISTORTIONS, make_synthetic_dataset
from qponder.reasoning import KINDS

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "label-formats"
COLLECTION = LABELS / "icbcbicc_IQA-Dataset"
needs_labels = pytest.mark.skipif(not COLLECTION.is_dir(), reason=f"{COLLECTION} not present")


@pytest.fixture(autouse=True)
def _split_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _sample(id: str, dataset: str, **meta) -> Sample:
    return Sample(id, f"/data/{id}", 3.0, 3.0, dataset, None, meta=meta)


# --------------------------------------------------------------------------- the tables


def test_every_type_of_the_papers_has_a_row_and_a_shared_kind_or_a_reason():
    assert sorted(KADID10K_TYPES) == list(range(1, 26))
    assert sorted(TID2013_TYPES) == list(range(1, 25))
    for table in (KADID10K_TYPES, TID2013_TYPES, CSIQ_TYPES, LIVE_TYPES):
        for spec in table.values():
            assert spec.kind is None or spec.kind in KINDS, spec
            assert spec.kind is not None or spec.note, f"{spec.name}: unmapped without a reason"
            assert spec.graded or spec.note, f"{spec.name}: ungraded without a reason"
    assert {SYNTHETIC_ASPECTS[d.aspect] for d in DISTORTIONS.values()} <= set(KINDS)


# --------------------------------------------------------------------------- KADID-10k


def test_kadid_reads_the_adapter_meta(tmp_path):
    rows = ["dist_img,ref_img,dmos,var"] + [
        f"I{r:02d}_{t:02d}_{lv:02d}.png,I{r:02d}.png,3.0,0.2"
        for r in range(1, 11)
        for t, lv in ((1, 1), (21, 3), (25, 5), (15, 2))
    ]
    (tmp_path / "dmos.csv").write_text("\n".join(rows) + "\n")
    ds = {s.id: s for s in load_dataset(f"kadid:{tmp_path}")}
    truth = distortion_truth(ds["I01_21_03.png"])
    assert dict(truth.kinds) == {"resolution": 3}
    assert (truth.pristine, truth.complete, truth.dataset) == (False, True, "kadid10k")
    assert truth.types == ("kadid10k:21 pixelate",)
    assert dict(distortion_truth(ds["I02_01_01.png"]).kinds) == {"blur": 1}
    assert dict(distortion_truth(ds["I02_15_02.png"]).kinds) == {"blur": 2}  # denoise
    assert dict(distortion_truth(ds["I03_25_05.png"]).kinds) == {"contrast": None}  # ungraded


def test_kadid_falls_back_to_the_file_name():
    truth = distortion_truth(_sample("KADID-10k/images/I81_24_04.png", "kadid"))
    assert dict(truth.kinds) == {"artefacts": 4}
    assert distortion_truth(_sample("I01_99_01.png", "kadid")) is None  # no such type
    assert distortion_truth(_sample("photo.png", "kadid")) is None


# --------------------------------------------------------------------------- TID2013 / TID2008


def test_tid2013_reads_the_adapter_meta(tmp_path):
    lines = [
        f"4.0 i{r:02d}_{t:02d}_{lv}.bmp"
        for r in (1, 2, 3, 4)
        for t, lv in ((1, 1), (8, 3), (17, 2), (24, 5), (7, 4))
    ]
    (tmp_path / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    ds = {s.id: s for s in load_dataset(f"tid2013:{tmp_path}")}
    assert dict(distortion_truth(ds["i01_08_3.bmp"]).kinds) == {"blur": 3}
    assert dict(distortion_truth(ds["i02_01_1.bmp"]).kinds) == {"noise": 1}
    assert dict(distortion_truth(ds["i02_07_4.bmp"]).kinds) == {"artefacts": 4}
    assert dict(distortion_truth(ds["i03_17_2.bmp"]).kinds) == {"contrast": None}
    sparse = distortion_truth(ds["i04_24_5.bmp"])
    assert dict(sparse.kinds) == {} and not sparse.complete and not sparse.pristine
    assert sparse.unmapped == ("tid2013:24 sparse sampling and reconstruction",)


# --------------------------------------------------------------------------- CSIQ


def test_csiq_reads_the_workbook_meta():
    s = _sample("boston.jpeg2000.3.png", "csiq", ref_image="boston.png",
                distortion="jpeg 2000", level=3)  # fmt: skip
    truth = distortion_truth(s)
    assert dict(truth.kinds) == {"compression": 3} and truth.dataset == "csiq"
    noise = _sample("1600.AWGN.1.png", "csiq", distortion="noise", level=1)
    assert dict(distortion_truth(noise).kinds) == {"noise": 1}


def test_csiq_reads_the_label_txt_variant(tmp_path):
    (tmp_path / "csiq_label.txt").write_text(
        "1600.fnoise.4.png 0.5\n1600.BLUR.2 0.5\n1600.contrast.4.png 0.4\n"
    )
    ds = {s.id: s for s in load_dataset(f"csiq:{tmp_path}")}
    assert dict(distortion_truth(ds["1600.fnoise.4.png"]).kinds) == {"noise": 4}
    assert dict(distortion_truth(ds["1600.BLUR.2.png"]).kinds) == {"blur": 2}
    assert dict(distortion_truth(ds["1600.contrast.4.png"]).kinds) == {"contrast": 4}


# --------------------------------------------------------------------------- synthetic


def test_synthetic_truth_is_every_distortion_with_its_level(tmp_path):
    make_synthetic_dataset(tmp_path / "synth", n=40, seed=5, size=32)
    samples = list(load_dataset(f"synthetic:{tmp_path / 'synth'}"))
    for s in samples:
        truth = distortion_truth(s)
        expected: dict[str, int] = {}
        for d in s.meta["distortions"]:
            kind = SYNTHETIC_ASPECTS[DISTORTIONS[d["kind"]].aspect]
            expected[kind] = max(expected.get(kind, 0), d["level"])
        assert dict(truth.kinds) == expected
        assert truth.pristine == (s.meta["distortion"] == "none")
        assert truth.complete and truth.dataset == "synthetic"


def test_synthetic_pairs_and_unknown_kinds():
    both = _sample("x.png", "synthetic", distortions=[
        {"kind": "gaussian_noise", "level": 2}, {"kind": "impulse_noise", "level": 4},
        {"kind": "pixelation", "level": 1}])  # fmt: skip
    assert dict(distortion_truth(both).kinds) == {"noise": 4, "resolution": 1}
    clean = distortion_truth(_sample("y.png", "synthetic", distortions=[]))
    assert clean.pristine and dict(clean.kinds) == {} and clean.complete
    odd = distortion_truth(
        _sample("z.png", "generic", distortions=[{"kind": "vignette", "level": 2}])
    )
    assert odd.unmapped == ("synthetic:vignette",) and not odd.complete


def test_datasets_without_distortion_labels_have_no_truth():
    assert distortion_truth(_sample("1.jpg", "koniq")) is None
    assert distortion_truth(_sample("a.png", "icbcbicc", collection_dataset="KonIQ-10k")) is None


def test_the_truth_is_json_serialisable():
    truth = distortion_truth(_sample("I01_17_02.png", "kadid"))
    assert json.loads(json.dumps(truth.to_dict())) == {
        "kinds": {"exposure": 2},
        "pristine": False,
        "dataset": "kadid10k",
        "types": ["kadid10k:17 darken"],
        "unmapped": [],
    }


# --------------------------------------------------------------------------- the real label files


@needs_labels
@pytest.mark.parametrize(
    ("name", "images", "kinds"),
    [
        ("KADID-10k", 10125, {"blur": 1620, "colour": 2025, "compression": 810, "noise": 1620,
                              "exposure": 1215, "artefacts": 2025, "resolution": 405,
                              "contrast": 405}),
        ("TID2013", 3000, {"noise": 1000, "artefacts": 625, "blur": 250, "compression": 375,
                           "exposure": 125, "contrast": 125, "colour": 375}),
        ("TID2008", 1700, {"noise": 600, "artefacts": 500, "blur": 200, "compression": 200,
                           "exposure": 100, "contrast": 100}),
        ("CSIQ", 866, {"noise": 300, "compression": 300, "blur": 150, "contrast": 116}),
        ("LIVE", 779, {"compression": 344, "noise": 145, "blur": 145, "artefacts": 145}),
    ],
)  # fmt: skip
def test_every_image_of_the_collection_files_gets_its_truth(name, images, kinds):
    samples = list(load_dataset(f"icbcbicc:{COLLECTION / f'{name}.csv'}"))
    truths = [distortion_truth(s) for s in samples]
    assert len(samples) == images and all(t is not None for t in truths)
    counts = Counter(k for t in truths for k in t.kinds)
    assert dict(counts) == kinds
    unmapped = sum(not t.complete for t in truths)
    assert unmapped == (125 if name == "TID2013" else 0)  # sparse sampling


@needs_labels
def test_collection_levels_agree_with_the_file_names():
    with (COLLECTION / "KADID-10k.csv").open(newline="") as f:
        first = next(csv.DictReader(f))
    assert first["dis_img_path"].endswith("I01_01_01.png") and first["dis_type"] == "GBLUR"
    samples = {s.id: s for s in load_dataset(f"icbcbicc:{COLLECTION / 'KADID-10k.csv'}")}
    truth = distortion_truth(samples["KADID-10k/images/I01_01_04.png"])
    assert dict(truth.kinds) == {"blur": 4}
    csiq = {s.id: s for s in load_dataset(f"icbcbicc:{COLLECTION / 'CSIQ.csv'}")}
    assert dict(distortion_truth(csiq["CSIQ/dst_imgs/AWGN/1600.AWGN.5.png"]).kinds) == {"noise": 5}
    tid = {s.id: s for s in load_dataset(f"icbcbicc:{COLLECTION / 'TID2013.csv'}")}
    # the collection calls types 21 and 24 both "Multiply_Dist.": the file name tells them apart
    assert dict(distortion_truth(tid["TID2013/distorted_images/i01_21_3.bmp"]).kinds) == {
        "compression": 3
    }
