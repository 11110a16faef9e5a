"""A distillation can be killed at any moment and resumed: nothing lost, nothing twice, no
torn line; and it refuses to mix settings or to share its files with another run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distill_fakes import MODEL, FakeTeacherServer, make_samples, write_labels

from qponder.config import DistillConfig, Recipe
from qponder.distill import run_distillation
from qponder.errors import QponderError

REPO = Path(__file__).resolve().parents[1]


def recipe(base_url: str, **kw) -> Recipe:
    settings = {
        "teacher": "openai",
        "base_url": base_url,
        "model": MODEL,
        "concurrency": 4,
        "timeout": 5.0,
        "max_retries": 2,
        "retry_backoff": 0.01,
        "max_side": 32,
        "api_key_env": "QPONDER_TEST_KEY",
    }
    settings.update(kw)
    return Recipe(distill=DistillConfig(**settings))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


def count_lines(*paths: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in paths if p.exists())


def kill_when(
    proc: subprocess.Popen, paths: tuple[Path, Path], at_least: int, limit_s: float = 20
) -> None:
    """SIGKILL ``proc`` as soon as the files hold ``at_least`` lines."""
    deadline = time.monotonic() + limit_s
    while count_lines(*paths) < at_least:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the distillation made no progress"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    n = 120
    mos = [1.5 + (i % 7) * 0.5 for i in range(n)]
    samples = make_samples(tmp_path / "img", mos)
    labels = write_labels(samples, tmp_path / "img" / "labels.csv")
    out = tmp_path / "cold.jsonl"
    rejected = tmp_path / "cold.rejected.jsonl"
    plan = {i: ["far"] for i in range(0, n, 5)}  # some rejects too, so both files grow
    with FakeTeacherServer(mos, plan, delay_s=0.03) as srv:
        cmd = [
            sys.executable,
            "-m",
            "qponder.cli",
            "distill",
            "--dataset",
            f"generic:{labels}",
            "--teacher",
            "openai",
            "--base-url",
            srv.base_url,
            "--model",
            MODEL,
            "--out",
            str(out),
            "--concurrency",
            "4",
            "--no-progress",
            "--set",
            "distill.max_side=32",
            "--set",
            "distill.api_key_env=QPONDER_TEST_KEY",
        ]
        snapshots = []
        for at_least in (15, 50):  # kill twice: during the first run and during a resume
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            kill_when(proc, (out, rejected), at_least)
            snapshots.append((lines(out), lines(rejected)))
        done_before_last = count_lines(out, rejected)
        assert done_before_last < n  # it really was cut short
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    kept_lines, rejected_lines = lines(out), lines(rejected)
    for kept_before, rejected_before in snapshots:  # what was written stays, byte for byte
        assert kept_lines[: len(kept_before)] == kept_before
        assert rejected_lines[: len(rejected_before)] == rejected_before
    records = [json.loads(line) for line in kept_lines + rejected_lines]  # no torn line
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == n  # every image exactly once
    assert {r["reason"] for r in map(json.loads, rejected_lines)} == {"score_mismatch"}
    report = json.loads(result.stdout)
    assert report["status"] == "complete"
    assert report["kept"] + report["rejected"] == n
    assert report["already_done"] == done_before_last
    # a finished run has nothing left to do
    again = json.loads(subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60).stdout)
    assert again["this_run"]["processed"] == 0 and again["kept"] == report["kept"]


def test_a_torn_last_line_is_dropped_and_its_image_redone(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0] * 5)
    out = tmp_path / "cold.jsonl"
    with FakeTeacherServer([3.0] * 5) as srv:
        run_distillation(recipe(srv.base_url), samples[:3], out=out, progress=False)
        whole = out.read_bytes()
        last = whole.splitlines(keepends=True)[-1]
        torn_id = json.loads(last)["id"]
        out.write_bytes(whole[: -len(last)] + last[: len(last) // 2])  # cut mid-line
        report = run_distillation(recipe(srv.base_url), samples, out=out, progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [s.id for s in samples]
    assert report["this_run"]["processed"] == 3  # the torn image and the two new ones
    assert len(srv.requests[int(torn_id[3:])]) == 2


def test_resuming_with_other_settings_is_refused(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0] * 3)
    out = tmp_path / "cold.jsonl"
    with FakeTeacherServer([3.0] * 3) as srv:
        run_distillation(recipe(srv.base_url), samples[:1], out=out, progress=False)
        with pytest.raises(QponderError, match="tolerance: 0.5 -> 0.3"):
            run_distillation(recipe(srv.base_url, tolerance=0.3), samples, out=out, progress=False)
        # the refused run left the recorded settings alone: the original ones still resume
        report = run_distillation(recipe(srv.base_url), samples, out=out, progress=False)
    assert report["kept"] == 3
