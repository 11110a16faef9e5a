"""Evaluation summaries, report.md and plots are computed from prediction rows alone: failures
are counted by reason and never scored, and a run where nothing parses still reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from answer_tags import tagged

from qponder.evaluation.metrics import compute_metrics
from qponder.evaluation.report import (
    format_report,
    plot_filename,
    summarize,
    summarize_dataset,
    write_report_files,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_rows(dataset: str, n: int, seed: int, noise: float = 0.5, errors: dict | None = None):
    """Rows with MOS in [1, 5] and a noisy score; ``errors`` maps row index -> error."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        mos = float(rng.uniform(1, 5))
        err = (errors or {}).get(i)
        score = None if err else float(np.clip(mos + rng.normal(0, noise), 1, 5))
        rows.append(
            {
                "id": f"{dataset}-{i}",
                "dataset": dataset,
                "image": f"/img/{i}.png",
                "mos": mos,
                "score": score,
                "expected_score": None if score is None else round(score, 1),
                "reasoning": "sharp" if score else "",
                "error": err,
            }
        )
    return rows


def strict_json(text: str):
    def reject(name):
        raise AssertionError(f"summary.json contains {name}")

    return json.loads(text, parse_constant=reject)


def test_summary_counts_failures_by_reason_and_uses_only_scored_rows():
    errors = {0: "no_answer", 1: "no_answer", 2: "out_of_range", 3: "bad_image:truncated"}
    rows = make_rows("koniq", 40, seed=0, errors=errors)
    s = summarize_dataset(rows, n_resamples=200, seed=1)
    assert (s["n"], s["n_scored"], s["parse_failures"]) == (40, 36, 3)
    assert s["parse_failure_reasons"] == {"no_answer": 2, "out_of_range": 1}
    assert s["other_errors"] == {"bad_image:truncated": 1}
    scored = [r for r in rows if r["score"] is not None]
    ref = compute_metrics(
        [r["score"] for r in scored], [r["mos"] for r in scored], n_resamples=200, seed=1
    )
    for key in ("srcc", "plcc", "plcc_raw", "krcc", "rmse", "ci95", "fit"):
        assert s[key] == ref[key], key
    assert s["ci95"]["srcc"][0] < s["srcc"] < s["ci95"]["srcc"][1]
    assert s["fit"]["method"] == "logistic4" and s["fit"]["converged"]
    assert s["expected_score"]["n"] == 36 and s["expected_score"]["srcc"] > 0.5


def test_a_run_where_nothing_parses_reports_null_metrics_and_counts_every_failure(tmp_path):
    rows = make_rows("spaq", 12, seed=1, errors={i: "no_answer" for i in range(12)})
    summary = write_report_files(tmp_path, rows, n_resamples=100)
    s = summary["datasets"]["spaq"]
    assert s["n"] == 12 and s["n_scored"] == 0 and s["parse_failures"] == 12
    assert s["parse_failure_reasons"] == {"no_answer": 12}
    for key in ("srcc", "plcc", "plcc_raw", "krcc", "rmse"):
        assert s[key] is None
    assert s["ci95"] == {"srcc": None, "plcc": None}
    assert s["expected_score"] is None
    assert strict_json((tmp_path / "summary.json").read_text()) == summary
    report = (tmp_path / "report.md").read_text()
    assert "| PLCC | n/a |" in report and "| Parse failures | 12 / 12 |" in report
    assert (tmp_path / plot_filename("spaq")).read_bytes().startswith(PNG_MAGIC)


def test_every_parse_failure_reason_of_the_parser_counts_as_a_parse_failure():
    """Answers such as "4/10" or "3,5" are parse failures in eval and score (DESIGN §2),
    whichever reason the parser gives them."""
    from qponder.parsing import PARSE_FAILURES, parse_completion

    answers = [
        tagged("<answer>4/10</answer>"),
        tagged("<answer>3,5</answer>"),
        tagged('<answer>{"bbox_2d": [1]}</answer>'),
    ]
    reasons = [parse_completion(a).error for a in answers]
    assert reasons == ["other_scale", "ambiguous", "no_score_key"]
    errors = dict(enumerate(reasons))
    s = summarize_dataset(make_rows("koniq", 20, seed=0, errors=errors), n_resamples=0)
    assert s["parse_failures"] == 3 and s["other_errors"] == {}
    assert set(s["parse_failure_reasons"]) <= PARSE_FAILURES


def test_the_reasons_for_missing_expected_scores_are_counted():
    rows = make_rows("koniq", 6, seed=0)
    for i, r in enumerate(rows[:4]):
        r["expected_score"] = None
        r["expected_score_reason"] = "no_logprobs" if i < 3 else "not_a_digit"
    s = summarize_dataset(rows, n_resamples=0)
    assert s["expected_score_missing"] == {"no_logprobs": 3, "not_a_digit": 1}


def test_report_table_has_datasets_as_columns_and_plcc_srcc_failure_rows():
    rows = make_rows("koniq", 30, 2) + make_rows("live-wild", 25, 3, errors={4: "no_number"})
    summary = summarize(rows, n_resamples=0)
    assert list(summary["datasets"]) == ["koniq", "live-wild"]
    text = format_report(summary, meta={"model": "ckpt/final"})
    lines = text.splitlines()
    i = lines.index("| | koniq | live-wild |")
    k, lw = summary["datasets"]["koniq"], summary["datasets"]["live-wild"]
    assert lines[i + 2] == f"| PLCC | {k['plcc']:.3f} | {lw['plcc']:.3f} |"
    assert lines[i + 3] == f"| SRCC | {k['srcc']:.3f} | {lw['srcc']:.3f} |"
    assert lines[i + 4] == "| Parse failures | 0 / 30 | 1 / 25 |"
    assert "- model: ckpt/final" in text
    assert "no_number: 1" in text and "![live-wild](scatter-live-wild.png)" in text


def test_write_report_files_writes_summary_report_and_one_png_per_dataset(tmp_path):
    rows = make_rows("koniq", 30, 4) + make_rows("csiq/test", 20, 5)
    summary = write_report_files(tmp_path, rows, n_resamples=50, meta={"split": "test"})
    assert summary["split"] == "test"
    on_disk = strict_json((tmp_path / "summary.json").read_text())
    assert on_disk["datasets"]["koniq"]["n"] == 30
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "scatter-csiq_test.png",
        "scatter-koniq.png",
    ]
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("*.tmp"))


def test_sampled_answers_failures_are_counted_separately():
    rows = make_rows("koniq", 6, 6)
    for r in rows:
        r["samples"] = [{"score": r["score"], "error": None}, {"score": None, "error": "no_answer"}]
    s = summarize_dataset(rows, n_resamples=0)
    assert s["parse_failures"] == 0 and s["sample_parse_failures"] == 6


@pytest.mark.parametrize("name", ["koniq", "a b/c", ""])
def test_plot_file_names_are_safe(name):
    fname = plot_filename(name)
    assert fname.endswith(".png") and "/" not in fname and " " not in fname
