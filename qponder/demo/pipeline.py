"""The demo's pipeline: data, model, distillation, the training stages, evaluation and the
consistency judge, run in order into one demo directory, then its summary and report.

Each stage is the library function or the ``qponder`` command a user would run, with the
recipe written to ``DIR/recipe.yaml``, and skips what an earlier run of the same directory
finished, so an interrupted demo continues where it stopped when run again.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qponder.config import Recipe
from qponder.data.synthetic import make_synthetic_dataset
from qponder.demo.config import demo_settings
from qponder.demo.findings import ablation
from qponder.demo.memory import PeakMemory
from qponder.demo.paths import STAGES, DemoPaths
from qponder.demo.pretext import dataset_images, pretext_record, pretrain_vision
from qponder.demo.recipe import bind_paths, demo_recipe, write_recipe
from qponder.demo.report import write_report
from qponder.demo.supervisor import train_stages
from qponder.distill import run_distillation
from qponder.errors import QponderError
from qponder.evaluation.metrics import srcc
from qponder.evaluation.runner import run_eval
from qponder.models.judge import HFJudge, Judge
from qponder.models.tiny import build_tiny_model
from qponder.prompts import load_prompts
from qponder.runfiles import read_jsonl, write_json_atomic


def _say(message: str) -> None:
    print(f"[qponder demo] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- stages


def build_data(recipe: Recipe, paths: DemoPaths) -> None:
    """Stage 1: the synthetic dataset (skipped when ``DIR/data/synthetic.json``, written
    last, exists)."""
    if (paths.data / "synthetic.json").is_file():
        return
    d = demo_settings(recipe)
    try:
        make_synthetic_dataset(
            paths.data, n=d.n_images, seed=d.data_seed, kinds=d.kinds, photo_share=d.photo_share
        )
    except ValueError as exc:
        raise QponderError(f"demo data: {exc}") from None


def build_model(recipe: Recipe, paths: DemoPaths, progress: bool = False) -> None:
    """Stage 2: the tiny offline Qwen2.5-VL, its vision tower pretrained on the pretext
    task over the training images when ``demo.tiny.pretext_steps`` > 0 (each part skipped
    when ``DIR/tiny`` already has it)."""
    t = demo_settings(recipe).tiny
    if not (
        (paths.tiny / "model.safetensors").is_file() and (paths.tiny / "config.json").is_file()
    ):
        build_tiny_model(
            paths.tiny,
            seed=t.seed,
            hidden_size=t.hidden_size,
            num_layers=t.num_layers,
            num_heads=t.num_heads,
            vision_hidden_size=t.vision_hidden_size,
            vision_depth=t.vision_depth,
            vision_heads=t.vision_heads,
            vocab_size=t.vocab_size,
            min_pixels=recipe.model.min_pixels or 56 * 56,
            max_pixels=recipe.model.max_pixels or 112 * 112,
        )
    if t.pretext_steps > 0 and pretext_record(paths.tiny) is None:
        images, _ = dataset_images(paths.dataset, "train")
        pretrain_vision(
            paths.tiny,
            images,
            steps=t.pretext_steps,
            learning_rate=t.pretext_learning_rate,
            batch_size=t.pretext_batch_size,
            seed=t.seed,
            progress=progress,
        )


def distill(recipe: Recipe, paths: DemoPaths) -> dict[str, Any]:
    """Stage 3: cold-start data from the synthetic teacher (resumes by itself); returns the
    distillation report."""
    return run_distillation(
        recipe, dataset=paths.dataset, split="train", out=paths.cold, progress=False
    )


def evaluate(recipe: Recipe, paths: DemoPaths, stage: str) -> dict[str, Any]:
    """Score the test split with ``stage``'s model (``qponder eval``; resumable); returns
    the dataset's summary."""
    summary = run_eval(
        str(paths.model(stage)),
        recipe.eval,
        out=paths.eval(stage),
        model_config=recipe.model,
        resume=True,
        instruction=load_prompts(recipe.prompts).student_instruction,
    )
    return next(iter(summary["datasets"].values()))


def expected_score_srcc(rows: Sequence[dict[str, Any]]) -> float | None:
    """SRCC against MOS of the expected-score read-out (probability-weighted over the score
    digits at the answer position) of prediction rows; None when fewer than two rows have
    one or it is constant. Unlike the parsed answer, it does not tie within a quality band."""
    pairs = [(r["expected_score"], r["mos"]) for r in rows if r.get("expected_score") is not None]
    if len(pairs) < 2:  # e.g. the untrained model: nothing to correlate, no warning
        return None
    value = srcc([p for p, _ in pairs], [m for _, m in pairs])  # nan (and a warning) if constant
    return None if math.isnan(value) else float(value)


def consistency_gaps(judge: Judge, rows: Sequence[dict[str, Any]]) -> list[float]:
    """``|answer - judge-implied score|`` for every prediction with a score and reasoning.

    Args:
        judge: Reads the reasoning alone, no image (``implied_scores``).
        rows: Prediction rows of ``qponder eval`` (``score``, ``reasoning``).

    Returns:
        One gap per judged row (rows without a score or a reasoning are left out).
    """
    todo = [r for r in rows if r.get("score") is not None and (r.get("reasoning") or "").strip()]
    if not todo:
        return []
    implied = judge.implied_scores([r["reasoning"] for r in todo])
    return [abs(float(r["score"]) - j) for r, j in zip(todo, implied, strict=True) if j is not None]


def measure_consistency(recipe: Recipe, paths: DemoPaths) -> dict[str, dict[str, Any]]:
    """Mean |answer - judge-implied score| of each stage, the judge being the frozen
    Q-Ponder-CI (GRPO's default judge), reading each reasoning without the image."""
    judge = HFJudge.from_pretrained(
        str(paths.model("qponder_ci")),
        recipe.model,
        instruction=load_prompts(recipe.prompts).student_instruction,
        batch_size=recipe.grpo.consistency.batch_size,
    )
    out = {}
    for stage in STAGES:
        gaps = consistency_gaps(judge, read_jsonl(paths.eval(stage) / "predictions.jsonl"))
        out[stage] = {
            "consistency": sum(gaps) / len(gaps) if gaps else None,
            "n_judged": len(gaps),
        }
    return out


# --------------------------------------------------------------------------- driver


class _Timings(dict):
    """Seconds each step of the demo took, by name, announced as each starts and ends."""

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` as the step ``name``; returns what it returns."""
        _say(f"{name} ...")
        t = time.monotonic()
        result = fn(*args)
        self[name] = round(time.monotonic() - t, 1)
        _say(f"{name}: {self[name]:.0f} s")
        return result


def _run_stages(
    recipe: Recipe, paths: DemoPaths, timed: _Timings, progress: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """Every stage in order; returns the distillation report, each stage's test summary and
    each stage's consistency."""
    timed.run("synthetic data", build_data, recipe, paths)
    timed.run("tiny model", build_model, recipe, paths, progress)
    distill_report = timed.run("distillation", distill, recipe, paths)
    sft = ["qponder_ci", "sft_nocot"]
    if demo_settings(recipe).parallel_sft:
        timed.run("SFT (CoT and answer-only, side by side)",
                  train_stages, recipe, paths, sft, 1, progress)  # fmt: skip
    else:
        for stage in sft:
            timed.run(f"SFT {stage}", train_stages, recipe, paths, [stage], 2, progress)
    timed.run("GRPO", train_stages, recipe, paths, ["qponder"], 2, progress)
    results = {}
    for stage in STAGES:
        results[stage] = timed.run(f"evaluation of {stage}", evaluate, recipe, paths, stage)
    consistency = timed.run("consistency judge", measure_consistency, recipe, paths)
    return distill_report, results, consistency


def _stage_rows(
    paths: DemoPaths, results: dict[str, Any], consistency: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The summary's row of each stage: its test metrics, consistency and model."""
    return {
        s: {
            "srcc": results[s]["srcc"],
            "plcc": results[s]["plcc"],
            "parse_failures": results[s]["parse_failures"],
            "consistency": consistency[s]["consistency"],
            "n": results[s]["n"],
            "n_judged": consistency[s]["n_judged"],
            "srcc_ci95": (results[s].get("ci95") or {}).get("srcc"),
            "srcc_expected": expected_score_srcc(read_jsonl(paths.eval(s) / "predictions.jsonl")),
            # what the reasoning says about the known distortions (micro F1 over kinds)
            "description_f1": ((results[s].get("description") or {}).get("micro") or {}).get("f1"),
            "model": str(paths.model(s)),
        }
        for s in STAGES
    }


def parameter_count(model_dir: Path) -> int:
    """Parameters of the checkpoint in ``model_dir``, read from its ``model.safetensors``
    header (the tensor shapes), without loading the weights."""
    with open(model_dir / "model.safetensors", "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))  # the format: a u64 header length, then JSON
        header = json.loads(f.read(size))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def training_data(paths: DemoPaths) -> dict[str, int]:
    """What the trained models learnt from: the training split's images, how many of them
    are photograph crops (``content_kind`` in the synthetic data's ``labels.csv``), and the
    model's parameters; the report's warning rests on these."""
    with open(paths.data / "labels.csv", newline="", encoding="utf-8") as f:
        train = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return {
        "images": len(train),
        "photos": sum(r["content_kind"] == "photo" for r in train),
        "parameters": parameter_count(paths.tiny),
    }


def run_demo(
    out: str | os.PathLike = "runs/demo",
    quick: bool = False,
    config: str | os.PathLike = "tiny-demo",
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole pipeline and write ``DIR/summary.json`` and ``DIR/report.md``.

    Args:
        out: The demo directory; running again on the same directory resumes.
        quick: Apply the recipe's ``demo.quick`` overrides (a run of a minute or two).
        config: The recipe (a file or a shipped name); its ``demo`` section sizes the data
            and the model.
        overrides: ``key=value`` overrides, as given to ``--set``.
        progress: Show progress bars.

    Returns:
        The summary: ``{"stages": {stage: {srcc, plcc, parse_failures, consistency, ...}},
        "models": {"qponder_ci", "qponder"}, "ablation": [{stages, relation, verdict, ...}],
        "training_data", "wall_s", "peak_rss_gib", ...}``.
    """
    start = time.monotonic()
    paths = DemoPaths(Path(out))
    recipe = bind_paths(demo_recipe(config, quick, overrides), paths)
    write_recipe(recipe, paths)
    timings = _Timings()
    with PeakMemory() as memory:
        distill_report, results, consistency = _run_stages(recipe, paths, timings, progress)
    stages = _stage_rows(paths, results, consistency)
    summary: dict[str, Any] = {
        "stages": stages,
        # the paper's ablation, each pair by its 95 % CIs (qponder.demo.findings)
        "ablation": ablation(stages),
        "models": {
            "qponder_ci": str(paths.model("qponder_ci")),
            "qponder": str(paths.model("qponder")),
        },
        "training_data": training_data(paths),
        "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_gib": round(memory.peak_bytes / 2**30, 3),
        "stage_seconds": dict(timings),
        "quick": quick,
        "distillation": {
            k: distill_report.get(k)
            for k in ("kept", "rejected", "rejected_by_reason", "teacher_vs_mos")
        },
    }
    write_json_atomic(paths.root / "summary.json", summary)
    write_report(paths, recipe, summary)
    _say(f"done in {summary['wall_s']:.0f} s; report: {paths.root / 'report.md'}")
    return summary


__all__ = [
    "build_data",
    "build_model",
    "consistency_gaps",
    "distill",
    "evaluate",
    "expected_score_srcc",
    "measure_consistency",
    "parameter_count",
    "run_demo",
    "training_data",
]
