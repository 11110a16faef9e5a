"""`qponder score`: one row per image file, bad images reported and skipped over, resumable
after a kill, JSONL or CSV."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from answer_tags import tagged
from damaged_jpegs import damaged_jpeg, seeded_jpeg
from PIL import Image

from qponder.cli import main
from qponder.config import EvalConfig
from qponder.errors import QponderError
from qponder.inference import Generation, Scorer, expand_image_paths, score_paths
from qponder.runfiles import read_jsonl

FAST = ["--set", "eval.max_new_tokens=4"]


@pytest.fixture
def folder(tmp_path):
    """5 good images (2 in a sub-folder), a broken JPEG, and a non-image file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        img = Image.fromarray(rng.integers(0, 255, (32 + 4 * i, 40, 3), dtype=np.uint8))
        img.save(root / ("sub" if i % 2 else ".") / f"img{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF truncated")
    (root / "notes.txt").write_text("not an image")
    return root


class Backend:
    """Scores from image height; raises after ``die_after`` calls (a killed run)."""

    def __init__(self, die_after: int | None = None):
        self.calls = 0
        self.die_after = die_after
        self.images = 0

    def generate(self, images, n=1, temperature=1.0):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.images += len(images)
        return [
            [Generation(tagged(f"<think>h</think><answer>{1 + im.height / 20:.2f}</answer>"), 2.0)]
            for im in images
        ]


def scorer(backend, batch_size=2):
    return Scorer("unused", backend_impl=backend, batch_size=batch_size)


def test_folders_are_expanded_recursively_to_images_only(folder):
    files = expand_image_paths([str(folder)])
    names = [f.replace(str(folder) + "/", "") for f in files]
    assert names == [
        "broken.jpg",
        "img0.png",
        "img2.png",
        "img4.png",
        "sub/img1.png",
        "sub/img3.png",
    ]
    # globs, explicit files, and duplicates
    again = expand_image_paths(
        [str(folder / "*.png"), str(folder / "img0.png"), str(folder / "**" / "img3.png")]
    )
    assert [f.rsplit("/", 1)[1] for f in again] == ["img0.png", "img2.png", "img4.png", "img3.png"]
    with pytest.raises(QponderError, match="no such file"):
        expand_image_paths([str(folder / "missing.png")])
    with pytest.raises(QponderError, match="matches no file"):
        expand_image_paths([str(folder / "*.webp")])


def test_cli_scores_a_folder_with_a_broken_image_into_jsonl(tiny_model, folder, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    code = main(
        [
            "score",
            str(folder),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--batch-size",
            "4",
            *FAST,
        ]
    )
    assert code == 0
    rows = read_jsonl(out)
    assert len(rows) == 6 and len({r["path"] for r in rows}) == 6
    broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert broken["score"] is None and broken["error"].startswith("bad_image:")
    others = [r for r in rows if r is not broken]
    # the random model never answers: every row is a reported parse failure, none is scored
    assert all(r["score"] is None and r["error"] == "no_answer" for r in others)
    assert {"path", "score", "expected_score", "reasoning", "error"} <= set(rows[0])
    stats = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (stats["images"], stats["bad_images"], stats["parse_failures"]) == (6, 1, 5)


def test_a_panorama_gets_an_error_row_and_the_rest_of_the_folder_is_scored(tiny_model, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(np.full((10, 4000, 3), 90, dtype=np.uint8)).save(root / "banner.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / f"{i}.png")
    out = tmp_path / "scores.jsonl"
    code = main(["score", str(root), "--model", str(tiny_model), "--out", str(out), *FAST])
    assert code == 0
    rows = {Path(r["path"]).name: r for r in read_jsonl(out)}
    assert sorted(rows) == ["0.png", "1.png", "2.png", "banner.png"]
    assert rows["banner.png"]["error"] == "bad_image:aspect_ratio"
    assert all(rows[f"{i}.png"]["text"] for i in range(3))  # generated, not failed


def test_csv_output_has_one_row_per_file(folder, tmp_path):
    out = tmp_path / "scores.csv"
    stats = score_paths([str(folder / "*.png")], "unused", out, scorer=scorer(Backend()))
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["img0.png", "img2.png", "img4.png"]
    assert float(rows[0]["score"]) == pytest.approx(2.6)
    assert rows[0]["error"] == "" and stats["scored"] == 3


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_killed_run_resumes_without_losing_or_repeating_rows(folder, tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"
    with pytest.raises(KeyboardInterrupt):
        score_paths([str(folder)], "unused", out, scorer=scorer(Backend(die_after=2)))
    # two batches of two were flushed before the kill; the process also died mid-write
    with open(out, "a") as fh:
        fh.write('{"path": "half a ro' if suffix == ".jsonl" else "/half/a,ro")
    with pytest.raises(QponderError, match="--resume"):
        score_paths([str(folder)], "unused", out, scorer=scorer(Backend()))
    backend = Backend()
    stats = score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(backend))
    assert stats["skipped"] == 4 and backend.images == 2
    if suffix == ".jsonl":
        paths = [r["path"] for r in read_jsonl(out)]
    else:
        with open(out, newline="") as fh:
            paths = [r["path"] for r in csv.DictReader(fh)]
    assert sorted(paths) == sorted(expand_image_paths([str(folder)]))
    # a finished run resumed again does nothing
    backend = Backend()
    assert (
        score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(backend))["skipped"]
        == 6
    )
    assert backend.calls == 0


def test_cli_resume_flag_skips_rows_already_written(tiny_model, folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    first = sorted(expand_image_paths([str(folder)]))[:2]
    assert main(["score", *first, "--model", str(tiny_model), "--out", str(out), *FAST]) == 0
    assert main(["score", str(folder), "--model", str(tiny_model), "--out", str(out), *FAST]) == 2
    assert (
        main(
            ["score", str(folder), "--model", str(tiny_model), "--out", str(out), "--resume", *FAST]
        )
        == 0
    )
    rows = read_jsonl(out)
    assert len(rows) == 6 and len({r["path"] for r in rows}) == 6


def test_sampled_scoring_writes_mean_and_std(folder, tmp_path):
    class Sampler(Backend):
        def generate(self, images, n=1, temperature=1.0):
            return [
                [Generation(tagged(f"<answer>{2 + k}</answer>")) for k in range(n)] for _ in images
            ]

    out = tmp_path / "s.jsonl"
    cfg = EvalConfig(samples=3)
    sc = Scorer("unused", backend_impl=Sampler(), samples=3, temperature=1.0)
    score_paths([str(folder / "img0.png")], "unused", out, cfg, scorer=sc)
    (row,) = read_jsonl(out)
    assert row["score"] == row["score_mean"] == 3.0 and row["score_std"] == pytest.approx(
        np.std([2, 3, 4])
    )
    assert len(row["samples"]) == 3


def test_unknown_output_type_is_refused(folder, tmp_path):
    with pytest.raises(QponderError, match=r"\.jsonl or \.csv"):
        score_paths([str(folder)], "unused", tmp_path / "out.txt", scorer=scorer(Backend()))


def test_resume_matches_files_by_resolved_path(folder, tmp_path, monkeypatch):
    out = tmp_path / "scores.jsonl"
    score_paths([str(folder)], "unused", out, scorer=scorer(Backend()))
    monkeypatch.chdir(folder)  # the same folder, now named by a relative path
    backend = Backend()
    stats = score_paths(["."], "unused", out, resume=True, scorer=scorer(backend))
    assert stats["skipped"] == 6 and backend.calls == 0
    assert len(read_jsonl(out)) == 6


def test_a_csv_row_torn_inside_a_quoted_reasoning_is_redone_on_resume(folder, tmp_path):
    class Multiline(Backend):
        def generate(self, images, n=1, temperature=1.0):
            gens = super().generate(images, n, temperature)
            why = tagged('<think>line one\nline, "two"</think>')
            return [[Generation(g[0].text.replace(tagged("<think>h</think>"), why))] for g in gens]

    out = tmp_path / "scores.csv"
    score_paths([str(folder)], "unused", out, scorer=scorer(Multiline()))
    whole = out.read_bytes()
    cut = whole.rindex(b"line one\n") + len(b"line one\n")  # inside the last row's quotes
    out.write_bytes(whole[:cut])
    backend = Multiline()
    stats = score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(backend))
    assert stats["skipped"] == 5 and backend.images == 1  # the torn row is scored again
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["path"] for r in rows) == sorted(expand_image_paths([str(folder)]))
    assert all(r["reasoning"] == 'line one\nline, "two"' for r in rows if not r["error"])


def test_two_runs_on_one_output_cannot_run_at_once(folder, tmp_path):
    from qponder.runfiles import Journal, LockedError

    out = tmp_path / "scores.jsonl"
    holder = Journal(out)
    holder.open(lock=True)  # another `qponder score` writing the same file
    try:
        backend = Backend()
        with pytest.raises(LockedError, match="another run is writing"):
            score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(backend))
        assert backend.calls == 0 and out.stat().st_size == 0
    finally:
        holder.close()


@pytest.mark.parametrize("kind", ["dir", "readonly"])
def test_an_unwritable_output_fails_before_the_model_loads(folder, tmp_path, capsys, kind):
    import os

    if kind == "dir":
        out = tmp_path / "scores.jsonl"
        out.mkdir()
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "scores.jsonl"
        if os.access(ro, os.W_OK):  # root ignores the mode bits
            ro.chmod(0o700)
            (ro / "scores.jsonl").mkdir()
    code = main(["score", str(folder), "--model", str(tmp_path / "no-model"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "scores.jsonl" in err and "no-model" not in err  # the output, checked first


def test_undecodable_bytes_in_an_output_being_resumed_name_the_line(folder, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    out.write_bytes(b'{"path": "a.png", "score": 3.0}\n{"path": "\xff.png"}\n')
    backend = Backend()
    code = main(["score", str(folder), "--model", "unused", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}:2: not UTF-8 text" in err and "Traceback" not in err
    assert backend.calls == 0 and out.read_bytes().endswith(b'"\xff.png"}\n')  # untouched


def test_a_folder_that_is_not_a_checkpoint_is_one_error(folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "s.jsonl"
    assert main(["score", str(folder), "--model", str(tmp_path / "empty"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "empty: not a model checkpoint (no config.json)" in err and "Traceback" not in err


def test_a_mistyped_model_folder_is_one_error_at_once(folder, tmp_path, monkeypatch, capsys):
    # issue 25: runs/nope (runs/ exists) was tried on the hub: 25 s of retries, then
    # "cannot load a model (We couldn't connect to 'https://huggingface.co' ...)"
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    out = tmp_path / "s.jsonl"
    assert main(["score", str(folder), "--model", "runs/nope", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("qponder score: error: runs/nope: no such model folder (runs/ is")
    assert "org/name needs the network" in line


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_data_parallel_score_under_accelerate_launch_splits_the_files(
    tiny_model, folder, tmp_path, suffix
):
    import subprocess
    import sys

    out = tmp_path / f"scores{suffix}"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "qponder.cli", "score", str(folder),
           "--model", str(tiny_model), "--out", str(out), "--batch-size", "2", *FAST]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert len(stats) == 1  # printed once, by the main process
    assert stats[0]["processes"] == 2 and stats[0]["shard_sizes"] == [3, 3]
    if suffix == ".jsonl":
        paths = [r["path"] for r in read_jsonl(out)]
    else:
        with open(out, newline="") as fh:
            paths = [r["path"] for r in csv.DictReader(fh)]
    assert sorted(paths) == sorted(expand_image_paths([str(folder)]))  # each file once
    assert not list(tmp_path.glob("scores.part*"))


def test_a_resume_merges_what_an_interrupted_run_of_eleven_processes_left_in_order(tmp_path):
    from qponder.inference.parallel import part_path
    from qponder.runfiles import Journal

    root = tmp_path / "many"
    root.mkdir()
    rng = np.random.default_rng(1)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / f"{k:02d}.png"
        )
    out = tmp_path / "scores.jsonl"
    score_paths([str(root)], "unused", out, scorer=scorer(Backend()))
    rows = read_jsonl(out)
    # what 11 processes leave when killed before the merge: process 0's shard in the
    # output, one file per part (12 files over 11 processes: process 0 had two)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    for k in range(1, 11):
        with Journal(part_path(out, k)) as part:
            part.open()
            part.append(rows[k + 1])
    backend = Backend()
    stats = score_paths([str(root)], "unused", out, resume=True, scorer=scorer(backend))
    assert stats["skipped"] == 12 and backend.calls == 0
    assert read_jsonl(out) == rows  # part10 merged after part9, not after part1
    assert not list(tmp_path.glob("scores.part*"))


# --------------------------------------------------------------------------- in a batch job

PROGRESS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d scoring: (\d+)/(\d+) img \(")


def _score_command(tiny_model, folder, out):
    return [sys.executable, "-m", "qponder.cli", "score", str(folder), "--model",
            str(tiny_model), "--out", str(out), "--batch-size", "2", *FAST]  # fmt: skip


def test_score_in_a_batch_job_writes_progress_lines_to_its_log(tiny_model, folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    proc = subprocess.run(_score_command(tiny_model, folder, out), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = [m.groups() for m in map(PROGRESS_LINE.match, proc.stderr.splitlines()) if m]
    # a line once the first batch is written (the job moves), and the last one at the end
    assert counts[0] == ("2", "6") and counts[-1] == ("6", "6"), proc.stderr
    assert "finished in" in proc.stderr and "\r" not in proc.stderr.split("scoring:", 1)[1]
    assert json.loads(proc.stderr.splitlines()[-1])["images"] == 6  # the stats, still whole
    assert proc.stdout == ""


def test_score_on_a_terminal_keeps_the_bar(tiny_model, folder, tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a new terminal is 0 columns wide, where tqdm draws an empty bar: give it a size
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    out = tmp_path / "scores.jsonl"
    proc = subprocess.Popen(_score_command(tiny_model, folder, out), stderr=follower,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: every process that held it has ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=300) == 0, seen[-2000:]
    text = seen.decode(errors="replace")
    assert "scoring: 100%" in text and "6/6" in text  # tqdm's bar
    assert not any(PROGRESS_LINE.match(line) for line in text.splitlines())


def test_the_interval_of_the_progress_lines_is_a_parameter(folder, tmp_path, capsys):
    score_paths([str(folder)], "unused", tmp_path / "s.jsonl", scorer=scorer(Backend()),
                progress_interval=0)  # fmt: skip
    lines = [
        m.groups() for m in map(PROGRESS_LINE.match, capsys.readouterr().err.splitlines()) if m
    ]
    assert lines == [("2", "6"), ("4", "6"), ("6", "6")]  # one per batch of 2


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_score_that_fails_before_its_first_row_leaves_no_output(
    tiny_model, folder, tmp_path, capsys, suffix
):
    out = tmp_path / f"scores{suffix}"
    (tmp_path / "empty").mkdir()
    assert main(["score", str(folder), "--model", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
    assert not out.exists()  # no empty file that looks like a result
    # the same command with a model that loads runs, without --resume
    assert main(["score", str(folder), "--model", str(tiny_model), "--out", str(out), *FAST]) == 0
    # a failed resume keeps what the file holds
    before = out.read_bytes()
    argv = ["score", str(folder), str(tmp_path / "new.png"), "--resume", "--out", str(out)]
    Image.new("RGB", (16, 16)).save(tmp_path / "new.png")
    assert main([*argv, "--model", str(tmp_path / "empty")]) == 2
    assert out.read_bytes() == before


# --------------------------------------------------------------------------- CSV columns


class Sampler(Backend):
    """k answers per image: 2, 3, 4, ... (mean 3 for k = 3); dies like Backend."""

    def generate(self, images, n=1, temperature=1.0):
        super().generate(images, n, temperature)  # counts, and dies after die_after calls
        return [[Generation(tagged(f"<answer>{2 + k}</answer>")) for k in range(n)] for _ in images]


def sampling_scorer(backend, samples=3):
    return Scorer("unused", backend_impl=backend, batch_size=2, samples=samples, temperature=1.0)


def csv_table(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_csv_has_sampling_columns_only_when_sampling(folder, tmp_path):
    greedy, sampled = tmp_path / "greedy.csv", tmp_path / "sampled.csv"
    score_paths([str(folder / "*.png")], "unused", greedy, scorer=scorer(Backend()))
    header, _ = csv_table(greedy)
    assert header == ["path", "score", "expected_score", "reasoning", "error"]
    score_paths([str(folder / "*.png")], "unused", sampled, EvalConfig(samples=3),
                scorer=sampling_scorer(Sampler()))  # fmt: skip
    header, rows = csv_table(sampled)
    assert header == ["path", "score", "expected_score", "score_mean", "score_std", "reasoning",
                      "error"]  # fmt: skip
    assert all(float(r["score_mean"]) == 3.0 and float(r["score_std"]) > 0 for r in rows)


def test_a_sampled_csv_killed_half_way_resumes_with_the_same_settings(folder, tmp_path):
    out = tmp_path / "scores.csv"
    cfg = EvalConfig(samples=3)
    with pytest.raises(KeyboardInterrupt):
        score_paths([str(folder)], "unused", out, cfg, scorer=sampling_scorer(Sampler(2)))
    backend = Sampler()
    stats = score_paths([str(folder)], "unused", out, cfg, resume=True,
                        scorer=sampling_scorer(backend))  # fmt: skip
    assert stats["skipped"] == 4 and backend.images == 2
    header, rows = csv_table(out)
    assert header[3:5] == ["score_mean", "score_std"]
    assert sorted(r["path"] for r in rows) == sorted(expand_image_paths([str(folder)]))
    assert all(r["score_mean"] == "3.0" for r in rows if not r["error"])


def test_a_csv_with_sampling_columns_resumed_greedy_stays_one_table(folder, tmp_path):
    out = tmp_path / "scores.csv"  # as every earlier qponder wrote it: the columns always there
    first = sorted(expand_image_paths([str(folder)]))[0]
    out.write_text(
        "path,score,expected_score,score_mean,score_std,reasoning,error\n"
        f"{first},,,,,,bad_image:truncated\n"
    )
    stats = score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(Backend()))
    assert stats["skipped"] == 1
    header, rows = csv_table(out)
    assert len(header) == 7 and len(rows) == 6
    assert all(None not in r for r in rows)  # no row has more cells than the header
    assert float(rows[1]["score"]) > 1 and rows[1]["score_mean"] == ""


def test_resuming_a_greedy_csv_with_samples_is_refused(folder, tmp_path):
    out = tmp_path / "scores.csv"
    with pytest.raises(KeyboardInterrupt):
        score_paths([str(folder)], "unused", out, scorer=scorer(Backend(die_after=1)))
    before = out.read_bytes()
    backend = Sampler()
    with pytest.raises(QponderError, match="also writes score_mean, score_std"):
        score_paths([str(folder)], "unused", out, EvalConfig(samples=3), resume=True,
                    scorer=sampling_scorer(backend))  # fmt: skip
    assert backend.calls == 0 and out.read_bytes() == before


# --------------------------------------------------------------------------- stopped by a signal

STUCK_MODEL = Path(__file__).with_name("stuck_model.py")


def stop_when(proc, out, rows, sig):
    """Send ``sig`` to ``proc`` once ``out`` holds ``rows`` lines (the first batch)."""
    import os
    import time

    deadline = time.monotonic() + 120
    while not out.exists() or out.read_bytes().count(b"\n") < rows:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run wrote nothing"
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    return proc.communicate(timeout=120)


@pytest.mark.parametrize(("sig", "code", "said"), [("SIGTERM", 143, "terminated (SIGTERM)"),
                                                   ("SIGINT", 130, "interrupted")])  # fmt: skip
def test_a_signal_stops_score_with_its_rows_kept_one_line_and_its_exit_code(
    folder, tmp_path, sig, code, said
):
    import signal

    out = tmp_path / "scores.jsonl"
    cmd = [sys.executable, str(STUCK_MODEL), "score", str(folder), "--model", "unused", "--out",
           str(out), "--batch-size", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = stop_when(proc, out, 2, getattr(signal, sig))
    assert proc.returncode == code, err[-2000:]
    assert err.splitlines()[-1] == (
        f"qponder score: {said}; the rows written so far are kept; run the same command with "
        "--resume to go on"
    )
    assert "Traceback" not in err
    assert len(read_jsonl(out)) == 2 and out.read_bytes().endswith(b"\n")  # whole rows
    backend = Backend()
    stats = score_paths([str(folder)], "unused", out, resume=True, scorer=scorer(backend))
    assert stats["skipped"] == 2 and backend.images == 4
    assert sorted(r["path"] for r in read_jsonl(out)) == sorted(expand_image_paths([str(folder)]))


def test_a_jpeg_with_damaged_data_gets_an_error_row_not_a_score(folder, tmp_path):
    photo = seeded_jpeg(folder / "photo.jpg", size=(256, 40))  # scored 3.0
    damaged_jpeg(photo, folder / "damaged.jpg")
    out = tmp_path / "scores.jsonl"
    stats = score_paths([str(folder)], "unused", out, scorer=scorer(Backend()))
    rows = {Path(r["path"]).name: r for r in read_jsonl(out)}
    assert rows["damaged.jpg"]["score"] is None
    assert rows["damaged.jpg"]["error"] == "bad_image:corrupted"
    assert rows["photo.jpg"]["score"] is not None  # the same photo, whole, is scored
    assert stats["bad_images"] == 2 and stats["scored"] == 6  # broken.jpg and damaged.jpg
