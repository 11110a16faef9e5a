"""Each adapter reads its dataset's ORIGINAL release files (written here as small fixtures) and
puts the MOS on [1, 5], higher is better, keeping the raw value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from qponder.data import DatasetError, load_dataset


@pytest.fixture(autouse=True)
def _split_cache(tmp_path, monkeypatch):
    """Seeded split files go to a per-test cache, never to the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QPONDER_DATA_ROOT", raising=False)


def _img(path, colour=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _by_id(ds):
    return {s.id: s for s in ds}


# --------------------------------------------------------------------------- KonIQ-10k

KONIQ_SCORES = (
    '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"\n'
    '"10004473376.jpg",0,0,25,73,7,105,3.82857142857143,0.527277894494,77.3836206897\n'
    '"10007357496.jpg",0,3,45,47,1,96,3.47916666666667,0.580003024795,68.7285714286\n'
    '"10013331456.jpg",0,0,0,0,10,10,5,0,100\n'
)
KONIQ_SETS = (
    "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n"
    "10004473376.jpg,0.0,0.0,0.238095238095,0.695238095238,0.0666666666667,105,77.3836206897,0.527277894494,training\n"
    "10007357496.jpg,0.0,0.03125,0.46875,0.489583333333,0.0104166666667,96,68.7285714286,0.580003024795,test\n"
    "10013331456.jpg,0,0,0,0,1,10,100,0,validation\n"
)


def test_koniq_reads_the_scores_file_and_the_official_split(tmp_path):
    root = tmp_path / "koniq10k"
    root.mkdir()
    (root / "koniq10k_scores_and_distributions.csv").write_text(KONIQ_SCORES)
    (root / "koniq10k_distributions_sets.csv").write_text(KONIQ_SETS)
    _img(root / "1024x768" / "10004473376.jpg")
    ds = load_dataset(f"koniq:{root}")
    s = _by_id(ds)["10004473376.jpg"]
    assert s.mos == pytest.approx(3.82857142857143) and s.mos_raw == pytest.approx(3.82857142857143)
    assert s.std == pytest.approx(0.527277894494)
    assert s.split == "train" and s.dataset == "koniq"
    assert s.image_path == str(root / "1024x768" / "10004473376.jpg")
    assert ds.split_counts() == {"train": 1, "val": 1, "test": 1}
    assert [x.id for x in load_dataset(f"koniq:{root}", "test")] == ["10007357496.jpg"]


def test_koniq_with_only_the_sets_file_computes_the_same_mos(tmp_path):
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(KONIQ_SETS)
    ds = _by_id(load_dataset(f"koniq:{tmp_path / 'koniq10k_distributions_sets.csv'}"))
    assert ds["10004473376.jpg"].mos == pytest.approx(3.82857142857143, abs=1e-9)
    assert ds["10004473376.jpg"].meta["mos_zscore"] == pytest.approx(77.3836206897)
    assert ds["10013331456.jpg"].mos == 5.0 and ds["10013331456.jpg"].split == "val"


# --------------------------------------------------------------------------- SPAQ


def test_spaq_reads_the_annotation_workbook(tmp_path):
    import openpyxl

    root = tmp_path / "SPAQ"
    (root / "Annotations").mkdir(parents=True)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(
        ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    )
    sheet.append(["00001.jpg", 75, 60, 50, 40, 30, 20])
    sheet.append(["00002.jpg", 0, 1, 2, 3, 4, 5])
    book.save(root / "Annotations" / "MOS and Image attribute scores.xlsx")
    _img(root / "TestImage" / "00001.jpg")
    ds = _by_id(load_dataset(f"spaq:{root}"))
    assert ds["00001.jpg"].mos == pytest.approx(4.0) and ds["00001.jpg"].mos_raw == 75
    assert ds["00002.jpg"].mos == 1.0
    assert ds["00001.jpg"].meta["sharpness"] == 20
    assert ds["00001.jpg"].image_path == str(root / "TestImage" / "00001.jpg")
    assert {s.split for s in ds.values()} <= {"train", "val", "test"}


# --------------------------------------------------------------------------- KADID-10k


def _kadid(root, n_refs=10):
    lines = ["dist_img,ref_img,dmos,var"]
    for r in range(1, n_refs + 1):
        for d in range(1, 4):
            lines.append(f"I{r:02d}_{d:02d}_0{d}.png,I{r:02d}.png,{1 + d:.2f},0.25")
    root.mkdir(parents=True, exist_ok=True)
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")


def test_kadid_maps_its_1_to_5_scale_and_keeps_references_together(tmp_path):
    root = tmp_path / "kadid10k"
    _kadid(root)
    ds = load_dataset(f"kadid:{root}")
    s = _by_id(ds)["I03_02_02.png"]
    assert s.mos == pytest.approx(3.0) and s.std == pytest.approx(0.5)
    assert s.meta == {"ref_image": "I03.png", "distortion_type": 2, "level": 2}
    assert s.image_path == str(root / "images" / "I03_02_02.png")
    sides = {}
    for x in ds:
        sides.setdefault(x.meta["ref_image"], set()).add(x.split)
    assert all(len(v) == 1 for v in sides.values())
    assert set(ds.split_counts()) == {"train", "val", "test"}


# --------------------------------------------------------------------------- PIPAL


def test_pipal_reads_label_txt_files_and_finds_images_across_distortion_folders(tmp_path):
    root = tmp_path / "PIPAL"
    (root / "Train_Label").mkdir(parents=True)
    (root / "Train_Label" / "A0001.txt").write_text(
        "A0001_00_00.bmp,1400.0\nA0001_01_00.bmp,1900.0\n"
    )
    (root / "Train_Label" / "A0002.txt").write_text("A0002_00_00.bmp,1950.5\n")
    _img(root / "Distortion_1" / "A0001_00_00.bmp")
    _img(root / "Distortion_2" / "A0001_01_00.bmp")
    ds = _by_id(load_dataset(f"pipal:{root}"))
    assert ds["A0001_00_00.bmp"].mos == pytest.approx(3.0)
    assert ds["A0001_01_00.bmp"].image_path == str(root / "Distortion_2" / "A0001_01_00.bmp")
    assert ds["A0002_00_00.bmp"].mos == 5.0 and ds["A0002_00_00.bmp"].meta["clipped"]
    assert ds["A0002_00_00.bmp"].mos_raw == 1950.5
    assert ds["A0001_00_00.bmp"].split == ds["A0001_01_00.bmp"].split


# --------------------------------------------------------------------------- LIVE Challenge


def test_live_challenge_reads_the_mat_files_and_drops_the_training_images(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "ChallengeDB_release"
    (root / "Data").mkdir(parents=True)
    names = ["t1.bmp", "t2.bmp", "100.bmp", "101.bmp", "102.bmp"]
    cells = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        cells[i, 0] = np.array([n])
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
    savemat(
        root / "Data" / "AllMOS_release.mat",
        {"AllMOS_release": np.array([[50.0, 60.0, 75.0, 25.0, 0.0]])},
    )
    savemat(
        root / "Data" / "AllStdDev_release.mat",
        {"AllStdDev_release": np.array([[10.0, 10.0, 20.0, 5.0, 1.0]])},
    )
    _img(root / "Images" / "100.bmp")
    ds = load_dataset(f"clive:{root}")
    assert [s.id for s in ds] == ["100.bmp", "101.bmp", "102.bmp"]
    s = ds.samples[0]
    assert s.dataset == "livec" and s.mos == pytest.approx(4.0) and s.std == pytest.approx(0.8)
    assert s.image_path == str(root / "Images" / "100.bmp")


def test_live_challenge_reports_mismatched_files(tmp_path):
    from scipy.io import savemat

    data = tmp_path / "Data"
    data.mkdir()
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = np.array(["1.bmp"]), np.array(["2.bmp"])
    savemat(data / "AllImages_release.mat", {"AllImages_release": cells})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0]])})
    with pytest.raises(DatasetError, match="1 scores for 2 names"):
        load_dataset(f"livec:{tmp_path}")


# --------------------------------------------------------------------------- AGIQA-3K


def test_agiqa3k_uses_mos_quality_and_groups_by_prompt(tmp_path):
    rows = ["name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align"]
    for p in range(6):
        for g in ("AttnGAN", "midjourney"):
            rows.append(f"{g}_normal_{p:03d}.jpg,prompt {p},,,,{p * 0.8:.1f},0.5,3.0,0.4")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"agiqa3k:{tmp_path}")
    s = _by_id(ds)["midjourney_normal_005.jpg"]
    assert s.mos == pytest.approx(1 + 4 * 4.0 / 5) and s.std == pytest.approx(0.4)
    assert s.meta["prompt"] == "prompt 5" and s.meta["generator"] == "midjourney"
    assert s.meta["mos_align"] == 3.0
    for p in range(6):
        assert len({x.split for x in ds if x.meta["prompt"] == f"prompt {p}"}) == 1


# --------------------------------------------------------------------------- CSIQ


def test_csiq_reads_the_dmos_workbook_and_flips_dmos(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "all_by_image"
    sheet.append(["CSIQ DMOS"])
    sheet.append([])
    sheet.append([])
    sheet.append([None, None, None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
    sheet.append([None, None, None, 1600, 1, "noise", 1, 0.05, 0.25])
    sheet.append([None, None, None, "boston", 6, "jpeg 2000", 3, 0.1, 0.75])
    book.save(tmp_path / "csiq.DMOS.xlsx")
    _img(tmp_path / "dst_imgs" / "AWGN" / "1600.AWGN.1.png")  # folder case differs
    ds = _by_id(load_dataset(f"csiq:{tmp_path}"))
    s = ds["1600.AWGN.1.png"]
    assert s.mos == pytest.approx(4.0) and s.mos_raw == 0.25 and s.std == pytest.approx(0.2)
    assert s.image_path == str(tmp_path / "dst_imgs" / "AWGN" / "1600.AWGN.1.png")
    assert s.meta["ref_image"] == "1600.png"
    b = ds["boston.jpeg2000.3.png"]
    assert b.mos == pytest.approx(2.0) and b.meta["distortion"] == "jpeg 2000"
    assert b.image_path == str(tmp_path / "dst_imgs" / "jpeg2000" / "boston.jpeg2000.3.png")


def test_csiq_label_txt_variant(tmp_path):
    (tmp_path / "csiq_label.txt").write_text("1600.AWGN.1.png 0.061989\n1600.BLUR.2 0.5\n")
    _img(tmp_path / "dst_imgs_all" / "1600.AWGN.1.png")
    ds = _by_id(load_dataset(f"csiq:{tmp_path}"))
    assert ds["1600.AWGN.1.png"].mos == pytest.approx(5 - 4 * 0.061989)
    assert ds["1600.AWGN.1.png"].image_path == str(tmp_path / "dst_imgs_all" / "1600.AWGN.1.png")
    assert ds["1600.BLUR.2.png"].mos == pytest.approx(3.0)


# --------------------------------------------------------------------------- TID2013


def test_tid2013_reads_mos_with_names_and_mos_std(tmp_path):
    lines = [
        f"{m:.5f} i{r:02d}_{d:02d}_{lv}.bmp"
        for r in (1, 2, 3, 4)
        for d, lv, m in ((1, 1, 4.5), (8, 3, 2.25))
    ]
    (tmp_path / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "mos_std.txt").write_text("\n".join("0.9" for _ in lines) + "\n")
    _img(tmp_path / "distorted_images" / "i01_08_3.bmp")
    ds = load_dataset(f"tid:{tmp_path}")
    s = _by_id(ds)["i01_08_3.bmp"]
    assert s.dataset == "tid2013" and s.mos == pytest.approx(2.0) and s.std == pytest.approx(0.4)
    assert s.meta == {"ref_image": "I01.BMP", "distortion_type": 8, "level": 3}
    assert s.image_path == str(tmp_path / "distorted_images" / "i01_08_3.bmp")
    for r in (1, 2, 3, 4):
        assert len({x.split for x in ds if x.meta["ref_image"] == f"I{r:02d}.BMP"}) == 1


# --------------------------------------------------------------------------- BIQ2021


def _biq(root, n_train=20, n_test=5):
    (root / "Images").mkdir(parents=True)
    train = "Image Name,MOS,,\n" + "".join(
        f"ss01 ({i}).jpg,{i / n_train:.4f},,\n" for i in range(n_train)
    )
    test = "Image Name,MOS,,\n" + "".join(f"ss03 ({i}).jpg,0.5,,\n" for i in range(n_test))
    (root / "Train (Images and MOS).csv").write_text(train)
    (root / "Test (Images and MOS).csv").write_text(test)
    _img(root / "Images" / "ss01 (1).jpg")


def test_biq2021_uses_the_official_train_test_split_and_carves_val_from_train(tmp_path):
    root = tmp_path / "BIQ2021"
    _biq(root)
    ds = load_dataset(f"biq2021:{root}")
    assert ds.split_counts() == {"train": 18, "val": 2, "test": 5}
    s = _by_id(ds)["ss01 (10).jpg"]
    assert s.mos == pytest.approx(3.0) and s.mos_raw == 0.5
    assert _by_id(ds)["ss01 (1).jpg"].image_path == str(root / "Images" / "ss01 (1).jpg")
    only_test = load_dataset(f"biq2021:{root / 'Test (Images and MOS).csv'}")
    assert only_test.split_counts() == {"test": 5}


# --------------------------------------------------------------------------- DeQA-Score


def test_deqa_meta_json_uses_gt_score_norm_and_finds_the_image_root(tmp_path):
    root = tmp_path / "Data-DeQA-Score"
    metas = root / "KONIQ" / "metas"
    metas.mkdir(parents=True)
    _img(root / "KONIQ" / "images" / "a.jpg")
    records = [
        {
            "id": "a.jpg->3.5",
            "image": "KONIQ/images/a.jpg",
            "gt_score": 3.5,
            "gt_score_norm": 3.9,
            "std": 0.6,
            "std_norm": 0.7,
        },
        {
            "id": "b.jpg->1.2",
            "image": "KONIQ/images/b.jpg",
            "gt_score": 1.2,
            "gt_score_norm": 1.0,
            "std": 0.3,
            "std_norm": 0.35,
        },
    ]
    (metas / "test_koniq_2k.json").write_text(json.dumps(records, indent=4))
    ds = load_dataset(f"deqa:{metas / 'test_koniq_2k.json'}")
    s = _by_id(ds)["a.jpg->3.5"]
    assert s.mos == 3.9 and s.mos_raw == 3.5 and s.std == 0.7 and s.split == "test"
    assert s.image_path == str(root / "KONIQ" / "images" / "a.jpg")
    with pytest.raises(DatasetError, match="no samples in split 'train'"):
        load_dataset(f"deqa:{metas / 'test_koniq_2k.json'}", "train")


# --------------------------------------------------------------------------- icbcbicc


def test_icbcbicc_picks_the_range_from_the_file_name(tmp_path):
    (tmp_path / "CSIQ.txt").write_text(
        "dis_img_path,dis_type,ref_img_path,score\n"
        "CSIQ/dst_imgs/AWGN/1600.AWGN.1.png,AWGN,CSIQ/src_imgs/1600.png,0.25\n"
    )
    (tmp_path / "LIVE.csv").write_text(
        "dis_img_path,dis_type,ref_img_path,score\n"
        "LIVE/jp2k/img2.bmp,jp2k,LIVE/refimgs/a.bmp,111.77\n"
        "LIVE/jp2k/img3.bmp,jp2k,LIVE/refimgs/a.bmp,25\n"
    )
    (tmp_path / "KonIQ-10k.csv").write_text(
        "dis_img_path,dis_type,score\nKonIQ-10k/1024x768/1.jpg,Authentic,3.5\n"
    )
    images = tmp_path / "collection"
    _img(images / "KonIQ-10k" / "1024x768" / "1.jpg")
    csiq = load_dataset(f"icbcbicc:{tmp_path / 'CSIQ.txt'}").samples[0]
    assert csiq.mos == pytest.approx(4.0) and csiq.meta["ref_image"] == "CSIQ/src_imgs/1600.png"
    live = _by_id(load_dataset(f"icbcbicc:{tmp_path / 'LIVE.csv'}"))
    assert live["LIVE/jp2k/img2.bmp"].mos == 1.0 and live["LIVE/jp2k/img2.bmp"].meta["clipped"]
    assert live["LIVE/jp2k/img3.bmp"].mos == pytest.approx(4.0)
    kq = load_dataset(f"icbcbicc:{tmp_path / 'KonIQ-10k.csv'}", images=str(images)).samples[0]
    assert kq.mos == 3.5 and kq.image_path == str(images / "KonIQ-10k" / "1024x768" / "1.jpg")


def test_icbcbicc_unknown_file_name_is_refused(tmp_path):
    (tmp_path / "MyData.csv").write_text("dis_img_path,dis_type,score\na.jpg,x,3\n")
    with pytest.raises(DatasetError, match="no range known for 'MyData'"):
        load_dataset(f"icbcbicc:{tmp_path / 'MyData.csv'}")


# --------------------------------------------------------------------------- generic


def test_generic_csv_default_scale_relative_paths_and_extra_columns(tmp_path):
    _img(tmp_path / "img" / "a.jpg")
    (tmp_path / "labels.csv").write_text(
        "image,mos,std,split,camera\nimg/a.jpg,4.5,0.3,test,phone\nimg/b.jpg,2,,train,\n"
    )
    ds = _by_id(load_dataset(f"generic:{tmp_path / 'labels.csv'}"))
    a = ds["img/a.jpg"]
    assert a.mos == 4.5 and a.std == pytest.approx(0.3) and a.split == "test"
    assert a.image_path == str(tmp_path / "img" / "a.jpg") and a.meta == {"camera": "phone"}


def test_generic_csv_declared_range_and_direction(tmp_path):
    (tmp_path / "l.csv").write_text(
        "# mos_range: 0, 100\n# lower_better: true\nimage,mos\na.jpg,25\n"
    )
    s = load_dataset(f"generic:{tmp_path / 'l.csv'}").samples[0]
    assert s.mos == pytest.approx(4.0) and s.mos_raw == 25


def test_generic_jsonl_declaration_and_ref_groups(tmp_path):
    lines = [json.dumps({"mos_range": [0, 10]})]
    lines += [
        json.dumps({"image": f"{r}_{k}.png", "mos": 5, "ref": f"r{r}"})
        for r in range(8)
        for k in range(3)
    ]
    (tmp_path / "l.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_dataset(f"generic:{tmp_path / 'l.jsonl'}")
    assert len(ds) == 24 and all(s.mos == 3.0 for s in ds)
    for r in range(8):
        assert len({s.split for s in ds if s.meta["ref"] == f"r{r}"}) == 1


# --------------------------------------------------------------------------- label errors


@pytest.mark.parametrize(
    "body,message",
    [
        ("picture,score\na.jpg,3\n", r"labels.csv:1: missing column\(s\) 'image', 'mos'"),
        ("image,mos\na.jpg,3\nb.jpg,nan\n", r"labels.csv:3: MOS is nan"),
        ("image,mos\na.jpg,3\nb.jpg,\n", r"labels.csv:3: missing MOS"),
        ("image,mos\na.jpg,7.5\n", r"labels.csv:2: MOS 7.5 is outside the nominal range \[1, 5\]"),
        (
            "image,mos\na.jpg,3\nb.jpg,4\na.jpg,2\n",
            r"labels.csv:4: duplicate id 'a.jpg' \(first at .*labels.csv:2\)",
        ),
        ("image,mos,split\na.jpg,3,holdout\n", r"labels.csv:2: unknown split 'holdout'"),
    ],
)
def test_label_errors_name_the_file_and_line(tmp_path, body, message):
    (tmp_path / "labels.csv").write_text(body)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"generic:{tmp_path / 'labels.csv'}")


def test_kadid_row_errors_name_the_line(tmp_path):
    (tmp_path / "dmos.csv").write_text(
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.5,0.1\nI01_01_02.png,I01.png,NaN,0.1\n"
    )
    with pytest.raises(DatasetError, match=r"dmos.csv:3: MOS is nan"):
        load_dataset(f"kadid:{tmp_path}")


def test_wrong_header_of_an_original_file_is_reported(tmp_path):
    (tmp_path / "dmos.csv").write_text("image,score\na.png,3\n")
    with pytest.raises(DatasetError, match=r"dmos.csv:1: missing column\(s\) 'dist_img'"):
        load_dataset(f"kadid:{tmp_path}")


def test_on_error_skip_keeps_good_rows_and_lists_bad_ones(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "image,mos\na.jpg,3\nb.jpg,nan\nc.jpg,9\na.jpg,4\nd.jpg,2\n"
    )
    ds = load_dataset(f"generic:{tmp_path / 'labels.csv'}", on_error="skip")
    assert [s.id for s in ds] == ["a.jpg", "d.jpg"]
    assert [r["line"] for r in ds.skipped] == [3, 4, 5]
    assert "duplicate" in ds.skipped[2]["reason"]


# --------------------------------------------------------------------------- splits


def test_seeded_split_is_written_and_reused(tmp_path):
    root = tmp_path / "kadid"
    _kadid(root, n_refs=20)
    first = load_dataset(f"kadid:{root}", split_seed=3)
    assert first.split_file is not None and first.split_file.exists()
    assert first.split_file.parent == tmp_path / "cache" / "qponder" / "splits"
    stored = json.loads(first.split_file.read_text())
    assert stored["seed"] == 3 and sum(stored["counts"].values()) == 60
    # A hand-edited split file wins: the file, not the algorithm, is the split.
    moved = stored["splits"]["train"][0]
    stored["splits"]["train"].remove(moved)
    stored["splits"]["test"].append(moved)
    first.split_file.write_text(json.dumps(stored))
    again = _by_id(load_dataset(f"kadid:{root}", split_seed=3))
    assert again[moved].split == "test"
    other = load_dataset(f"kadid:{root}", split_seed=4)
    assert other.split_file != first.split_file


def test_split_is_deterministic_and_covers_every_sample(tmp_path):
    root = tmp_path / "kadid"
    _kadid(root, n_refs=30)
    a = load_dataset(f"kadid:{root}", split_file=str(tmp_path / "a.json"))
    b = load_dataset(f"kadid:{root}", split_file=str(tmp_path / "b.json"))
    assert [s.split for s in a] == [s.split for s in b]
    counts = a.split_counts()
    assert counts == {"train": 63, "val": 9, "test": 18}
    parts = [
        load_dataset(f"kadid:{root}", s, split_file=str(tmp_path / "a.json"))
        for s in ("train", "val", "test")
    ]
    assert sorted(x.id for p in parts for x in p) == sorted(x.id for x in a)


def test_split_file_that_does_not_cover_the_dataset_is_an_error(tmp_path):
    root = tmp_path / "kadid"
    _kadid(root, n_refs=5)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"splits": {"train": ["I01_01_01.png"]}}))
    with pytest.raises(DatasetError, match="does not cover"):
        load_dataset(f"kadid:{root}", split_file=str(split_file))


def test_unknown_split_name_is_refused(tmp_path):
    _kadid(tmp_path)
    with pytest.raises(
        DatasetError, match="unknown split 'validation': expected train, val, test, all"
    ):
        load_dataset(f"kadid:{tmp_path}", "validation")


def test_split_all_is_every_sample(tmp_path):
    _kadid(tmp_path, n_refs=5)
    every = load_dataset(f"kadid:{tmp_path}", "all")
    assert [s.id for s in every] == [s.id for s in load_dataset(f"kadid:{tmp_path}")]
    assert len(every) == 15 and every.split is None
    assert every.describe_selection() == "every sample, no split selected: 15 of 15 samples"


def test_each_load_says_how_its_split_was_chosen(tmp_path):
    # issue 25: a generic CSV without a split column was evaluated on a seeded 20 % silently
    rows = "".join(f"{i}.png,{1 + i % 4}\n" for i in range(20))
    (tmp_path / "drawn.csv").write_text("image,mos\n" + rows)
    drawn = load_dataset(f"generic:{tmp_path / 'drawn.csv'}", "test", split_seed=2)
    assert (len(drawn), drawn.total, drawn.drawn) == (4, 20, 4)
    assert drawn.describe_selection() == (
        f"split test drawn with seed 2 (kept in {drawn.split_file}): 4 of 20 samples"
    )
    given = "".join(f"{i}.png,3,{'test' if i < 5 else 'train'}\n" for i in range(20))
    (tmp_path / "given.csv").write_text("image,mos,split\n" + given)
    official = load_dataset(f"generic:{tmp_path / 'given.csv'}", "test")
    assert official.describe_selection() == "split test as the labels give it: 5 of 20 samples"
    half = "".join(f"{i}.png,3,{'test' if i < 5 else ''}\n" for i in range(20))
    (tmp_path / "half.csv").write_text("image,mos,split\n" + half)
    mixed = load_dataset(f"generic:{tmp_path / 'half.csv'}", "test")
    assert mixed.describe_selection() == (
        f"split test, 5 as the labels give it and {mixed.drawn} drawn with seed 0 "
        f"(kept in {mixed.split_file}): {5 + mixed.drawn} of 20 samples"
    )
    assert mixed.drawn == 3  # 20 % of the 15 open rows
    _biq(tmp_path / "BIQ2021")  # val is carved from the official train split with the seed
    val = load_dataset(f"biq2021:{tmp_path / 'BIQ2021'}", "val")
    assert val.describe_selection().startswith("split val drawn with seed 0 (kept in ")
    test = load_dataset(f"biq2021:{tmp_path / 'BIQ2021'}", "test")
    assert test.describe_selection() == "split test as the labels give it: 5 of 25 samples"


# --------------------------------------------------------------------------- specs, images


def test_spec_aliases_and_data_root(tmp_path, monkeypatch):
    from qponder.data import parse_spec

    assert parse_spec("koniq10k:/data/x") == ("koniq", tmp_path.__class__("/data/x"))
    _kadid(tmp_path / "kadid10k")
    monkeypatch.setenv("QPONDER_DATA_ROOT", str(tmp_path))
    assert parse_spec("kadid") == ("kadid", tmp_path / "kadid10k")
    assert parse_spec("kadid:kadid10k") == ("kadid", tmp_path / "kadid10k")
    assert len(load_dataset("kadid")) == 30
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        parse_spec("imagenet:/x")


def test_missing_label_file_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"kadid: no label file \(dmos.csv\) under"):
        load_dataset(f"kadid:{tmp_path}")


def test_label_only_folders_load_and_require_images_counts_missing(tmp_path):
    (tmp_path / "labels.csv").write_text("image,mos\na.jpg,3\nb.jpg,4\nc.jpg,5\n")
    _img(tmp_path / "a.jpg")
    assert len(load_dataset(f"generic:{tmp_path / 'labels.csv'}")) == 3
    with pytest.raises(DatasetError, match="2 of 3 images are missing"):
        load_dataset(f"generic:{tmp_path / 'labels.csv'}", require_images=True)
    ds = load_dataset(f"generic:{tmp_path / 'labels.csv'}", require_images=True, on_error="skip")
    assert [s.id for s in ds] == ["a.jpg"] and len(ds.skipped) == 2


def test_scores_are_always_on_1_to_5(tmp_path):
    (tmp_path / "l.csv").write_text(
        "# mos_range: -1, 1\nimage,mos\n"
        + "".join(f"{i}.jpg,{x}\n" for i, x in enumerate(np.linspace(-1, 1, 9)))
    )
    mos = [s.mos for s in load_dataset(f"generic:{tmp_path / 'l.csv'}")]
    assert min(mos) == 1.0 and max(mos) == 5.0 and all(math.isfinite(m) for m in mos)
    assert mos == sorted(mos)
