"""The training supervisor: each training stage as a subprocess that runs its ``qponder sft``
/ ``qponder grpo`` command through the demo's worker (:mod:`qponder.demo.worker`), several
side by side, CPU threads handed on when one finishes, a progress bar per stage labelled
with it (drawn for the last time when the stage ends), and failures reported with the
stage's log."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from qponder.config import Recipe
from qponder.data import load_dataset
from qponder.demo.paths import DemoPaths
from qponder.errors import RunFailedError
from qponder.runfiles import write_text_atomic


def stage_command(paths: DemoPaths, stage: str) -> list[str]:
    """The arguments of the ``qponder`` command that trains ``stage`` (after ``qponder``):
    what ``report.md`` shows, and what :func:`worker_command` runs."""
    common = ["--config", str(paths.recipe), "--out", str(paths.run(stage))]
    if stage == "qponder":
        cmd = ["grpo", *common, "--dataset", paths.dataset, "--split", "train",
               "--model", str(paths.model("qponder_ci"))]  # fmt: skip
    else:
        cmd = ["sft", *common, "--data", str(paths.cold), "--model", str(paths.tiny)]
        if stage == "sft_nocot":
            cmd.append("--no-cot")
    return cmd


def worker_command(paths: DemoPaths, stage: str) -> list[str]:
    """The command line of ``stage``'s training subprocess: its :func:`stage_command` through
    the demo's worker, which also follows ``DIR/logs/<stage>.threads``."""
    worker = [sys.executable, "-m", "qponder.demo.worker"]
    return [*worker, *stage_command(paths, stage), "--threads-file", str(paths.threads(stage))]


def planned_steps(trl: dict[str, Any], n_rows: int, grpo: bool = False) -> int:
    """Optimizer steps a TRL run will take on ``n_rows`` examples (cold-start rows for SFT,
    prompts for GRPO) on one process: ``max_steps`` when set, else from the epochs. A GRPO
    batch counts completions, ``num_generations`` per prompt.

    Example:
        >>> planned_steps({"per_device_train_batch_size": 8, "num_train_epochs": 3}, 100)
        39
        >>> planned_steps({"per_device_train_batch_size": 8, "num_train_epochs": 1.5}, 100)
        20
        >>> planned_steps({"per_device_train_batch_size": 16, "num_generations": 4,
        ...                "num_train_epochs": 1}, 100, grpo=True)
        25
        >>> planned_steps({"max_steps": 80, "num_train_epochs": 3}, 100)
        80
    """
    if int(trl.get("max_steps", -1)) > 0:
        return int(trl["max_steps"])
    per_step = int(trl.get("per_device_train_batch_size", 8)) * int(
        trl.get("gradient_accumulation_steps", 1)
    )
    items = n_rows * (int(trl.get("num_generations", 8)) if grpo else 1)
    return math.ceil(float(trl.get("num_train_epochs", 3)) * math.ceil(items / per_step))


def n_examples(paths: DemoPaths, stage: str) -> int:
    """What an epoch of ``stage`` goes through: GRPO's training images, SFT's cold-start rows."""
    if stage == "qponder":
        return len(list(load_dataset(paths.dataset, "train")))
    return sum(1 for line in paths.cold.read_text().splitlines() if line.strip())


def stage_steps(recipe: Recipe, paths: DemoPaths, stage: str) -> int:
    """The optimizer steps ``stage``'s training will take (its progress bar's total)."""
    section = recipe.grpo if stage == "qponder" else recipe.sft
    return planned_steps(section.trl, n_examples(paths, stage), grpo=stage == "qponder")


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


def _last_step(run: Path) -> int:
    """The last step logged to ``run/metrics.jsonl`` so far (0 before the first)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    for line in reversed(path.read_text().splitlines()):
        try:
            return int(json.loads(line).get("step", 0))
        except (json.JSONDecodeError, AttributeError):
            continue  # a line being written
    return 0


STAGE_LABELS: dict[str, str] = {
    "qponder_ci": "CoT SFT (qponder_ci)",
    "sft_nocot": "answer-only SFT (sft_nocot)",
    "qponder": "GRPO (qponder)",
}
"""Each training stage's progress-bar label: the pipeline stage, then the demo's name for it
(that of its log, ``DIR/logs/<stage>.log``, and of its row in the summary)."""


class _StageBar(tqdm):
    """A progress bar that can be frozen: every drawing after :meth:`freeze` (tqdm draws a
    bar once more when it closes) shows the figures of that moment, not a clock that runs
    on after the stage has ended."""

    _frozen: dict[str, Any] | None = None

    @property
    def format_dict(self) -> dict[str, Any]:
        return self._frozen if self._frozen is not None else super().format_dict

    def freeze(self) -> None:
        """Keep the figures the bar shows now (steps, elapsed time, rate, postfix)."""
        self._frozen = dict(super().format_dict)


class StageBars:
    """One progress bar per training stage, labelled with the stage (:data:`STAGE_LABELS`).

    A running stage's bar shows its last logged step; a finished stage's bar is drawn once
    more, at its last step and marked ``done`` or ``failed``, and then left alone: when all
    bars close together it shows the same figures. (Redrawn every second, a finished bar's
    clock kept running, in a terminal or a log, for as long as the other stage trained: 18
    minutes of ``sft_nocot``.) Bars close in the order they opened, which is also the order
    of their screen lines, so that tqdm leaves each on its own line.

    Args:
        totals: Stage -> its planned steps (:func:`stage_steps`), in the bars' order.
        enabled: False: no bars (``--no-progress``).
    """

    def __init__(self, totals: dict[str, int], enabled: bool = True) -> None:
        width = max(len(STAGE_LABELS[s]) for s in totals)
        self._bars = {
            s: _StageBar(
                total=n, desc=STAGE_LABELS[s].ljust(width), unit="step", disable=not enabled
            )
            for s, n in totals.items()
        }
        self.finished: set[str] = set()

    def show(self, stage: str, step: int) -> None:
        """Redraw ``stage``'s bar at ``step`` (its elapsed time too); nothing once finished."""
        if stage in self.finished:
            return
        bar = self._bars[stage]
        bar.n = step
        bar.refresh()

    def finish(self, stage: str, step: int, ok: bool) -> None:
        """Draw ``stage``'s bar a last time, at ``step``, marked done (``ok``) or failed."""
        if stage in self.finished:
            return
        self.finished.add(stage)
        bar = self._bars[stage]
        bar.n = step
        bar.set_postfix_str("done" if ok else "failed", refresh=False)
        bar.refresh()
        bar.freeze()

    def close(self) -> None:
        """Close every bar, in the order they opened."""
        for bar in self._bars.values():
            bar.close()


def _follow(paths: DemoPaths, procs: dict[str, subprocess.Popen], bars: StageBars,
            budget: int) -> None:  # fmt: skip
    """Poll the running stages every second until all have ended: move their bars, close a
    finished stage's bar, and hand the threads it frees to the stages still training."""
    running = set(procs)
    while running:
        time.sleep(1.0)
        still = {s for s in running if procs[s].poll() is None}
        for stage in running - still:
            bars.finish(stage, _last_step(paths.run(stage)), ok=procs[stage].returncode == 0)
        if still and still != running:  # hand the freed threads on
            for stage, share in thread_shares(budget, still).items():
                write_text_atomic(paths.threads(stage), f"{share}\n")
        running = still
        for stage in sorted(running):
            bars.show(stage, _last_step(paths.run(stage)))


def train_stages(
    recipe: Recipe, paths: DemoPaths, stages: Sequence[str], threads: int, progress: bool = True
) -> None:
    """Train ``stages`` side by side as subprocesses (:func:`worker_command`), each with
    ``threads`` torch threads, logging to ``DIR/logs/<stage>.log``, each with its progress
    bar (:class:`StageBars`); stages whose ``final/`` exists are skipped. When a stage
    finishes, the stages still training share its threads (through
    ``DIR/logs/<stage>.threads``, see :class:`qponder.demo.worker.ThreadsFileCallback`).

    Raises:
        QponderError: A stage failed; the message names its log.
    """
    todo = [s for s in stages if not (paths.model(s) / "config.json").is_file()]
    if not todo:
        return
    paths.logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    bars = StageBars({s: stage_steps(recipe, paths, s) for s in todo}, enabled=progress)
    try:
        for stage in todo:
            logs.append(open(paths.log(stage), "a", encoding="utf-8"))  # noqa: SIM115
            cmd = worker_command(paths, stage)
            logs[-1].write(f"$ {' '.join(cmd)}\n")
            logs[-1].flush()
            write_text_atomic(paths.threads(stage), f"{threads}\n")
            procs[stage] = subprocess.Popen(cmd, stdout=logs[-1], stderr=subprocess.STDOUT, env=env)
        _follow(paths, procs, bars, threads * len(todo))
    except BaseException:
        for proc in procs.values():
            proc.terminate()
        raise
    finally:
        for proc in procs.values():
            proc.wait()
        bars.close()
        for log in logs:
            log.close()
    failed = [s for s, p in procs.items() if p.returncode != 0]
    if failed:
        names = ", ".join(str(paths.log(s)) for s in failed)
        raise RunFailedError(f"demo: training of {', '.join(failed)} failed; see {names}")


__all__ = [
    "STAGE_LABELS",
    "StageBars",
    "n_examples",
    "planned_steps",
    "stage_command",
    "stage_steps",
    "thread_shares",
    "train_stages",
    "worker_command",
]
