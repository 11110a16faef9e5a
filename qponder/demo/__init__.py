"""``qponder demo``: the whole Q-Ponder pipeline offline on one CPU, and proof that each stage helps.

The demo builds the tiny offline Qwen2.5-VL (:mod:`qponder.models.tiny`), renders the
synthetic distortion dataset (:mod:`qponder.data.synthetic`), distils cold-start reasoning
from the synthetic teacher, fine-tunes on it (Q-Ponder-CI) and, for the paper's ablation,
on the answers alone, trains Q-Ponder-CI with GRPO (Q-Ponder), and evaluates the four models
on the held-out test split, whose contents no training image shares.

Each stage is the library function or the ``qponder`` command a user would run, with the
recipe the demo writes to ``DIR/recipe.yaml``; training stages run as ``qponder sft`` /
``qponder grpo`` subprocesses (the two SFT runs side by side, a core each), their logs in
``DIR/logs/``. Every stage skips what an earlier run of the same directory finished, and
the training stages resume from their last checkpoint, so an interrupted demo continues
where it stopped when run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qponder.config import (
    Recipe,
    load_recipe,
    recipe_to_dict,
    write_json_atomic,
    write_text_atomic,
)
from qponder.errors import QponderError

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("base", "sft_nocot", "qponder_ci", "qponder")
STAGE_TITLES = {
    "base": "untrained model",
    "sft_nocot": "SFT without CoT (answers only)",
    "qponder_ci": "Q-Ponder-CI (CoT SFT)",
    "qponder": "Q-Ponder (CoT SFT + GRPO)",
}
# the targets on 2 CPU cores
MAX_WALL_S = 15 * 60
MAX_PEAK_GIB = 4.0
MIN_SRCC = 0.85


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage of a demo directory writes."""

    root: Path

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def tiny(self) -> Path:
        return self.root / "tiny"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cold(self) -> Path:
        return self.root / "cold_start.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def run(self, stage: str) -> Path:
        """Training run directory of ``sft_nocot``, ``qponder_ci`` or ``qponder``."""
        return self.root / {"sft_nocot": "sft_nocot", "qponder_ci": "sft", "qponder": "grpo"}[stage]

    def model(self, stage: str) -> Path:
        """The checkpoint evaluated for ``stage``."""
        return self.tiny if stage == "base" else self.run(stage) / "final"

    def eval(self, stage: str) -> Path:
        return self.root / "eval" / stage

    @property
    def dataset(self) -> str:
        return f"synthetic:{self.data}"


# --------------------------------------------------------------------------- recipe


def demo_recipe(
    config: str | os.PathLike = "tiny-demo", quick: bool = False, overrides: Sequence[str] = ()
) -> Recipe:
    """The demo's recipe: ``config`` with, for ``quick``, its ``demo.quick`` overrides, then
    ``overrides`` (``key=value`` strings as given to ``--set``)."""
    recipe = load_recipe(config, list(overrides))
    if quick and recipe.demo.quick:
        recipe = load_recipe(config, [*recipe.demo.quick, *overrides])
    return recipe


def _bind_paths(recipe: Recipe, paths: DemoPaths) -> Recipe:
    """Point validation and evaluation at the demo's own data."""
    recipe.sft.validation.dataset = paths.dataset
    recipe.grpo.validation.dataset = paths.dataset
    recipe.eval.datasets = [paths.dataset]
    recipe.eval.split = "test"
    recipe.eval.limit = recipe.demo.eval_limit
    recipe.model.path = None  # each stage names its model
    return recipe


def _write_recipe(recipe: Recipe, paths: DemoPaths) -> None:
    """Write ``recipe.yaml``; refuse a directory made by a different recipe (resuming
    across recipes would mix two experiments)."""
    import yaml

    text = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
    if paths.recipe.is_file() and paths.recipe.read_text() != text:
        raise QponderError(
            f"{paths.root} holds a demo made with another recipe ({paths.recipe}); "
            "use another --out, or delete the folder to start again"
        )
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.recipe.with_name("recipe.yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, paths.recipe)


# --------------------------------------------------------------------------- memory


class PeakMemory:
    """Sample the resident memory of this process and all its children (summed) in a
    background thread; ``peak_bytes`` is the largest sum seen."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        """Current RSS of the process tree, in bytes."""
        import psutil

        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child that just ended
                total += p.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --------------------------------------------------------------------------- stages


def _say(message: str) -> None:
    print(f"[qponder demo] {message}", file=sys.stderr, flush=True)


def build_model(recipe: Recipe, paths: DemoPaths, progress: bool = False) -> None:
    """Stage 2: the tiny offline Qwen2.5-VL, its vision tower pretrained on the pretext
    task over the training images when ``demo.tiny.pretext_steps`` > 0 (each part skipped
    when ``DIR/tiny`` already has it)."""
    from qponder.models.pretext import dataset_images, pretext_record, pretrain_vision
    from qponder.models.tiny import build_tiny_model

    t = recipe.demo.tiny
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


def build_data(recipe: Recipe, paths: DemoPaths) -> None:
    """Stage 1: the synthetic dataset (skipped when ``DIR/data/synthetic.json``, written
    last, exists)."""
    from qponder.data.synthetic import make_synthetic_dataset

    if (paths.data / "synthetic.json").is_file():
        return
    d = recipe.demo
    try:
        make_synthetic_dataset(
            paths.data, n=d.n_images, seed=d.data_seed, kinds=d.kinds, photo_share=d.photo_share
        )
    except ValueError as exc:
        raise QponderError(f"demo data: {exc}") from None


def distill(recipe: Recipe, paths: DemoPaths) -> dict[str, Any]:
    """Stage 3: cold-start data from the synthetic teacher (resumes by itself)."""
    from qponder.distill import run_distillation

    return run_distillation(
        recipe, dataset=paths.dataset, split="train", out=paths.cold, progress=False
    )


def stage_command(paths: DemoPaths, stage: str) -> list[str]:
    """The ``qponder`` command that trains ``stage``."""
    common = ["--config", str(paths.recipe), "--out", str(paths.run(stage))]
    if stage == "qponder":
        return ["grpo", *common, "--dataset", paths.dataset, "--split", "train",
                "--model", str(paths.model("qponder_ci"))]  # fmt: skip
    cmd = ["sft", *common, "--data", str(paths.cold), "--model", str(paths.tiny)]
    return [*cmd, "--no-cot"] if stage == "sft_nocot" else cmd


def planned_steps(trl: dict[str, Any], n_rows: int, grpo: bool = False) -> int:
    """Optimizer steps a TRL run will take on ``n_rows`` examples (cold-start rows for SFT,
    prompts for GRPO) on one process: ``max_steps`` when set, else from the epochs. A GRPO
    batch counts completions, ``num_generations`` per prompt.

    Example:
        >>> planned_steps({"per_device_train_batch_size": 8, "num_train_epochs": 3}, 100)
        39
        >>> planned_steps({"per_device_train_batch_size": 16, "num_generations": 4,
        ...                "num_train_epochs": 1}, 100, grpo=True)
        25
    """
    if int(trl.get("max_steps", -1)) > 0:
        return int(trl["max_steps"])
    per_step = int(trl.get("per_device_train_batch_size", 8)) * int(
        trl.get("gradient_accumulation_steps", 1)
    )
    items = n_rows * (int(trl.get("num_generations", 8)) if grpo else 1)
    return math.ceil(items / per_step) * int(math.ceil(float(trl.get("num_train_epochs", 3))))


def _last_step(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("step", 0))
        except (json.JSONDecodeError, AttributeError):
            continue  # a line being written
    return 0


def thread_shares(budget: int, stages: Sequence[str] | set[str]) -> dict[str, int]:
    """Split ``budget`` CPU threads among ``stages`` as evenly as possible, at least one
    each; the threads left over go to the first stages in name order.

    Example:
        >>> thread_shares(2, {"qponder_ci"}), thread_shares(3, ["b", "a"])
        ({'qponder_ci': 2}, {'a': 2, 'b': 1})
    """
    names = sorted(stages)
    return {
        s: max(1, budget // len(names) + (i < budget % len(names))) for i, s in enumerate(names)
    }


def _n_examples(paths: DemoPaths, stage: str) -> int:
    """What an epoch of ``stage`` goes through: GRPO's training images, SFT's cold-start rows."""
    if stage == "qponder":
        from qponder.data import load_dataset

        return len(list(load_dataset(paths.dataset, "train")))
    return sum(1 for line in paths.cold.read_text().splitlines() if line.strip())


def train_stages(
    recipe: Recipe, paths: DemoPaths, stages: Sequence[str], threads: int, progress: bool = True
) -> None:
    """Train ``stages`` side by side as ``qponder`` subprocesses, each with ``threads``
    torch threads, logging to ``DIR/logs/<stage>.log``; stages whose ``final/`` exists are
    skipped. When a stage finishes, the stages still training share its threads (through
    ``DIR/logs/<stage>.threads``, see :class:`qponder.train.callbacks.ThreadsFileCallback`).
    Raises :class:`QponderError` naming the log of a stage that failed."""
    from tqdm.auto import tqdm

    from qponder.train.callbacks import THREADS_FILE_ENV

    todo = [s for s in stages if not (paths.model(s) / "config.json").is_file()]
    if not todo:
        return
    paths.logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    budget = threads * len(todo)
    procs: dict[str, tuple[subprocess.Popen, Any, Any]] = {}
    for stage in todo:
        section = recipe.grpo if stage == "qponder" else recipe.sft
        log = open(paths.logs / f"{stage}.log", "a", encoding="utf-8")  # noqa: SIM115
        cmd = [sys.executable, "-m", "qponder.cli", *stage_command(paths, stage)]
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        threads_file = paths.logs / f"{stage}.threads"
        write_text_atomic(threads_file, f"{threads}\n")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, THREADS_FILE_ENV: str(threads_file)},
        )
        bar = tqdm(
            total=planned_steps(section.trl, _n_examples(paths, stage), grpo=stage == "qponder"),
            desc=stage,
            unit="step",
            disable=not progress,
        )
        procs[stage] = (proc, log, bar)
    try:
        running = set(procs)
        while running:
            time.sleep(1.0)
            still = {s for s in running if procs[s][0].poll() is None}
            if still and still != running:  # hand the freed threads on
                for stage, share in thread_shares(budget, still).items():
                    write_text_atomic(paths.logs / f"{stage}.threads", f"{share}\n")
            running = still
            for stage, (_, _, bar) in procs.items():
                bar.n = _last_step(paths.run(stage))
                bar.refresh()
    except BaseException:
        for proc, _, _ in procs.values():
            proc.terminate()
        raise
    finally:
        for proc, log, bar in procs.values():
            proc.wait()
            bar.close()
            log.close()
    failed = [s for s, (p, _, _) in procs.items() if p.returncode != 0]
    if failed:
        logs = ", ".join(str(paths.logs / f"{s}.log") for s in failed)
        raise QponderError(f"demo: training of {', '.join(failed)} failed; see {logs}")


def evaluate(recipe: Recipe, paths: DemoPaths, stage: str) -> dict[str, Any]:
    """Score the test split with ``stage``'s model (``qponder eval``; resumable); returns
    the dataset's summary."""
    from qponder.evaluation.runner import run_eval
    from qponder.prompts import load_prompts

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
    from qponder.evaluation.metrics import srcc

    pairs = [(r["expected_score"], r["mos"]) for r in rows if r.get("expected_score") is not None]
    if len(pairs) < 2:  # e.g. the untrained model: nothing to correlate, no warning
        return None
    value = srcc([p for p, _ in pairs], [m for _, m in pairs])  # nan (and a warning) if constant
    return None if math.isnan(value) else float(value)


def consistency_gaps(judge: Any, rows: Sequence[dict[str, Any]]) -> list[float]:
    """``|answer - judge-implied score|`` for every prediction with a score and reasoning.

    Args:
        judge: A :class:`qponder.rewards.Judge` (it reads the reasoning alone, no image).
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
    from qponder.evaluation.io import read_jsonl
    from qponder.rewards import HFJudge

    judge = HFJudge.from_pretrained(
        str(paths.model("qponder_ci")), recipe.model, batch_size=recipe.grpo.consistency.batch_size
    )
    out = {}
    for stage in STAGES:
        gaps = consistency_gaps(judge, read_jsonl(paths.eval(stage) / "predictions.jsonl"))
        out[stage] = {
            "consistency": sum(gaps) / len(gaps) if gaps else None,
            "n_judged": len(gaps),
        }
    return out


# --------------------------------------------------------------------------- targets


def check_targets(summary: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets, each True/False (None when a figure is missing)."""
    st = summary["stages"]

    def srcc(stage: str) -> float | None:
        return st[stage]["srcc"]

    def lt(a: float | None, b: float | None, strict: bool = True) -> bool | None:
        if a is None or b is None:
            return None
        return a < b if strict else a <= b

    q, ci, nocot = srcc("qponder"), srcc("qponder_ci"), srcc("sft_nocot")
    return {
        "wall_time_at_most_15_min": summary["wall_s"] <= MAX_WALL_S,
        "peak_memory_at_most_4_gib": summary["peak_rss_gib"] <= MAX_PEAK_GIB,
        "qponder_srcc_at_least_0.85": None if q is None else q >= MIN_SRCC,
        "qponder_not_below_qponder_ci": lt(ci, q, strict=False),
        "consistency_better_after_grpo": lt(
            st["qponder"]["consistency"], st["qponder_ci"]["consistency"]
        ),
        "ablation_order_nocot_lt_cot_le_grpo": (
            None if None in (nocot, ci, q) else bool(nocot < ci <= q)
        ),
    }


# --------------------------------------------------------------------------- driver


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
        "models": {"qponder_ci", "qponder"}, "wall_s", "peak_rss_gib", "targets", ...}``.
    """
    from qponder.demo.report import write_report
    from qponder.evaluation.io import read_jsonl

    start = time.monotonic()
    paths = DemoPaths(Path(out))
    recipe = _bind_paths(demo_recipe(config, quick, overrides), paths)
    _write_recipe(recipe, paths)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        _say(f"{name} ...")
        t = time.monotonic()
        result = fn(*args)
        timings[name] = round(time.monotonic() - t, 1)
        _say(f"{name}: {timings[name]:.0f} s")
        return result

    with PeakMemory() as memory:
        timed("synthetic data", build_data, recipe, paths)
        timed("tiny model", build_model, recipe, paths, progress)
        distill_report = timed("distillation", distill, recipe, paths)
        sft = ["qponder_ci", "sft_nocot"]
        if recipe.demo.parallel_sft:
            timed(
                "SFT (CoT and answer-only, side by side)",
                train_stages,
                recipe,
                paths,
                sft,
                1,
                progress,
            )
        else:
            for stage in sft:
                timed(f"SFT {stage}", train_stages, recipe, paths, [stage], 2, progress)
        timed("GRPO", train_stages, recipe, paths, ["qponder"], 2, progress)
        results = {}
        for stage in STAGES:
            results[stage] = timed(f"evaluation of {stage}", evaluate, recipe, paths, stage)
        consistency = timed("consistency judge", measure_consistency, recipe, paths)
    stages = {
        s: {
            "srcc": results[s]["srcc"],
            "plcc": results[s]["plcc"],
            "parse_failures": results[s]["parse_failures"],
            "consistency": consistency[s]["consistency"],
            "n": results[s]["n"],
            "n_judged": consistency[s]["n_judged"],
            "srcc_ci95": (results[s].get("ci95") or {}).get("srcc"),
            "srcc_expected": expected_score_srcc(read_jsonl(paths.eval(s) / "predictions.jsonl")),
            "model": str(paths.model(s)),
        }
        for s in STAGES
    }
    summary: dict[str, Any] = {
        "stages": stages,
        "models": {
            "qponder_ci": str(paths.model("qponder_ci")),
            "qponder": str(paths.model("qponder")),
        },
        "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_gib": round(memory.peak_bytes / 2**30, 3),
        "stage_seconds": timings,
        "quick": quick,
        "distillation": {
            k: distill_report.get(k)
            for k in ("kept", "rejected", "rejected_by_reason", "teacher_vs_mos")
        },
    }
    summary["targets"] = check_targets(summary)
    write_json_atomic(paths.root / "summary.json", summary)
    write_report(paths, recipe, summary)
    _say(f"done in {summary['wall_s']:.0f} s; report: {paths.root / 'report.md'}")
    return summary


__all__ = [
    "STAGES",
    "DemoPaths",
    "PeakMemory",
    "check_targets",
    "consistency_gaps",
    "demo_recipe",
    "run_demo",
]
