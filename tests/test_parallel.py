"""The one data-parallel path of `qponder score` and `qponder eval`
(qponder.inference.parallel): part files named and merged in process order, one key per run,
and, under a real `accelerate launch` with two CPU processes, an error that only the main
process meets ends every process with that error instead of leaving them waiting."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from qponder.evaluation.runner import EVAL_KEY
from qponder.inference.files import CSV_COLUMNS, PATH_KEY
from qponder.inference.parallel import merge_parts, part_files, part_path, select_rows
from qponder.runfiles import CsvJournal, Journal, read_jsonl

PARTS = 11  # one output and ten part files: part10 is where name order and number order part


def _write(journal, rows) -> None:
    with journal:
        journal.open()
        journal.append(rows)


def test_part_files_are_ordered_by_number_and_look_alikes_are_not_parts(tmp_path):
    out = tmp_path / "scores.jsonl"
    for k in (10, 2, 1, 11, 3):
        part_path(out, k).write_text("")
    (tmp_path / "scores.partial.jsonl").write_text("mine\n")  # a user's file, not a part
    (tmp_path / "scores.part4.csv").write_text("")  # another output's part
    assert [p.name for p in part_files(out)] == [f"scores.part{k}.jsonl" for k in (1, 2, 3, 10, 11)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_score_merge_of_eleven_processes_keeps_process_order(tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"

    def journal(path):
        return Journal(path) if suffix == ".jsonl" else CsvJournal(path, CSV_COLUMNS)

    def row(k: int) -> dict:
        return {"path": str(tmp_path / f"img{k:02d}.png"), "score": k, "error": None}

    _write(journal(out), [row(0), row(1)])  # process 0 writes the output itself
    for k in range(1, PARTS):
        # each part holds its own image; part 3 also one already in the output, written by
        # another path spelling (a resumed run's duplicate: the output's row stays)
        rows = [row(k + 1)]
        if k == 3:
            rows.append({**row(0), "path": str(tmp_path / "." / "img00.png"), "score": 99})
        _write(journal(part_path(out, k)), rows)
    with journal(out) as target:
        target.open()
        merge_parts(target, out, journal, PATH_KEY)
    if suffix == ".jsonl":
        rows = read_jsonl(out)
    else:
        with open(out, newline="") as fh:
            rows = list(csv.DictReader(fh))
    assert [os.path.basename(r["path"]) for r in rows] == [f"img{k:02d}.png" for k in range(12)]
    assert str(rows[0]["score"]) == "0"
    assert not part_files(out)


def test_an_eval_merge_of_eleven_processes_keeps_process_order(tmp_path):
    out = tmp_path / "predictions.jsonl"

    def row(dataset: str, i: int) -> dict:
        return {"id": str(i), "dataset": dataset, "score": None}

    _write(Journal(out), [row("a", 0)])
    for k in range(1, PARTS):
        # the same id in another dataset is another image; the same (dataset, id) is not
        _write(Journal(part_path(out, k)), [row("a", k), row("b", k), row("a", 0)])
    with Journal(out) as target:
        target.open()
        merge_parts(target, out, Journal, EVAL_KEY)
    rows = read_jsonl(out)
    expected = [("a", "0")] + [(d, str(k)) for k in range(1, PARTS) for d in ("a", "b")]
    assert [(r["dataset"], r["id"]) for r in rows] == expected
    assert not part_files(out)


def test_select_rows_keeps_the_first_row_of_each_wanted_item_in_file_order():
    rows = [{"path": p, "n": n} for n, p in enumerate(["/b", "/a", "/z", "/b", "/a"])]
    picked = select_rows(rows, ["/a", "/b"], PATH_KEY)
    assert [(r["path"], r["n"]) for r in picked] == [("/b", 0), ("/a", 1)]


# --------------------------------------------------------------------------- real processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, *args: str, timeout: float = 300) -> tuple[int, str]:
    """``accelerate launch`` of ``qponder`` on ``processes`` CPU processes; returns the exit
    status and stderr. A launch still running after ``timeout`` is killed with
    its workers, and the test fails (a hang must not outlive the test)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "qponder.cli", *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the launch did not end within {timeout} s: {' '.join(args)}")
    return proc.returncode, err


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """12 small images named in their expected output order."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(
            root / f"{k:02d}.png"
        )
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from qponder.data.synthetic import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(out, n=20, seed=0, size=32)
    return out


FAST = ["--set", "eval.max_new_tokens=2", "--set", "eval.bootstrap=10"]


def _assert_every_process_reported(code: int, err: str, line: str) -> None:
    assert code != 0, err[-3000:]
    # each of the two processes stops with the main process's error, as one line, rather
    # than the other one dying of a lost connection at the next barrier (or hanging there)
    assert err.count(line) == 2, err[-3000:]
    assert "Connection closed by peer" not in err and "[rank1]: Traceback" not in err, err[-3000:]


@pytest.mark.slow
def test_score_with_an_existing_output_stops_every_process(tiny_model, images, tmp_path):
    out = tmp_path / "scores.jsonl"
    out.write_text('{"path": "earlier.png", "score": 3.0}\n')
    code, err = launch(
        2, "score", str(images), "--model", str(tiny_model), "--out", str(out), *FAST
    )
    _assert_every_process_reported(
        code, err, f"qponder score: error: {out} already holds results; pass --resume"
    )
    assert out.read_text() == '{"path": "earlier.png", "score": 3.0}\n'  # untouched
    assert not part_files(out)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["existing", "locked", "bad_dataset"])
def test_eval_with_an_error_only_the_main_process_meets_stops_every_process(
    tiny_model, synth, tmp_path, problem
):
    from qponder.runfiles import lock_run_dir

    out = tmp_path / "run"
    dataset = f"synthetic:{synth}"
    held = None
    if problem == "existing":
        out.mkdir()
        (out / "predictions.jsonl").write_text('{"id": "x", "dataset": "synthetic"}\n')
        line = f"qponder eval: error: {out} already holds results; pass --resume"
    elif problem == "locked":
        held = lock_run_dir(out)  # another eval on the same --out
        line = f"qponder eval: error: {out}: another run is using this directory"
    else:
        dataset = f"synthetic:{tmp_path / 'no-such-folder'}"
        line = f"qponder eval: error: synthetic: {tmp_path / 'no-such-folder'} does not exist"
    try:
        code, err = launch(
            2, "eval", "--model", str(tiny_model), "--dataset", dataset, "--out", str(out), *FAST
        )
    finally:
        if held is not None:
            held.close()
    _assert_every_process_reported(code, err, line)
    assert not list(out.glob("predictions.part*"))


@pytest.mark.slow
def test_score_on_eleven_processes_writes_the_files_in_order(tiny_model, images, tmp_path):
    out = tmp_path / "scores.jsonl"
    code, err = launch(
        PARTS, "score", str(images), "--model", str(tiny_model), "--out", str(out), *FAST
    )
    assert code == 0, err[-3000:]
    # 12 files on 11 processes: process 0 has two, the others one each; part10 is merged
    # after part9 (a name order would put it after part1)
    assert [os.path.basename(r["path"]) for r in read_jsonl(out)] == [
        f"{k:02d}.png" for k in range(12)
    ]
    assert not part_files(out)
