"""The synthetic teacher: scores near the MOS, the error rate it is given, every aspect in
every answer, reasoning from which the score can be read, and reproducibility."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from distill_fakes import make_samples

from qponder.answer_format import render
from qponder.config import DistillConfig, Recipe
from qponder.data.samples import Sample
from qponder.data.synthetic_reasoning import (
    BANDS,
    DEFECTS,
    SEVERITY,
    band_phrase,
    example_completions,
    synthetic_completion,
)
from qponder.distill import TeacherReply, judge_replies, run_distillation
from qponder.distill.synthetic import SyntheticTeacher
from qponder.parsing import is_well_formed, parse_completion

# words by which a reader recognises that an aspect was assessed
ASPECT_WORDS = {
    "sharpness": r"sharp|focus|blur",
    "noise": r"noise",
    "exposure": r"expos",
    "contrast": r"contrast",
    "colour": r"colour",
    "artefacts": r"artefact|compression|pixelat|block",
    "content": r"content",
    "overall": r"overall",
}


def random_sample(i: int, rng: random.Random) -> Sample:
    kinds = rng.sample(sorted(DEFECTS), rng.randint(0, 3))
    distortions = [{"kind": k, "level": rng.randint(1, 5)} for k in kinds]
    mos = min(
        5.0, max(1.0, 4.8 - 0.45 * sum(d["level"] for d in distortions) + rng.uniform(-0.2, 0.2))
    )
    meta = {"distortions": distortions, "content": rng.choice(["a harbour", "flowers", "text"])}
    return Sample(
        f"s{i}", f"/nowhere/s{i}.png", round(mos, 2), mos, "synthetic", "train", meta=meta
    )


SAMPLES = [random_sample(i, random.Random(i)) for i in range(400)]


def implied_score(reasoning: str) -> float:
    """What a reader of the reasoning alone would score: the named band, nudged towards
    the band it leans to (the consistency judge's task, done by rule)."""
    match = re.search(r"quality is (\w+)(?:, leaning towards (\w+))?", reasoning)
    assert match, reasoning
    level = {v: k for k, v in BANDS.items()}
    score = float(level[match.group(1)])
    if match.group(2):
        score += 0.35 * (level[match.group(2)] - score)
    return score


def test_correct_answers_score_near_the_mos_and_are_well_formed():
    teacher = SyntheticTeacher(error_rate=0.0, seed=1)
    for sample in SAMPLES:
        text, kind = teacher.answer(sample)
        assert kind == "correct" and is_well_formed(text)
        assert abs(parse_completion(text).score - sample.mos) <= 0.3 + 1e-9


@pytest.mark.parametrize("error_rate", [0.0, 0.2, 0.5])
def test_the_error_rate_is_respected_and_every_error_is_filtered_out(error_rate):
    teacher = SyntheticTeacher(error_rate=error_rate, seed=3)
    kinds = Counter()
    for sample in SAMPLES:
        for k in range(5):
            text, kind = teacher.answer(sample, k)
            kinds[kind] += 1
            verdict = judge_replies([TeacherReply(text)], sample.mos, tolerance=0.5)
            assert verdict.kept == (kind == "correct"), (kind, text)
    share = 1 - kinds["correct"] / sum(kinds.values())
    assert abs(share - error_rate) < 0.03  # 2000 answers: 3 standard errors at most
    if error_rate:
        assert kinds["overlooked"] and kinds["invented"] and kinds["no_answer"]


def test_a_teacher_answer_ending_with_a_full_stop_is_kept():
    # large teachers end their answers with a sentence's full stop: not a format failure
    text = render("The edges are soft and fine detail is lost to blur.", "The score is 3.25.")
    verdict = judge_replies([TeacherReply(text)], 3.3, tolerance=0.5)
    assert verdict.kept and verdict.teacher_score == 3.25


def test_every_answer_covers_every_aspect_and_stays_compact():
    teacher = SyntheticTeacher(error_rate=0.3, seed=0)
    for sample in SAMPLES:
        reasoning = parse_completion(teacher.answer(sample)[0]).reasoning
        for aspect, words in ASPECT_WORDS.items():
            assert re.search(words, reasoning, re.IGNORECASE), (aspect, reasoning)
        assert 30 <= len(reasoning.split()) <= 95


def test_the_score_can_be_read_from_the_reasoning_alone():
    teacher = SyntheticTeacher(error_rate=0.3, seed=0)  # wrong answers too: they stay consistent
    for sample in SAMPLES:
        parsed = parse_completion(teacher.answer(sample)[0])
        if parsed.score is not None:
            assert abs(implied_score(parsed.reasoning) - parsed.score) <= 0.5


def test_severity_words_follow_the_distortion_level():
    rng = random.Random(0)
    for kind in DEFECTS:
        for level, words in SEVERITY.items():
            text, _ = synthetic_completion(3.0, [{"kind": kind, "level": level}], None, rng)
            assert re.search(r"\b(" + "|".join(words) + r")\b", text, re.IGNORECASE), (kind, level)


def test_answers_are_deterministic_for_a_seed_whatever_the_order():
    a, b, c = (
        SyntheticTeacher(0.3, seed=7),
        SyntheticTeacher(0.3, seed=7),
        SyntheticTeacher(0.3, seed=8),
    )
    forward = [a.answer(s, k) for s in SAMPLES[:50] for k in range(2)]
    backward = [b.answer(s, k) for s in reversed(SAMPLES[:50]) for k in reversed(range(2))]
    assert forward == backward[::-1]
    assert forward != [c.answer(s, k) for s in SAMPLES[:50] for k in range(2)]


def test_band_phrase_names_the_band_and_its_neighbour():
    assert band_phrase(5.0) == "excellent" and band_phrase(1.0) == "bad"
    assert band_phrase(2.7) == "fair, leaning towards poor"
    assert band_phrase(4.45) == "good, leaning towards excellent"


def test_example_completions_cover_every_kind_and_level():
    n = 5 * len(DEFECTS)
    texts = example_completions(n, seed=0)
    assert len(texts) == n and texts == example_completions(n, seed=0)
    assert all(is_well_formed(t) for t in texts)
    # the i-th completion describes kind i mod K at level 1 + i // K (every 7th is clean)
    kinds = sorted(DEFECTS)
    covered = set()
    for i, text in enumerate(texts):
        if i % 7 == 6:
            continue
        kind, level = kinds[i % len(kinds)], 1 + i // len(kinds)
        stems = [t.split("{")[0].strip() or t.split("}")[1].split()[0] for t in DEFECTS[kind][2]]
        if any(s in text for s in stems) and re.search("|".join(SEVERITY[level]), text, re.I):
            covered.add((kind, level))
    missing = {(k, lv) for k in kinds for lv in SEVERITY} - covered
    # the clean slots are covered again by the next round of examples
    more = example_completions(3 * n, seed=0)
    for kind, level in list(missing):
        if any(
            re.search("|".join(SEVERITY[level]), t, re.I) and DEFECTS[kind][1].split()[-1] in t
            for t in more
        ):
            missing.discard((kind, level))
    assert not missing


def test_every_kind_of_the_synthetic_dataset_has_its_own_phrases():
    from qponder.data import synthetic

    assert set(synthetic.DISTORTIONS) <= set(DEFECTS)


def test_distillation_with_the_synthetic_teacher_keeps_the_correct_answers(tmp_path):
    mos = [1.2 + (i % 9) * 0.45 for i in range(60)]
    plain = make_samples(tmp_path / "img", mos)
    rng = random.Random(0)
    samples = [
        Sample(
            s.id,
            s.image_path,
            s.mos,
            s.mos_raw,
            s.dataset,
            s.split,
            meta={
                "distortions": [{"kind": rng.choice(sorted(DEFECTS)), "level": 3}],
                "content": "a harbour",
            },
        )
        for s in plain
    ]
    recipe = Recipe(distill=DistillConfig(teacher="synthetic", error_rate=0.25, seed=0))
    report = run_distillation(recipe, samples, out=tmp_path / "s.jsonl", progress=False)
    teacher = SyntheticTeacher(0.25, seed=0)
    expected = sum(teacher.answer(s)[1] == "correct" for s in samples)
    assert report["kept"] == expected and 30 <= expected <= 55
    assert set(report["rejected_by_reason"]) <= {"score_mismatch", "format"}
    assert report["teacher_vs_mos"]["srcc"] > 0.5


def test_cli_distils_the_synthetic_dataset_into_sft_ready_rows(tmp_path, capsys):
    import json

    from qponder.cli import main
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.prompts import DEFAULT_PROMPTS

    make_synthetic_dataset(tmp_path / "synth", n=40, seed=0)
    out = tmp_path / "cold.jsonl"
    argv = [
        "distill",
        "--dataset",
        f"synthetic:{tmp_path / 'synth'}",
        "--teacher",
        "synthetic",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["kept"] == len(rows) and report["kept"] + report["rejected"] == report["total"]
    assert report["teacher_vs_mos"]["srcc"] > 0.8
    for row in rows:
        assert {
            "id",
            "image",
            "mos",
            "prompt",
            "completion",
            "teacher_score",
            "teacher",
            "prompt_version",
        } <= set(row)
        assert row["prompt"] == DEFAULT_PROMPTS.student_instruction and is_well_formed(
            row["completion"]
        )
        assert "scene_0" not in row["completion"]  # the content is described, not named by id
    # the endpoint flag with another teacher is a one-line error, not a silent no-op
    assert main([*argv, "--base-url", "http://127.0.0.1:1/v1"]) == 2
    assert "distill.base_url: an endpoint needs --teacher openai" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("direction", "words"), [("increase", r"oversaturat"), ("decrease", r"washed out|desaturat")]
)
def test_a_saturation_shift_is_described_in_its_direction(direction, words):
    distortion = {"kind": "saturation_shift", "level": 3, "direction": direction}
    for seed in range(5):
        text, _ = synthetic_completion(3.0, [distortion], None, random.Random(seed))
        assert re.search(words, text, re.IGNORECASE)


def test_resuming_into_an_output_made_from_another_folder_is_refused(tmp_path):
    """Two folders of the same dataset type share ids (img_0000, ...): resuming one into the
    other's output would count the other folder's images as done."""
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.errors import QponderError

    recipe = Recipe(distill=DistillConfig(teacher="synthetic"))
    for name in ("a", "b"):
        make_synthetic_dataset(tmp_path / name, n=20, seed=0)
    out = tmp_path / "cold.jsonl"
    run_distillation(recipe, f"synthetic:{tmp_path / 'a'}", split=None, out=out, limit=5,
                     progress=False)  # fmt: skip
    with pytest.raises(QponderError, match=r"dataset_root: .*a' -> .*b'"):
        run_distillation(recipe, f"synthetic:{tmp_path / 'b'}", split=None, out=out,
                         progress=False)  # fmt: skip
    # the same folder, named another way, resumes
    report = run_distillation(recipe, f"synthetic:{tmp_path / 'x' / '..' / 'a'}", split=None,
                              out=out, limit=8, progress=False)  # fmt: skip
    assert report["kept"] + report["rejected"] == 8


def test_distill_in_a_batch_job_logs_progress_lines_and_prints_its_report_as_json(tmp_path):
    import json
    import re
    import subprocess
    import sys

    from qponder.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "synth", n=20, seed=0)
    cmd = [sys.executable, "-m", "qponder.cli", "distill", "--dataset",
           f"synthetic:{tmp_path / 'synth'}", "--teacher", "synthetic", "--out",
           str(tmp_path / "cold.jsonl")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # stdout: the report alone
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d distill: (\d+)/(\d+) img \(.*, kept=\d+")
    counts = [m.groups() for m in map(line.match, proc.stderr.splitlines()) if m]
    total = str(report["total"])
    assert counts[0] == ("1", total) and counts[-1] == (total, total), proc.stderr
    assert "\r" not in proc.stderr


@pytest.mark.parametrize(("stop", "code"), [("SIGTERM", 143), ("Ctrl-C", 130)])
def test_a_stopped_distill_says_how_to_go_on(tmp_path, capsys, monkeypatch, stop, code):
    import signal

    import qponder.distill
    from qponder.cli import common, main

    def stopped(*args, **kwargs):  # what the boundary receives from each stop
        raise common.Terminated() if stop == "SIGTERM" else KeyboardInterrupt()

    monkeypatch.setattr(qponder.distill, "run_distillation", stopped)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["distill", "--dataset", f"synthetic:{tmp_path}", "--teacher", "synthetic", "--out",
            str(tmp_path / "cold.jsonl")]  # fmt: skip
    assert main(argv) == code
    said = "terminated (SIGTERM)" if code == 143 else "interrupted"
    assert capsys.readouterr().err.strip() == (
        f"qponder distill: {said}; the records written so far are kept; run the same command "
        "again to go on"
    )
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's only
