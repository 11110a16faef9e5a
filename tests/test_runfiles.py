"""Run files: atomic writes, crash-safe JSONL/CSV with locks, and the one resume check."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing

import pytest

from qponder.config import load_recipe
from qponder.runfiles import (
    CsvJournal,
    Journal,
    LockedError,
    RunFileError,
    check_fresh_or_resume,
    check_resume,
    config_hash,
    read_csv_rows,
    read_jsonl,
    save_run_files,
    write_json_atomic,
)


def test_run_files_record_config_and_environment(tmp_path):
    recipe = load_recipe(None, ["seed=7"])
    save_run_files(tmp_path, recipe)
    assert "seed: 7" in (tmp_path / "run_config.yaml").read_text()
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.")
    assert "python" in env


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# --------------------------------------------------------------------------- JSONL


def test_journal_appends_batches_and_reads_them_back(tmp_path):
    with Journal(tmp_path / "r.jsonl") as journal:
        journal.open()
        journal.append([{"id": 1}, {"id": 2}])
        journal.append({"id": 3, "text": "é"})
    assert read_jsonl(tmp_path / "r.jsonl") == [{"id": 1}, {"id": 2}, {"id": 3, "text": "é"}]


def test_a_torn_last_line_is_ignored_by_readers_and_cut_by_recover(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"')
    assert read_jsonl(path) == [{"id": "a"}]
    assert path.read_bytes().endswith(b'"b"')  # reading changes nothing
    assert Journal(path).recover() == [{"id": "a"}]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_a_corrupt_line_before_the_end_is_reported_not_dropped(tmp_path):
    path = tmp_path / "cold.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(RunFileError, match=r"cold.jsonl:2"):
        Journal(path).recover()


def test_a_zero_filled_last_line_is_dropped(tmp_path):
    path = tmp_path / "cold.jsonl"
    path.write_bytes(b'{"id": "a"}\n\x00\x00\x00\x00\n')
    assert Journal(path).recover() == [{"id": "a"}]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_undecodable_bytes_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "cold.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n{"id": "c"}\n')
    with pytest.raises(RunFileError, match=r"cold.jsonl:2: not UTF-8"):
        read_jsonl(path)


def test_two_runs_cannot_write_the_same_file(tmp_path):
    first = Journal(tmp_path / "cold.jsonl")
    first.open(lock=True)
    try:
        with pytest.raises(LockedError, match="another run is writing"):
            Journal(tmp_path / "cold.jsonl").open(lock=True)
    finally:
        first.close()
    second = Journal(tmp_path / "cold.jsonl")
    second.open(lock=True)  # free again once the first has closed
    second.close()


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_locked_output_that_got_no_row_is_removed_at_close(tmp_path, kind):
    def journal(name):
        path = tmp_path / f"{name}.{kind}"
        return Journal(path) if kind == "jsonl" else CsvJournal(path, ["path", "score"])

    unused = journal("unused")
    unused.open(lock=True, remove_if_unused=True)
    assert unused.path.exists()  # created and locked at once: a bad path fails early
    unused.close()
    assert not unused.path.exists()  # the run failed before its first row: no empty file
    used = journal("used")
    used.open(lock=True, remove_if_unused=True)
    used.append([{"path": "a.png", "score": 3.0}])
    used.close()
    assert len(used.read()) == 1
    (tmp_path / f"mine.{kind}").touch()  # an empty file this run did not create is not its own
    theirs = journal("mine")
    theirs.open(lock=True, remove_if_unused=True)
    theirs.close()
    assert theirs.path.exists()
    kept = journal("kept")
    kept.open(lock=True)  # without remove_if_unused: as before
    kept.close()
    assert kept.path.exists()


def test_a_run_that_locks_a_file_removed_under_it_writes_to_the_new_one(tmp_path, monkeypatch):
    import fcntl

    path = tmp_path / "scores.jsonl"
    first = Journal(path)
    first.open(lock=True, remove_if_unused=True)
    real_flock = fcntl.flock
    calls = []

    def flock(fd, op):  # the first run ends, unused, between our open and our lock
        if not calls:
            first.close()
        calls.append(fd)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    second = Journal(path)
    second.open(lock=True)
    second.append({"path": "a.png"})
    second.close()
    assert len(calls) == 2  # the removed file's lock did not count; the new file's did
    assert read_jsonl(path) == [{"path": "a.png"}]


def _hold_lock(path, ready, release):  # pragma: no cover - runs in a child process
    journal = Journal(path)
    journal.open(lock=True)
    ready.set()
    release.wait(30)


def test_the_lock_holds_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(tmp_path / "r.jsonl", ready, release))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockedError):
            Journal(tmp_path / "r.jsonl").open(lock=True)
    finally:
        release.set()
        child.join(30)


def test_an_unwritable_folder_is_one_error_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFileError, match=r"file/r.jsonl: cannot write"):
        Journal(tmp_path / "file" / "r.jsonl").open()


# --------------------------------------------------------------------------- CSV


COLUMNS = ["path", "score", "reasoning"]


def _csv_bytes(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def test_csv_rows_with_multiline_reasoning_round_trip(tmp_path):
    rows = [{"path": "a.png", "score": 3.5, "reasoning": 'line one\nline "two"'}]
    with CsvJournal(tmp_path / "s.csv", COLUMNS) as journal:
        journal.open()
        journal.append(rows)
        journal.append([{"path": "b.png", "score": None, "reasoning": ""}])
    assert read_csv_rows(tmp_path / "s.csv") == [
        {"path": "a.png", "score": "3.5", "reasoning": 'line one\nline "two"'},
        {"path": "b.png", "score": "", "reasoning": ""},
    ]


@pytest.mark.parametrize("cut", [1, 5, 12, 20, 30])
def test_a_csv_row_torn_anywhere_is_cut_whole(tmp_path, cut):
    whole = _csv_bytes(
        [
            {"path": "a.png", "score": 3.5, "reasoning": "ok"},
            {"path": "b.png", "score": 2.0, "reasoning": "first line\nsecond, line\nthird"},
        ]
    )
    good = _csv_bytes([{"path": "a.png", "score": 3.5, "reasoning": "ok"}])
    path = tmp_path / "s.csv"
    path.write_bytes(whole[: len(good) + cut])  # torn inside the second row
    journal = CsvJournal(path, COLUMNS)
    assert [r["path"] for r in journal.recover()] == ["a.png"]
    assert path.read_bytes() == good
    journal.open()
    journal.append([{"path": "c.png", "score": 4.0, "reasoning": "x"}])
    journal.close()
    assert [r["path"] for r in read_csv_rows(path)] == ["a.png", "c.png"]


# --------------------------------------------------------------------------- resume


def test_resume_with_the_same_settings_passes():
    check_resume("out", {"a": 1, "b": {"c": 2}}, {"b": {"c": 2}, "a": 1})
    check_resume("out", None, {"a": 1})  # nothing recorded: nothing to compare


def test_resume_with_other_settings_names_what_changed():
    with pytest.raises(RunFileError, match=r"runs/x was made with other settings \(b\.c: 2 -> 3\)"):
        check_resume("runs/x", {"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})


def test_existing_results_need_resume():
    check_fresh_or_resume("out.jsonl", has_output=False, resume=False)
    check_fresh_or_resume("out.jsonl", has_output=True, resume=True)
    with pytest.raises(RunFileError, match="pass --resume"):
        check_fresh_or_resume("out.jsonl", has_output=True, resume=False)


def test_config_hash_is_order_independent_and_sensitive_to_values():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_a_full_disk_is_one_error_and_keeps_what_was_written(tmp_path):
    import os

    if not os.path.exists("/dev/full"):
        pytest.fail("/dev/full is needed to simulate a full disk")
    full = Journal("/dev/full")  # every write to it fails with ENOSPC
    full.open()
    with pytest.raises(RunFileError, match=r"/dev/full: write failed \(No space left on device\)"):
        full.append({"id": 2})
    full.close()


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path):
    from unittest import mock

    target = tmp_path / "summary.json"
    write_json_atomic(target, {"old": True})
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):  # the temporary file lands on a full disk
        if "w" in mode and str(file).endswith(".tmp"):
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    with (
        mock.patch("builtins.open", full_open),
        pytest.raises(RunFileError, match=r"summary.json: cannot write \(No space left"),
    ):
        write_json_atomic(target, {"new": "x" * 100_000})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
