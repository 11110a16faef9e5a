"""`qponder data inspect|convert|synth` as users call them (through cli.main)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from qponder.cli import main
from qponder.data import load_dataset


@pytest.fixture(autouse=True)
def _split_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def synth_dir(tmp_path):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--n", "30", "--seed", "1"]) == 0
    return out


@pytest.fixture
def mixed_dir(tmp_path):
    """A generic dataset with one good, one missing, one empty and one non-image file."""
    d = tmp_path / "mixed"
    d.mkdir()
    Image.new("RGB", (8, 8), "red").save(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    (d / "labels.csv").write_text(
        "image,mos,split\ngood.png,4,train\nempty.png,3,train\ntext.jpg,2,test\nmissing.png,1,val\n"
    )
    return d


def test_synth_writes_the_dataset(synth_dir):
    assert (synth_dir / "labels.csv").is_file()
    assert len(load_dataset(f"synthetic:{synth_dir}")) == 30


def test_synth_size_option(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path), "--n", "2", "--size", "48"]) == 0
    assert Image.open(tmp_path / "images" / "00000.png").size == (48, 48)


def test_synth_kinds_option_and_its_error(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["data", "synth", "--out", str(out), "--n", "12", "--kinds", "jpeg, pixelation"]
    assert main([*argv, "--photo-share", "0"]) == 0
    assert {s.meta["distortion"] for s in load_dataset(f"synthetic:{out}")} <= {
        "none",
        "jpeg",
        "pixelation",
        "jpeg+pixelation",
        "pixelation+jpeg",
    }
    assert main(["data", "synth", "--out", str(out), "--n", "2", "--kinds", "fog"]) == 2
    assert "unknown distortion kind(s) ['fog']" in capsys.readouterr().err


def test_inspect_json_and_plot(synth_dir, tmp_path, capsys):
    plot = tmp_path / "hist.png"
    assert main(["data", "inspect", f"synthetic:{synth_dir}", "--json", "--plot", str(plot)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 30
    assert sum(report["splits"].values()) == 30 and set(report["splits"]) == {
        "train",
        "val",
        "test",
    }
    assert 1.0 <= report["mos_min"] < report["mos_max"] <= 5.0
    assert report["missing_images"] == 0 and report["bad_images"] == []
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_counts_missing_and_lists_bad_images(mixed_dir, capsys):
    assert main(["data", "inspect", f"generic:{mixed_dir / 'labels.csv'}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["missing_images"] == 1
    reasons = {b["path"].rsplit("/", 1)[-1]: b["reason"] for b in report["bad_images"]}
    assert reasons == {"empty.png": "empty", "text.jpg": "not_an_image"}


def test_inspect_split_and_text_report(mixed_dir, capsys):
    assert main(["data", "inspect", f"generic:{mixed_dir}", "--split", "train"]) == 0
    text = capsys.readouterr().out
    assert "samples       2 (train 2)" in text and "empty.png: empty" in text


def test_inspect_without_decoding_only_counts_missing(mixed_dir, capsys):
    assert main(["data", "inspect", f"generic:{mixed_dir}", "--json", "--no-check-images"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing_images"] == 1 and report["bad_images"] == []


def test_label_error_is_one_line_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("image,mos\na.jpg,3\na.jpg,4\n")
    assert main(["data", "inspect", f"generic:{tmp_path / 'labels.csv'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels.csv:3: duplicate id 'a.jpg'" in err[0]


def test_inspect_can_skip_bad_rows(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("image,mos\na.jpg,3\nb.jpg,nan\n")
    spec = f"generic:{tmp_path / 'labels.csv'}"
    assert main(["data", "inspect", spec, "--json", "--on-error", "skip"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 1 and report["skipped_rows"][0]["line"] == 3


def test_convert_round_trips_through_generic(synth_dir, tmp_path):
    out = tmp_path / "conv" / "all.jsonl"
    assert main(["data", "convert", f"synthetic:{synth_dir}", "--out", str(out)]) == 0
    original = load_dataset(f"synthetic:{synth_dir}")
    back = load_dataset(f"generic:{out}")
    assert [(s.id, s.mos, s.split, s.image_path) for s in back] == [
        (s.id, s.mos, s.split, s.image_path) for s in original
    ]
    assert back.samples[0].meta["distortions"] == original.samples[0].meta["distortions"]
    assert back.samples[0].std == original.samples[0].std
    first = json.loads(out.read_text().splitlines()[0])
    assert first["image"].startswith("../synth/images/")


def test_convert_one_split(synth_dir, tmp_path, capsys):
    out = tmp_path / "test.jsonl"
    assert (
        main(["data", "convert", f"synthetic:{synth_dir}", "--out", str(out), "--split", "test"])
        == 0
    )
    assert "wrote 6 samples" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 6


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_plot_name_that_is_not_an_image_is_refused_before_any_work(synth_dir, tmp_path, capsys):
    assert (
        main(["data", "inspect", f"synthetic:{synth_dir}", "--plot", str(tmp_path / "x.txt")]) == 2
    )
    assert "--plot" in _error_line(capsys) and not (tmp_path / "x.txt").exists()


def test_convert_into_a_folder_is_one_error_and_leaves_nothing_behind(synth_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "convert", f"synthetic:{synth_dir}", "--out", str(out)]) == 2
    assert "is a directory" in _error_line(capsys)
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name] and not list(out.iterdir())


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--size", "0"], "--size"),
        (["--n", "-1"], "--n"),
        (["--n", "many"], "--n"),
    ],
)
def test_synth_numbers_are_checked_where_they_enter(tmp_path, capsys, argv, flag):
    assert main(["data", "synth", "--out", str(tmp_path / "s"), *argv]) == 2
    assert f"argument {flag}:" in _error_line(capsys)
    assert not (tmp_path / "s").exists()
