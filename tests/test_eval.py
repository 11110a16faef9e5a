"""`qponder eval` writes an auditable run directory (predictions, summary, report, plots,
config with hash, environment), counts failures without scoring them, and resumes safely."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from answer_tags import tagged

from qponder.cli import main
from qponder.config import EvalConfig, ModelConfig
from qponder.data import load_image
from qponder.data.synthetic import make_synthetic_dataset
from qponder.errors import QponderError
from qponder.evaluation.runner import run_eval
from qponder.inference import Generation, Scorer
from qponder.runfiles import read_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARTEFACTS = {
    "predictions.jsonl",
    "summary.json",
    "report.md",
    "run_config.json",
    "environment.json",
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A synthetic dataset of 40 images (28 train / 4 val / 8 test)."""
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(out, n=40, seed=0, size=32)
    return out


@pytest.fixture
def generic(tmp_path, synth):
    """A generic CSV dataset whose third image is broken."""
    root = tmp_path / "generic"
    root.mkdir()
    lines = ["image,mos,split"]
    for i, mos in enumerate([4.5, 2.0, 3.0, 1.5, 3.8]):
        shutil.copy(synth / "images" / f"{i:05d}.png", root / f"{i}.png")
        lines.append(f"{i}.png,{mos},test")
    (root / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


class MOSBackend:
    """Answers the image's MOS plus noise (a model that works); counts the images seen."""

    def __init__(
        self, mos_of_image: dict[bytes, float], noise: float = 0.3, die_after: int | None = None
    ):
        self.mos = mos_of_image
        self.rng = np.random.default_rng(0)
        self.noise = noise
        self.die_after = die_after
        self.calls = 0
        self.seen = 0

    def generate(self, images, n=1, temperature=1.0):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.seen += len(images)
        out = []
        for im in images:
            s = float(np.clip(self.mos[im.tobytes()] + self.rng.normal(0, self.noise), 1, 5))
            out.append(
                [Generation(tagged(f"<think>looks {s:.1f}</think><answer>{s:.2f}</answer>"), s)]
            )
        return out


def mos_backend(synth, **kw):
    from qponder.data import load_dataset

    ds = load_dataset(f"synthetic:{synth}")
    return MOSBackend({load_image(s.image_path).tobytes(): s.mos for s in ds.samples}, **kw)


def cfg_for(*datasets, **kw):
    base = {"split": "test", "batch_size": 4, "max_new_tokens": 6, "bootstrap": 50}
    return EvalConfig(datasets=list(datasets), **{**base, **kw})


def test_a_model_that_never_answers_gets_every_artefact_null_metrics_and_counted_failures(
    tiny_model, synth, generic, tmp_path
):
    out = tmp_path / "run"
    summary = run_eval(str(tiny_model), cfg_for(f"synthetic:{synth}", f"generic:{generic}"), out)
    assert {p.name for p in out.iterdir()} >= ARTEFACTS
    for name in ("synthetic", "generic"):
        assert (out / f"scatter-{name}.png").read_bytes().startswith(PNG_MAGIC)
    syn, gen = summary["datasets"]["synthetic"], summary["datasets"]["generic"]
    assert syn["n"] == 8 and syn["n_scored"] == 0 and syn["parse_failures"] == 8
    assert (gen["n"], gen["n_scored"], gen["parse_failures"]) == (5, 0, 4)
    assert gen["other_errors"] == {"bad_image:not_an_image": 1}  # counted apart from parse failures
    for s in (syn, gen):
        assert all(s[k] is None for k in ("srcc", "plcc", "plcc_raw", "krcc", "rmse"))
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 13 and all(r["score"] is None for r in rows)
    assert {
        "id",
        "dataset",
        "image",
        "mos",
        "score",
        "expected_score",
        "reasoning",
        "error",
    } <= set(rows[0])
    assert json.loads((out / "summary.json").read_text())["datasets"]["synthetic"]["srcc"] is None
    assert "| Parse failures | 8 / 8 | 4 / 5 |" in (out / "report.md").read_text()
    run_cfg = json.loads((out / "run_config.json").read_text())
    assert len(run_cfg["config_hash"]) == 16 and run_cfg["eval"]["split"] == "test"
    assert "packages" in json.loads((out / "environment.json").read_text())


def test_a_model_that_works_gets_metrics_plots_and_ci(synth, tmp_path):
    backend = mos_backend(synth, noise=0.2)
    scorer = Scorer("m", backend_impl=backend, batch_size=8)
    summary = run_eval(
        "m",
        cfg_for(f"synthetic:{synth}", split="train", bootstrap=100),
        tmp_path / "run",
        scorer=scorer,
    )
    s = summary["datasets"]["synthetic"]
    assert s["n"] == s["n_scored"] == 28 and s["parse_failures"] == 0
    assert (
        s["srcc"] > 0.8
        and s["plcc"] > 0.8
        and s["ci95"]["srcc"][0] < s["srcc"] < s["ci95"]["srcc"][1]
    )
    assert s["expected_score"]["n"] == 28


def test_an_interrupted_run_resumes_where_it_stopped(synth, tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(f"synthetic:{synth}", split="train", batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        run_eval(
            "m",
            cfg,
            out,
            scorer=Scorer("m", backend_impl=mos_backend(synth, die_after=3), batch_size=4),
        )
    assert len(read_jsonl(out / "predictions.jsonl")) == 12  # three whole batches flushed
    with open(out / "predictions.jsonl", "a") as fh:
        fh.write('{"id": "images/000')  # killed in the middle of a write
    with pytest.raises(QponderError, match="--resume"):
        run_eval("m", cfg, out)
    backend = mos_backend(synth)
    summary = run_eval(
        "m", cfg, out, resume=True, scorer=Scorer("m", backend_impl=backend, batch_size=4)
    )
    assert backend.seen == 16
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 28 and len({r["id"] for r in rows}) == 28
    assert summary["datasets"]["synthetic"]["n_scored"] == 28


def test_resume_with_a_larger_limit_scores_only_the_new_images(synth, tmp_path):
    out = tmp_path / "run"
    run_eval(
        "m",
        cfg_for(f"synthetic:{synth}", split="train", limit=5),
        out,
        scorer=Scorer("m", backend_impl=mos_backend(synth)),
    )
    backend = mos_backend(synth)
    summary = run_eval(
        "m", cfg_for(f"synthetic:{synth}", split="train", limit=9, batch_size=2), out, resume=True,
        scorer=Scorer("m", backend_impl=backend, batch_size=2),
    )  # fmt: skip
    assert backend.seen == 4 and summary["datasets"]["synthetic"]["n"] == 9


def test_two_evals_on_one_directory_cannot_run_at_once(synth, tmp_path):
    from qponder.runfiles import LockedError, lock_run_dir

    out = tmp_path / "run"
    run_eval("m", cfg_for(f"synthetic:{synth}", limit=3), out,
             scorer=Scorer("m", backend_impl=mos_backend(synth)))  # fmt: skip
    before = (out / "predictions.jsonl").read_bytes()
    held = lock_run_dir(out)  # another `qponder eval --resume` on the same --out
    try:
        backend = mos_backend(synth)
        with pytest.raises(LockedError, match="another run is using this directory"):
            run_eval("m", cfg_for(f"synthetic:{synth}", limit=6), out, resume=True,
                     scorer=Scorer("m", backend_impl=backend))  # fmt: skip
        assert backend.seen == 0 and (out / "predictions.jsonl").read_bytes() == before
    finally:
        held.close()
    summary = run_eval("m", cfg_for(f"synthetic:{synth}", limit=6), out, resume=True,
                       scorer=Scorer("m", backend_impl=mos_backend(synth)))  # fmt: skip
    assert summary["datasets"]["synthetic"]["n"] == 6


def test_an_output_that_is_a_file_is_one_error(synth, tmp_path):
    out = tmp_path / "run"
    out.write_text("x")
    with pytest.raises(QponderError, match=r"run: exists and is not a directory"):
        run_eval("m", cfg_for(f"synthetic:{synth}", limit=3), out)


def test_resume_into_a_run_made_with_another_config_is_refused(synth, tmp_path):
    out = tmp_path / "run"
    run_eval(
        "m",
        cfg_for(f"synthetic:{synth}", limit=2),
        out,
        scorer=Scorer("m", backend_impl=mos_backend(synth)),
    )
    with pytest.raises(QponderError, match=r"other settings.*eval\.max_new_tokens: 6 -> 64"):
        run_eval("m", cfg_for(f"synthetic:{synth}", limit=2, max_new_tokens=64), out, resume=True)
    with pytest.raises(QponderError, match=r"model_config\.max_pixels"):
        run_eval(
            "m",
            cfg_for(f"synthetic:{synth}", limit=2),
            out,
            ModelConfig(max_pixels=4096),
            resume=True,
        )


class AnswersTwo:
    """Answers 2 to every image (a model that parses)."""

    def generate(self, images, n=1, temperature=1.0):
        return [[Generation(tagged("<think>Soft.</think><answer>2</answer>"))] for _ in images]


def unsplit_csv(root, synth, n, bad=()):
    """A generic CSV of ``n`` rows without a split column; the rows in ``bad`` (0-based) have
    a MOS that is not a number."""
    root.mkdir()
    lines = ["image,mos"]
    for i in range(n):
        shutil.copy(synth / "images" / f"{i:05d}.png", root / f"{i}.png")
        lines.append(f"{i}.png,{'n/a' if i in bad else 1 + i % 4}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def test_each_dataset_says_which_samples_are_scored_and_how_they_were_chosen(synth, tmp_path):
    # issue 25: a CSV without a split column was evaluated on a seeded 20 %, silently
    from qponder.data import load_dataset

    labels = unsplit_csv(tmp_path / "generic", synth, 10)
    specs = (f"synthetic:{synth}", f"generic:{labels}")
    lines: list[str] = []
    run = lambda out, **kw: run_eval(  # noqa: E731
        "m", cfg_for(*specs, **kw), tmp_path / out, scorer=Scorer("m", backend_impl=AnswersTwo()),
        announce=lines.append,
    )  # fmt: skip
    summary = run("test")
    split_file = load_dataset(f"generic:{labels}").split_file
    assert lines == [
        "synthetic: split test as the labels give it: 8 of 40 samples",
        f"generic: split test drawn with seed 0 (kept in {split_file}): 2 of 10 samples",
    ]
    assert summary["datasets"]["generic"]["n"] == 2
    lines.clear()
    summary = run("all", split="all", limit=10)
    assert lines == [
        "synthetic: every sample, no split selected: 40 of 40 samples; the first 10 scored "
        "(limit 10)",
        "generic: every sample, no split selected: 10 of 10 samples",
    ]
    assert summary["split"] == "all"
    assert [summary["datasets"][d]["n"] for d in ("synthetic", "generic")] == [10, 10]


def test_bad_label_rows_stop_the_run_or_are_skipped_and_counted(synth, tmp_path):
    labels = unsplit_csv(tmp_path / "generic", synth, 8, bad={1, 4})
    lines: list[str] = []
    cfg = cfg_for(f"generic:{labels}", split="all")
    with pytest.raises(QponderError, match=r"labels.csv:3: MOS 'n/a' is not a number"):
        run_eval("m", cfg, tmp_path / "run", scorer=Scorer("m", backend_impl=AnswersTwo()))
    skip = dataclasses.replace(cfg, on_error="skip")
    summary = run_eval("m", skip, tmp_path / "run", scorer=Scorer("m", backend_impl=AnswersTwo()),
                       announce=lines.append)  # fmt: skip
    gen = summary["datasets"]["generic"]
    assert (gen["n"], gen["n_scored"], gen["skipped_rows"]) == (6, 6, 2)
    assert lines == [
        "generic: every sample, no split selected: 6 of 6 samples; 2 bad label rows skipped "
        f"(e.g. {labels}:3: MOS 'n/a' is not a number)"
    ]
    assert (
        "- bad label rows skipped (not scored): 2" in (tmp_path / "run" / "report.md").read_text()
    )
    assert (
        json.loads((tmp_path / "run" / "summary.json").read_text())["datasets"]["generic"][
            "skipped_rows"
        ]
        == 2
    )
    # the policy decides no prediction: a run resumes under the other one
    with pytest.raises(QponderError, match=r"labels.csv:3"):
        run_eval("m", cfg, tmp_path / "run", resume=True,
                 scorer=Scorer("m", backend_impl=AnswersTwo()))  # fmt: skip


def test_cli_eval_on_every_sample_skipping_bad_rows_says_so(tiny_model, synth, tmp_path, capsys):
    labels = unsplit_csv(tmp_path / "generic", synth, 3, bad={2})
    argv = ["eval", "--model", str(tiny_model), "--dataset", f"generic:{labels}",
            "--out", str(tmp_path / "run"), "--split", "all", "--set", "eval.max_new_tokens=4",
            "--set", "eval.bootstrap=20"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"qponder eval: error: {labels}:4: MOS 'n/a' is not a number"
    assert main([*argv, "--on-error", "skip", "--resume"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["datasets"]["generic"]["skipped_rows"] == 1
    assert (
        "qponder eval: generic: every sample, no split selected: 2 of 2 samples; 1 bad label "
        f"row skipped (e.g. {labels}:4: MOS 'n/a' is not a number)"
    ) in err.splitlines()


def test_shards_of_parallel_processes_are_merged_without_duplicates(tmp_path):
    from qponder.evaluation.runner import EVAL_KEY
    from qponder.inference.parallel import merge_parts
    from qponder.runfiles import Journal

    row = lambda i: {"id": str(i), "dataset": "d", "score": None}  # noqa: E731
    for name, rows in [("", [row(0)]), (".part0", [row(0), row(1)]), (".part1", [row(2)])]:
        with Journal(tmp_path / f"predictions{name}.jsonl") as journal:
            journal.open()
            journal.append(rows)
    out = tmp_path / "predictions.jsonl"
    with Journal(out) as journal:
        journal.open()
        merge_parts(journal, out, Journal, EVAL_KEY)
    assert [r["id"] for r in read_jsonl(tmp_path / "predictions.jsonl")] == ["0", "1", "2"]
    assert not list(tmp_path.glob("predictions.part*"))


def test_cli_eval_writes_the_run_and_prints_the_summary(tiny_model, synth, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "eval",
        "--model",
        str(tiny_model),
        "--dataset",
        f"synthetic:{synth}",
        "--out",
        str(out),
    ]
    argv += [
        "--limit",
        "3",
        "--batch-size",
        "3",
        "--set",
        "eval.max_new_tokens=4",
        "--set",
        "eval.bootstrap=20",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["datasets"]["synthetic"]["parse_failures"] == 3
    assert main(argv) == 2  # existing run without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    capsys.readouterr()
    # the recipe's judge (policy: the evaluated model) added on resume; nothing parses here
    assert main([*argv, "--resume", "--consistency"]) == 0
    consistency = json.loads(capsys.readouterr().out)["datasets"]["synthetic"]["consistency"]
    assert consistency == {"n": 0, "mean_abs_gap": None}
    assert all("implied_score" in r for r in read_jsonl(out / "predictions.jsonl"))


# Two CPU processes as users start them: `accelerate launch --cpu` starts only one (accelerate's
# simple launcher), so the data-parallel path is `--multi_gpu` (torchrun), on the CPU too.
ACCELERATE_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "qponder.cli"]  # fmt: skip


@pytest.mark.slow
def test_data_parallel_eval_under_accelerate_launch_splits_the_images(tiny_model, synth, tmp_path):
    out = tmp_path / "run"
    cmd = [*ACCELERATE_2, "eval", "--model", str(tiny_model), "--dataset", f"synthetic:{synth}",
           "--split", "train", "--out", str(out), "--batch-size", "4",
           "--set", "eval.max_new_tokens=4", "--set", "eval.bootstrap=20"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 28 and len({r["id"] for r in rows}) == 28  # each id once
    assert not list(out.glob("predictions.part*"))
    summary = json.loads((out / "summary.json").read_text())
    # each process scored a disjoint part: two shards that add up to the whole
    assert summary["processes"] == 2 and summary["shard_sizes"] == [14, 14]
    assert summary["datasets"]["synthetic"]["n"] == 28
    assert proc.stdout.count('"datasets"') == 1  # the summary is printed once, by the main process


class DescribingBackend:
    """Answers with the synthetic teacher's reasoning for each image: a model whose
    descriptions are right (``wrong=True``: it describes another image's distortions)."""

    def __init__(self, synth, wrong=False):
        import random

        from qponder.data import load_dataset
        from qponder.data.synthetic_reasoning import synthetic_completion

        samples = load_dataset(f"synthetic:{synth}").samples
        texts = [synthetic_completion(s.mos, s.meta["distortions"], None, random.Random(0))[0]
                 for s in samples]  # fmt: skip
        if wrong:
            texts = texts[1:] + texts[:1]
        self.text = {
            load_image(s.image_path).tobytes(): t for s, t in zip(samples, texts, strict=True)
        }

    def generate(self, images, n=1, temperature=1.0):
        return [[Generation(self.text[im.tobytes()])] for im in images]


@pytest.mark.parametrize("wrong", [False, True])
def test_eval_measures_what_the_reasoning_describes(synth, tmp_path, wrong):
    out = tmp_path / "run"
    summary = run_eval("m", cfg_for(f"synthetic:{synth}", split="train"), out,
                       scorer=Scorer("m", backend_impl=DescribingBackend(synth, wrong)))  # fmt: skip
    d = summary["datasets"]["synthetic"]["description"]
    assert d["judged"] == 28 and d["unknown_sentences"]["total"] == 0
    if wrong:  # descriptions of other images: far from the truth
        assert d["micro"]["f1"] < 0.5
    else:
        assert d["micro"]["f1"] == 1.0 and d["severity"]["srcc"] == pytest.approx(1.0)
    rows = read_jsonl(out / "predictions.jsonl")
    assert all("kinds" in r["distortions"] for r in rows)  # the truth travels with the row
    report = (out / "report.md").read_text()
    assert "Description accuracy (28 images with known distortions)" in report
    assert (out / "confusion-synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_datasets_without_distortion_labels_have_no_description(generic, tmp_path):
    class Plain:
        def generate(self, images, n=1, temperature=1.0):
            return [
                [Generation(tagged("<think>Strong blur.</think><answer>2</answer>"))]
                for _ in images
            ]

    summary = run_eval("m", cfg_for(f"generic:{generic}"), tmp_path / "run",
                       scorer=Scorer("m", backend_impl=Plain()))  # fmt: skip
    assert summary["datasets"]["generic"]["description"] is None


def test_compare_tells_which_run_described_better(synth, tmp_path, capsys):
    from qponder.cli import main
    from qponder.evaluation.compare import compare_runs

    for name, wrong in (("a", True), ("b", False)):
        run_eval("m", cfg_for(f"synthetic:{synth}", split="train"), tmp_path / name,
                 scorer=Scorer("m", backend_impl=DescribingBackend(synth, wrong)))  # fmt: skip
    result = compare_runs(tmp_path / "a", tmp_path / "b", n_resamples=200)
    desc = result["datasets"]["synthetic"]["description"]
    assert desc["n_pairs"] == 28 and desc["micro_f1"]["b"] == 1.0
    assert desc["micro_f1"]["diff"] > 0.5 and desc["micro_f1"]["ci95"][0] > 0  # B is better
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "DescF1" in capsys.readouterr().out


class _HalfJudge:
    """Implies 2.0 for every reasoning (a judge that disagrees with high answers)."""

    def __init__(self):
        self.read = []

    def implied_scores(self, texts):
        self.read += texts
        return [2.0] * len(texts)


def test_eval_with_a_judge_records_implied_scores_and_the_consistency_gap(synth, tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(f"synthetic:{synth}", split="train", limit=5)
    run_eval("m", cfg, out, scorer=Scorer("m", backend_impl=mos_backend(synth, noise=0)))
    judge = _HalfJudge()  # added on resume: only the judging is new
    summary = run_eval("m", cfg, out, resume=True, judge=judge,
                       scorer=Scorer("m", backend_impl=mos_backend(synth)))  # fmt: skip
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 5 and all(r["implied_score"] == 2.0 for r in rows)
    assert judge.read == [r["reasoning"] for r in rows]  # the reasoning alone, no answer
    c = summary["datasets"]["synthetic"]["consistency"]
    assert c["n"] == 5
    assert c["mean_abs_gap"] == pytest.approx(sum(abs(r["score"] - 2.0) for r in rows) / 5)
    assert (
        "consistency: mean |answer - score the reasoning implies|"
        in (out / "report.md").read_text()
    )
    again = _HalfJudge()
    run_eval(
        "m", cfg, out, resume=True, judge=again, scorer=Scorer("m", backend_impl=mos_backend(synth))
    )
    assert again.read == []  # judged rows are not judged twice


def test_eval_on_a_kadid_format_dataset_prints_the_description_figures(
    tmp_path, capsys, monkeypatch
):
    """A KADID-10k-format folder (dmos.csv + images named I<ref>_<type>_<level>.png): the
    truth comes from the names; a model that describes blur as blur and noise as noise,
    with the level's severity word, gets F1 1 and severity SRCC 1; the CLI prints them."""
    from PIL import Image

    from qponder.cli import main

    root = tmp_path / "kadid"
    (root / "images").mkdir(parents=True)
    words = {1: "slight", 2: "mild", 3: "moderate", 4: "strong", 5: "severe"}
    kinds = {1: "blur softens every edge", 11: "noise covers the flat areas"}  # KADID types
    lines, text_of = ["dist_img,ref_img,dmos,var"], {}
    rng = np.random.default_rng(0)
    for ref in (1, 2):
        for dtype, phrase in kinds.items():
            for level in range(1, 6):
                name = f"I{ref:02d}_{dtype:02d}_{level:02d}.png"
                img = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
                img.save(root / "images" / name)
                lines.append(f"{name},I{ref:02d}.png,{5.2 - level * 0.8:.2f},0.5")
                text_of[img.tobytes()] = tagged(
                    f"<think>{words[level].capitalize()} {phrase}. Overall, the quality is fair."
                    f"</think><answer>{5.2 - level * 0.8:.2f}</answer>"
                )
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")

    class Describer:
        def generate(self, images, n=1, temperature=1.0):
            return [[Generation(text_of[im.tobytes()])] for im in images]

    monkeypatch.setattr(  # the CLI's scorer, with this backend
        Scorer, "from_config", classmethod(lambda cls, *a, **kw: cls("m", backend_impl=Describer()))
    )
    argv = ["eval", "--model", "m", "--dataset", f"kadid:{root}", "--split", "train",
            "--out", str(tmp_path / "run"), "--set", "eval.bootstrap=20"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    d = printed["datasets"]["kadid"]["description"]
    assert d["per_kind"]["blur"]["f1"] == 1.0 and d["per_kind"]["noise"]["f1"] == 1.0
    assert d["severity"]["srcc"] == pytest.approx(1.0) and d["judged"] == d["images"]


def test_a_resume_merges_what_an_interrupted_run_of_eleven_processes_left_in_order(synth, tmp_path):
    from qponder.inference.parallel import part_path
    from qponder.runfiles import Journal

    out = tmp_path / "run"
    cfg = cfg_for(f"synthetic:{synth}", split="train", limit=12)
    run_eval("m", cfg, out, scorer=Scorer("m", backend_impl=mos_backend(synth)))
    preds = out / "predictions.jsonl"
    rows = read_jsonl(preds)
    # what 11 processes leave when killed before the merge: process 0's shard in
    # predictions.jsonl, the others' in predictions.part1.jsonl ... predictions.part10.jsonl
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    for k in range(1, 11):
        with Journal(part_path(preds, k)) as part:
            part.open()
            part.append(rows[k + 1])
    backend = mos_backend(synth)
    summary = run_eval("m", cfg, out, resume=True, scorer=Scorer("m", backend_impl=backend))
    assert backend.seen == 0 and summary["datasets"]["synthetic"]["n"] == 12
    assert read_jsonl(preds) == rows  # part10 merged after part9, not after part1
    assert not list(out.glob("predictions.part*"))


def test_eval_in_a_batch_job_logs_progress_on_stderr_and_its_summary_stays_json(
    tiny_model, synth, tmp_path
):
    import re

    cmd = [sys.executable, "-m", "qponder.cli", "eval", "--model", str(tiny_model),
           "--dataset", f"synthetic:{synth}", "--out", str(tmp_path / "run"), "--limit", "4",
           "--batch-size", "2", "--set", "eval.max_new_tokens=4", "--set", "eval.bootstrap=20"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["datasets"]["synthetic"]["n"] == 4  # stdout: the JSON only
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d eval: (\d+)/4 img \(")
    counts = [m.group(1) for m in map(line.match, proc.stderr.splitlines()) if m]
    assert counts[0] == "2" and counts[-1] == "4", proc.stderr


def test_an_eval_whose_model_does_not_load_leaves_no_empty_predictions(synth, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    argv = ["eval", "--model", str(tmp_path / "empty"), "--dataset", f"synthetic:{synth}",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
    assert (out / "run_config.json").is_file() and not (out / "predictions.jsonl").exists()


def test_sigterm_stops_eval_with_its_predictions_kept_and_143(synth, tmp_path):
    import os
    import signal
    import time
    from pathlib import Path

    out = tmp_path / "run"
    preds = out / "predictions.jsonl"
    cmd = [sys.executable, str(Path(__file__).with_name("stuck_model.py")), "eval", "--model",
           "unused", "--dataset", f"synthetic:{synth}", "--out", str(out), "--batch-size", "2",
           "--set", "eval.bootstrap=20"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not preds.exists() or preds.read_bytes().count(b"\n") < 2:  # the first batch
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run wrote nothing"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.splitlines()[-1] == (
        "qponder eval: terminated (SIGTERM); the predictions written so far are kept; run the "
        "same command with --resume to go on"
    )
    assert stdout == "" and len(read_jsonl(preds)) == 2
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "QPONDER_TEST_ANSWERS": "100"})  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["datasets"]["synthetic"]["n"] == 8  # the test split
    assert len(read_jsonl(preds)) == 8
