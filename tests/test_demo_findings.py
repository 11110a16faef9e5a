"""qponder.demo.findings and the report built on it: every statement follows from the figures
and CIs the report prints, nothing reads as a pass or a failure, and the report and the
command's output end with the trained model and a warning about what it has seen."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
from safetensors import safe_open

from qponder.data.synthetic import available_photos, make_synthetic_dataset
from qponder.demo.findings import ablation, ci_relation, closing_lines, compare_stages
from qponder.demo.paths import STAGE_TITLES, DemoPaths
from qponder.demo.pipeline import parameter_count, training_data
from qponder.demo.report import format_console, format_report


def _stage(srcc, ci, failures=0, consistency=None, f1=None, n=500):
    return {"srcc": srcc, "srcc_ci95": ci, "plcc": srcc, "parse_failures": failures, "n": n,
            "consistency": consistency, "srcc_expected": None, "description_f1": f1}  # fmt: skip


def _summary(nocot, ci, q, photos=0) -> dict:
    """A full run's summary; ``nocot``, ``ci``, ``q``: (SRCC, its 95 % CI) of each stage."""
    stages = {
        "base": _stage(None, None, failures=500, f1=0.0),
        "sft_nocot": _stage(*nocot, f1=0.0),
        "qponder_ci": _stage(*ci, consistency=0.546, f1=0.851),
        "qponder": _stage(*q, consistency=0.345, f1=0.847),
    }
    return {
        "stages": stages,
        "ablation": ablation(stages),
        "models": {"qponder_ci": "runs/demo/sft/final", "qponder": "runs/demo/grpo/final"},
        "training_data": {"images": 3500, "photos": photos, "parameters": 1_995_136},
        "distillation": {"kept": 3165},
        "wall_s": 559.0,
        "peak_rss_gib": 2.28,
        "stage_seconds": {"GRPO": 107.0},
        "quick": False,
    }


# two stages' SRCCs and CIs as the shipped recipe gave them on two machines (docs/demo.md)
MACHINE_1 = ((0.754, [0.713, 0.793]), (0.807, [0.769, 0.831]), (0.811, [0.778, 0.839]))
MACHINE_2 = ((0.766, [0.730, 0.799]), (0.767, [0.729, 0.800]), (0.799, [0.760, 0.831]))


def test_how_two_estimates_relate_is_read_off_their_cis():
    assert ci_relation(0.80, [0.76, 0.83], 0.81, [0.77, 0.84]) == "within"
    assert ci_relation(0.81, [0.77, 0.84], 0.75, [0.71, 0.79]) == "overlap"
    assert ci_relation(0.85, [0.82, 0.88], 0.70, [0.65, 0.75]) == "apart"
    assert ci_relation(0.70, [0.65, 0.75], 0.85, [0.82, 0.88]) == "apart"  # either order
    assert ci_relation(0.80, [0.76, 0.83], None, None) is None
    assert ci_relation(0.80, None, 0.81, [0.77, 0.84]) is None


def test_a_drop_within_the_cis_is_named_as_such_not_as_a_failure():
    # Q-Ponder 0.011 below Q-Ponder-CI, each inside the other's CI
    stages = _summary(MACHINE_1[0], MACHINE_1[1], (0.796, [0.758, 0.829]))["stages"]
    c = compare_stages(stages, "qponder", "qponder_ci")
    assert c["relation"] == "within"
    assert c["verdict"] == (
        "Q-Ponder 0.796 vs Q-Ponder-CI 0.807: within each other's 95% CIs "
        "([0.758, 0.829] and [0.769, 0.831]), which do not separate them"
    )


def test_the_verdict_follows_the_cis_in_each_case():
    overlap = compare_stages(_summary(*MACHINE_1)["stages"], "qponder_ci", "sft_nocot")
    assert overlap["relation"] == "overlap"
    assert "the 95% CIs overlap ([0.769, 0.831] and [0.713, 0.793])" in overlap["verdict"]
    apart = _summary((0.70, [0.65, 0.75]), (0.85, [0.82, 0.88]), (0.86, [0.83, 0.89]))
    c = compare_stages(apart["stages"], "qponder_ci", "sft_nocot")
    assert c["verdict"] == (
        "Q-Ponder-CI 0.850 vs answer-only SFT 0.700: Q-Ponder-CI is higher, and the 95% CIs "
        "do not overlap ([0.820, 0.880] and [0.650, 0.750])"
    )
    missing = compare_stages(_summary((None, None), *MACHINE_1[1:])["stages"], "qponder_ci",
                             "sft_nocot")  # fmt: skip
    assert missing["relation"] is None and "not compared" in missing["verdict"]


@pytest.mark.parametrize("run", [MACHINE_1, MACHINE_2])
def test_the_report_states_what_ran_and_its_comparisons_and_nothing_it_did_not_measure(run):
    summary = _summary(*run)
    report = format_report(summary, STAGE_TITLES, ["qponder sft ..."])
    assert "not met" not in report and "Targets" not in report
    assert "Every stage of the Q-Ponder pipeline ran to completion" in report
    assert "SFT taught the answer format: parse failures 500/500" in report
    for c in summary["ablation"]:
        assert f"- {c['verdict']}." in report
    assert "from 0.546 (Q-Ponder-CI) to 0.345 (Q-Ponder), lower" in report
    assert "2.0 M parameters" in report and "3,500 synthetic images" in report
    # each SRCC and CI a verdict names is one the table prints
    table = report[report.index("## Held-out test split") : report.index("## Figures")]
    for c in summary["ablation"]:
        for value in re.findall(r"\d\.\d{3}", c["verdict"]):
            assert value in table, value
    # the report ends with the trained model and the warning
    assert report.rstrip().splitlines()[-3:] == [closing_lines(summary)[0], "",
                                                 closing_lines(summary)[1]]  # fmt: skip


def test_the_last_lines_name_the_model_and_warn_that_it_never_saw_a_photograph():
    summary = _summary(*MACHINE_2)
    model_line, warning = closing_lines(summary)
    assert model_line.startswith("Trained model (Q-Ponder): runs/demo/grpo/final")
    assert "qponder score --model runs/demo/grpo/final" in model_line
    assert warning.startswith("Warning: this model has never seen a photograph")
    assert "\n" not in warning
    # with photograph crops in the data it says so instead
    assert "1,200 crops" in closing_lines(_summary(*MACHINE_2, photos=1200))[1]
    out = format_console(summary, "runs/demo/report.md")
    assert out.splitlines()[-2:] == [model_line, warning]
    assert "not met" not in out
    assert "Q-Ponder             0.799 [0.760, 0.831]  (0/500 parse failures)" in out


def test_the_parameter_count_is_read_from_the_checkpoint_header(tiny_model):
    with safe_open(tiny_model / "model.safetensors", framework="pt") as f:
        expected = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)
    assert parameter_count(tiny_model) == expected > 0


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_training_data_counts_the_training_split_and_its_photographs(tmp_path, tiny_model, share):
    paths = DemoPaths(tmp_path)
    make_synthetic_dataset(paths.data, n=40, seed=0, photo_share=share)
    paths.tiny.symlink_to(tiny_model)
    data = training_data(paths)
    with open(paths.data / "labels.csv", newline="") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert data["images"] == splits.count("train") > 0
    if share == 0.0 or not available_photos():
        assert data["photos"] == 0
    else:
        assert data["photos"] == data["images"]
    assert data["parameters"] == parameter_count(tiny_model)
    json.dumps(data)  # it goes into summary.json
