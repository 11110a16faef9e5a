"""`qponder eval compare` reports B - A per dataset with a bootstrap CI, paired on image ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qponder.cli import main
from qponder.errors import QponderError
from qponder.evaluation.compare import compare_runs, format_comparison
from qponder.evaluation.metrics import plcc, srcc


def write_run(run_dir, rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "predictions.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return run_dir


def rows_for(mos, noise, seed, dataset="koniq", fail=(), ids=None):
    rng = np.random.default_rng(seed)
    rows = []
    for i, m in enumerate(mos):
        score = None if i in fail else float(np.clip(m + rng.normal(0, noise), 1, 5))
        rows.append(
            {
                "id": str(ids[i] if ids else i),
                "dataset": dataset,
                "image": f"{i}.png",
                "mos": float(m),
                "score": score,
                "error": "no_answer" if score is None else None,
            }
        )
    return rows


MOS = np.random.default_rng(0).uniform(1, 5, 120)


def test_paired_difference_uses_images_scored_by_both_runs(tmp_path):
    a = write_run(tmp_path / "a", rows_for(MOS, 1.0, 1, fail={0, 1, 2}))
    b = write_run(tmp_path / "b", rows_for(MOS, 0.3, 2, fail={2, 3}))
    result = compare_runs(a, b, n_resamples=200)
    d = result["datasets"]["koniq"]
    assert d["paired"] and d["n_pairs"] == 116 and (d["only_a"], d["only_b"]) == (1, 2)
    assert (d["a"]["parse_failures"], d["b"]["parse_failures"]) == (3, 2)
    # the compared values are computed on exactly the common images
    ra = {r["id"]: r for r in rows_for(MOS, 1.0, 1, fail={0, 1, 2})}
    rb = {r["id"]: r for r in rows_for(MOS, 0.3, 2, fail={2, 3})}
    common = [str(i) for i in range(4, 120)]
    pa, pb = [ra[i]["score"] for i in common], [rb[i]["score"] for i in common]
    mos = [ra[i]["mos"] for i in common]
    assert d["srcc"]["a"] == pytest.approx(srcc(pa, mos), abs=1e-12)
    assert d["plcc"]["b"] == pytest.approx(plcc(pb, mos), abs=1e-9)
    assert d["srcc"]["diff"] == pytest.approx(srcc(pb, mos) - srcc(pa, mos), abs=1e-12)
    lo, hi = d["srcc"]["ci95"]
    assert 0 < lo < d["srcc"]["diff"] < hi  # B is clearly better
    text = format_comparison(result)
    assert "koniq" in text and "116 paired" in text and "*" in text


def test_identical_runs_differ_by_zero(tmp_path):
    rows = rows_for(MOS, 0.5, 3)
    result = compare_runs(
        write_run(tmp_path / "a", rows), write_run(tmp_path / "b", rows), n_resamples=50
    )
    d = result["datasets"]["koniq"]
    assert d["srcc"]["diff"] == 0.0 and d["srcc"]["ci95"] == [0.0, 0.0]


def test_runs_on_different_images_are_compared_unpaired(tmp_path):
    a = write_run(tmp_path / "a", rows_for(MOS[:60], 0.5, 4, ids=list(range(60))))
    b = write_run(tmp_path / "b", rows_for(MOS[60:], 0.5, 5, ids=list(range(60, 120))))
    d = compare_runs(a, b, n_resamples=100)["datasets"]["koniq"]
    assert d["paired"] is False and d["n_pairs"] == 0
    assert d["srcc"]["ci95"][0] < 0 < d["srcc"]["ci95"][1]


def test_datasets_of_one_run_only_are_listed(tmp_path):
    a = write_run(
        tmp_path / "a", rows_for(MOS, 0.5, 6) + rows_for(MOS[:10], 0.5, 7, dataset="spaq")
    )
    b = write_run(tmp_path / "b", rows_for(MOS, 0.5, 8))
    result = compare_runs(a, b, n_resamples=20)
    assert list(result["datasets"]) == ["koniq"] and result["only_in_a"] == ["spaq"]
    assert "only in A: spaq" in format_comparison(result)


def test_runs_that_disagree_on_the_mos_are_refused(tmp_path):
    a = write_run(tmp_path / "a", rows_for(MOS, 0.5, 9))
    b = write_run(tmp_path / "b", rows_for(MOS + 0.5, 0.5, 9))
    with pytest.raises(QponderError, match="disagree on the MOS of 120"):
        compare_runs(a, b)


def test_a_mos_mismatch_is_shown_rounded_to_the_digits_that_differ(tmp_path):
    # issue 25: the message printed 2.6875999999999998
    rows = rows_for([2.6875999999999998, 3.0, 4.0], 0.1, 1)
    for mos, shown in ((3.1876, "2.69 vs 3.19"), (2.687602, "2.687600 vs 2.687602")):
        other = [{**r, "mos": mos if r["id"] == "0" else r["mos"]} for r in rows]
        a, b = write_run(tmp_path / "a", rows), write_run(tmp_path / "b", other)
        with pytest.raises(QponderError) as info:
            compare_runs(a, b)
        assert f"e.g. id '0': {shown};" in str(info.value)


def test_runs_without_a_dataset_in_common_are_one_error_naming_each_runs(tmp_path, capsys):
    a = write_run(tmp_path / "a", rows_for(MOS, 0.5, 1) + rows_for(MOS, 0.5, 2, dataset="spaq"))
    b = write_run(tmp_path / "b", rows_for(MOS, 0.5, 3, dataset="kadid"))
    with pytest.raises(QponderError, match="share no dataset"):
        compare_runs(a, b)
    assert main(["eval", "compare", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"qponder eval compare: error: the runs share no dataset: A ({a}) has koniq, spaq; "
        f"B ({b}) has kadid\n"
    )


def test_the_table_lines_up_whatever_the_names_and_counts(tmp_path):
    # issue 25: a long dataset name or an unpaired count pushed rows out of line
    name = "generic:a-rather-long-name"
    ids_a, ids_b = list(range(60)), list(range(60, 120))
    a = write_run(tmp_path / "a", rows_for(MOS[:60], 0.5, 4, dataset=name, ids=ids_a))
    b = write_run(tmp_path / "b", rows_for(MOS[60:], 0.5, 5, dataset=name, ids=ids_b))
    result = compare_runs(a, b, n_resamples=50)
    lines = format_comparison(result).splitlines()
    header, rule, srcc, plcc = lines[3:7]
    d = result["datasets"][name]
    assert set(rule) == {"-"} and len(rule) == max(len(header), len(srcc), len(plcc))
    for row, metric in ((srcc, "srcc"), (plcc, "plcc")):
        a_text, b_text = f"{d[metric]['a']:.3f}", f"{d[metric]['b']:.3f}"
        assert row.index(metric.upper()) == header.index("metric")  # left-aligned columns
        assert row.index(f"{d[metric]['diff']:+.3f}") == header.index("B-A [95% CI]")
        a_end = row.index(a_text) + len(a_text)  # right-aligned columns end together
        assert a_end == header.index(" A ") + 2
        assert row.index(b_text, a_end) + len(b_text) == header.index(" B ") + 2
    assert srcc.index("60/60 unpaired") + 14 == header.index("images") + 6
    assert lines[7].index("parse failures") == srcc.index("60/60 unpaired")  # under images


def test_cli_prints_a_table_or_json_and_reports_a_missing_run(tmp_path, capsys):
    a = write_run(tmp_path / "a", rows_for(MOS, 1.0, 10))
    b = write_run(tmp_path / "b", rows_for(MOS, 0.3, 11))
    assert main(["eval", "compare", str(a), str(b), "--bootstrap", "100"]) == 0
    assert "B-A [95% CI]" in capsys.readouterr().out
    assert main(["eval", "compare", str(a), str(b), "--json", "--bootstrap", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"]["koniq"]["paired"] is True
    assert main(["eval", "compare", str(a), str(tmp_path / "nope")]) == 2
    assert "no predictions.jsonl" in capsys.readouterr().err
