"""Trainer callbacks: ``RUN/metrics.jsonl`` logging, and validation SRCC/PLCC with a best
checkpoint.

Both work with TRL's SFTTrainer and GRPOTrainer (any ``transformers.Trainer``), on one
process or under accelerate. Validation scores images through the shared inference engine
(:class:`qponder.inference.Scorer`) and the shared metrics (:mod:`qponder.evaluation.metrics`),
so a validation SRCC means what ``qponder eval`` means by it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from qponder.config import ValidationConfig
from qponder.runfiles import Journal, read_jsonl, write_json_atomic

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object to a metrics file (NaN written as null), durably."""
    with Journal(path) as journal:
        journal.open()
        journal.append({k: _jsonable(v) for k, v in record.items()})


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file (a torn last line ignored); absent gives ``[]``."""
    return read_jsonl(path)


class MetricsJsonlCallback(TrainerCallback):
    """Write every logging step to ``RUN/metrics.jsonl``: one JSON object with ``step`` and
    what the trainer logged (``loss``, ``learning_rate``, GRPO's ``rewards/<name>/mean``, ...).

    On resume, records after the checkpoint's step (logged before the interruption and
    about to be logged again) are dropped first, so each step appears once.

    Args:
        path: The metrics file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= state.global_step]
        Journal(self.path).rewrite(kept)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_metrics(self.path, {"step": state.global_step, **logs})


def _score(result: Any) -> float | None:
    score = getattr(result, "score", None)
    return None if score is None or not math.isfinite(float(score)) else float(score)


def score_paths(scorer: Any, paths: list[str]) -> list[float | None]:
    """Greedy scores of image files through a :class:`qponder.inference.Scorer`
    (None where the answer did not parse or the image could not be read)."""
    scores: list[float | None] = []
    for batch in scorer.score_items(paths, image_path=str):
        scores.extend(_score(result) for _, result in batch)
    return scores


def validation_metrics(scores: Sequence[float | None], mos: Sequence[float]) -> dict[str, float]:
    """SRCC and PLCC over the parsed answers, and the share of unparsable ones.

    Args:
        scores: Parsed scores, None where parsing failed.
        mos: Ground truth, aligned with ``scores``.

    Returns:
        ``{"val/srcc", "val/plcc", "val/parse_failure_rate", "val/n"}``; a correlation is
        NaN when fewer than three answers parsed or the scores are constant.
    """
    from qponder.evaluation.metrics import plcc, srcc

    pairs = [(s, m) for s, m in zip(scores, mos, strict=True) if s is not None]
    n = len(scores)
    out = {"val/parse_failure_rate": (n - len(pairs)) / n if n else float("nan"), "val/n": n}
    if len(pairs) >= 3 and len({s for s, _ in pairs}) > 1:
        pred, target = [p for p, _ in pairs], [m for _, m in pairs]
        out["val/srcc"] = float(srcc(pred, target))
        out["val/plcc"] = float(plcc(pred, target))  # a failed fit falls back to raw PLCC
    else:
        out["val/srcc"] = out["val/plcc"] = float("nan")
    return out


def _default_scorer(model: Any, processor: Any, cfg: ValidationConfig, instruction: str | None):
    from qponder.inference import Scorer

    kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens}
    if instruction is not None:
        kwargs["instruction"] = instruction
    return Scorer(model, processor=processor, **kwargs)


class ValidationCallback(TrainerCallback):
    """Every ``cfg.every_n_steps`` (and at the end), greedy-score a validation split and log
    ``val/srcc``, ``val/plcc``, ``val/parse_failure_rate`` through the trainer's logging, so
    ``RUN/metrics.jsonl`` and every ``report_to`` tracker get them; with ``cfg.keep_best``,
    save the best model by SRCC to ``RUN/best/``.

    Under accelerate every process scores its share of the images and the results are
    gathered, so every process takes the same best-checkpoint decision.

    Args:
        cfg: The validation settings.
        samples: ``(image_path, mos)`` pairs to score.
        out: The run directory.
        instruction: The student instruction (the scorer's default when None).
        scorer_factory: ``f(model, processor, cfg, instruction) -> scorer`` with
            :class:`qponder.inference.Scorer`'s ``score_items``; a ``Scorer`` by default.
    """

    def __init__(
        self,
        cfg: ValidationConfig,
        samples: Sequence[tuple[str, float]],
        out: str | Path,
        instruction: str | None = None,
        scorer_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.samples = list(samples)
        self.out = Path(out)
        self.instruction = instruction
        self.scorer_factory = scorer_factory or _default_scorer
        self.trainer: Any = None
        self.best_srcc = -math.inf
        self._last_step = -1

    def attach(self, trainer: Any) -> ValidationCallback:
        """Register with ``trainer`` (which saves the best checkpoint and owns the model)."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        # a resumed run restores its log history: keep the best SRCC seen before
        seen = [r["val/srcc"] for r in state.log_history if _finite(r.get("val/srcc"))]
        if seen:
            self.best_srcc = max(seen)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        # the last step validates here, not in on_train_end: trackers close their runs in
        # their own on_train_end, which runs before this callback's
        last = bool(state.max_steps) and step >= state.max_steps
        if last or (self.cfg.every_n_steps > 0 and step % self.cfg.every_n_steps == 0):
            self.validate(state)

    def on_train_end(self, args, state, control, **kwargs):
        if state.global_step != self._last_step:
            self.validate(state)

    def validate(self, state: Any) -> dict[str, float]:
        """Score the split now, log the metrics and keep the best checkpoint."""
        from accelerate.utils import gather_object

        trainer = self.trainer
        accelerator = trainer.accelerator
        model = trainer.model
        processor = trainer.processing_class  # the scorer pads per call: it stays as it is
        was_training = model.training
        model.eval()
        try:
            with accelerator.split_between_processes(list(enumerate(self.samples))) as shard:
                scorer = self.scorer_factory(model, processor, self.cfg, self.instruction)
                scores = score_paths(scorer, [path for _, (path, _) in shard]) if shard else []
                local = [(i, s) for (i, _), s in zip(shard, scores, strict=True)]
        finally:
            model.train(was_training)
        merged = dict(gather_object(local))
        scores = [merged.get(i) for i in range(len(self.samples))]
        metrics = validation_metrics(scores, [m for _, m in self.samples])
        self._last_step = state.global_step
        self._log(state, metrics)
        if accelerator.is_main_process:
            logger.info("validation at step %d: %s", state.global_step, _fmt(metrics))
        if (
            self.cfg.keep_best
            and _finite(metrics["val/srcc"])
            and metrics["val/srcc"] > self.best_srcc
        ):
            self.best_srcc = metrics["val/srcc"]
            best = self.out / BEST_DIR
            trainer.save_model(str(best))
            if accelerator.is_main_process:
                best.mkdir(parents=True, exist_ok=True)
                write_json_atomic(best / "validation.json", {"step": state.global_step, **metrics})
        return metrics

    def _log(self, state: Any, metrics: dict[str, float]) -> None:
        """Hand the metrics to the trainer's own logging: its log history and every
        callback's ``on_log``, so each ``report_to`` target (TensorBoard, wandb, trackio,
        MLflow, ...) records them, and ``metrics.jsonl`` through :class:`MetricsJsonlCallback`.

        The callback handler is called directly rather than ``trainer.log``, whose TRL
        versions fold the trainer's running averages into what they log (and reset them).
        """
        trainer = self.trainer
        state.log_history.append({**metrics, "step": state.global_step})
        # the handler's on_log clears control.should_log: keep the trainer's own log of
        # this step (its loss), due right after the step-end callbacks
        should_log = trainer.control.should_log
        trainer.control = trainer.callback_handler.on_log(
            trainer.args, state, trainer.control, dict(metrics)
        )
        trainer.control.should_log = should_log


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(
        f"{k.split('/')[-1]}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
    )


def validation_samples(cfg: ValidationConfig, seed: int = 0) -> list[tuple[str, float]]:
    """Load the validation split of ``cfg.dataset`` as ``(image_path, mos)`` pairs, at most
    ``cfg.limit`` of them (a seeded random subset)."""
    from qponder.data import load_dataset

    data = load_dataset(cfg.dataset, cfg.split)
    samples = [(s.image_path, float(s.mos)) for s in data]
    if cfg.limit is not None and len(samples) > cfg.limit:
        samples = random.Random(seed).sample(samples, cfg.limit)
    return samples


def build_validation(cfg: ValidationConfig, out: Path, instruction: str | None, seed: int = 0):
    """The :class:`ValidationCallback` of a config, or None when validation is off."""
    if not cfg.dataset:
        return None
    samples = validation_samples(cfg, seed)
    if not samples:
        from qponder.errors import DatasetError

        raise DatasetError(f"validation dataset {cfg.dataset!r} split {cfg.split!r} is empty")
    return ValidationCallback(cfg, samples, out, instruction=instruction)
