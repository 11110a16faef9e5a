"""``qponder eval``: score IQA benchmarks and write an auditable run directory.

``RUN/`` receives:

- ``run_config.json``: model, backend, eval and model settings, prompt, and a hash of the
  settings that decide the predictions. A resumed run must have the same hash.
- ``environment.json``: versions, device, git commit.
- ``predictions.jsonl``: one row per image, appended and flushed per batch:
  ``{id, dataset, image, mos, score, expected_score, reasoning, error, text}`` (plus
  ``samples, score_mean, score_std`` with sampling).
- ``summary.json`` (``{"datasets": {NAME: {...}}, ...}``), ``report.md`` and one
  ``scatter-NAME.png`` per dataset (see :mod:`qponder.evaluation.report`).

Under ``accelerate launch`` each process scores a contiguous shard of the pending images:
the main process into ``predictions.jsonl``, process N into ``predictions.partN.jsonl``;
the main process merges the parts and writes the summary
(:func:`qponder.inference.parallel.score_in_shards`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from qponder.config import EvalConfig, ModelConfig
from qponder.data.distortion_labels import distortion_truth
from qponder.errors import QponderError
from qponder.inference.parallel import (
    RowKey,
    ShardedRun,
    on_main_process,
    process_state,
    score_in_shards,
    select_rows,
)
from qponder.progress import DEFAULT_INTERVAL, Progress
from qponder.prompts import PROMPT_VERSION, STUDENT_INSTRUCTION
from qponder.runfiles import (
    ENVIRONMENT,
    Journal,
    RunFileError,
    check_fresh_or_resume,
    check_resume,
    config_hash,
    environment_info,
    lock_run_dir,
    read_json,
    read_jsonl,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RUN_CONFIG = "run_config.json"
# Settings that do not change any prediction: they may differ when a run is resumed
# (--limit can grow a run, --batch-size can adapt to memory, bootstrap only affects the
# summary, and the same served model may move to another endpoint; on_error decides only
# whether a bad label row stops the run, and a row it skips has no prediction either way).
UNHASHED_EVAL_KEYS = ("batch_size", "limit", "bootstrap", "base_url", "on_error")
UNHASHED_MODEL_KEYS = ("device_map",)


def _model_id(model: str) -> str:
    """A local checkpoint by absolute path (so resuming from another folder matches); else as given."""
    return os.path.abspath(model) if os.path.exists(model) else str(model)


def build_run_config(
    model: str,
    cfg: EvalConfig,
    model_config: ModelConfig | None,
    base_url: str | None,
    instruction: str,
) -> dict[str, Any]:
    """The run's ``run_config.json`` content, including ``config_hash``."""
    eval_cfg = dataclasses.asdict(cfg)
    model_cfg = dataclasses.asdict(model_config or ModelConfig())
    hashed = {
        "model": _model_id(str(model)),
        "backend": cfg.backend,
        "eval": {k: v for k, v in eval_cfg.items() if k not in UNHASHED_EVAL_KEYS},
        "model_config": {k: v for k, v in model_cfg.items() if k not in UNHASHED_MODEL_KEYS},
        "instruction": instruction,
    }
    digest = config_hash(hashed)
    return {
        "model": hashed["model"],
        "backend": cfg.backend,
        "base_url": base_url,
        "eval": eval_cfg,
        "model_config": model_cfg,
        "instruction": instruction,
        "prompt_version": PROMPT_VERSION if instruction == STUDENT_INSTRUCTION else None,
        "config_hash": digest,
        "hashed": hashed,
    }


def _prepare_run_dir(out: Path, run_cfg: dict[str, Any], resume: bool) -> None:
    """Check or create the run directory (main process only)."""
    existing = out / RUN_CONFIG
    preds = [p for p in out.glob("predictions*.jsonl") if p.stat().st_size]
    check_fresh_or_resume(out, bool(preds), resume)
    if resume and preds and not existing.is_file():
        raise RunFileError(
            f"{out} has predictions but no {RUN_CONFIG}; cannot check that resuming is safe"
        )
    if resume and existing.is_file():
        check_resume(out, read_json(existing).get("hashed"), run_cfg["hashed"])
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(existing, run_cfg)
    write_json_atomic(out / ENVIRONMENT, environment_info())


class EvalDataset(NamedTuple):
    """One dataset of a run: its name in the run, the samples scored, the bad label rows
    left out (``on_error="skip"``)."""

    name: str
    samples: list[Any]
    skipped_rows: int


def load_eval_datasets(
    cfg: EvalConfig, announce: Callable[[str], None] | None = None
) -> list[EvalDataset]:
    """Load each ``NAME:PATH`` of ``cfg.datasets`` (split, ``on_error`` and limit applied).

    Args:
        cfg: The datasets, split, limit and ``on_error`` policy.
        announce: Receives one line per dataset: the split selected, how (as the labels
            give it, or drawn with a seed and kept in a split file), how many samples of
            how many, the limit, the bad rows skipped. Default: logged at INFO.

    Returns:
        One :class:`EvalDataset` per spec; a name used twice gets its path's stem appended.
    """
    from qponder.data import load_dataset

    if not cfg.datasets:
        raise QponderError("no dataset: pass --dataset NAME:PATH (repeatable)")
    # the default split seed, as training uses: a drawn test split never overlaps training
    loaded = [load_dataset(spec, split=cfg.split, on_error=cfg.on_error) for spec in cfg.datasets]
    names = [ds.name for ds in loaded]
    out = []
    for ds in loaded:
        name = (
            ds.name
            if names.count(ds.name) == 1
            else f"{ds.name}:{Path(ds.spec.partition(':')[2]).stem}"
        )
        samples = ds.samples[: cfg.limit] if cfg.limit is not None else ds.samples
        (announce or logger.info)(f"{name}: {_selection_line(ds, len(samples), cfg.limit)}")
        out.append(EvalDataset(name, samples, len(ds.skipped)))
    return out


def _selection_line(ds: Any, n_scored: int, limit: int | None) -> str:
    """What :func:`load_eval_datasets` announces of one loaded dataset."""
    line = ds.describe_selection()
    if limit is not None and n_scored < len(ds.samples):
        line += f"; the first {n_scored} scored (limit {limit})"
    if ds.skipped:
        from qponder.data.labels import where

        first = ds.skipped[0]
        rows = "row" if len(ds.skipped) == 1 else "rows"
        line += (
            f"; {len(ds.skipped)} bad label {rows} skipped "
            f"(e.g. {where(first['file'], first['line'])}: {first['reason']})"
        )
    return line


def _prediction_row(name: str, sample: Any, result: Any) -> dict[str, Any]:
    d = result.to_dict()
    row = {
        "id": sample.id,
        "dataset": name,
        "image": sample.image_path,
        "mos": sample.mos,
        "score": d["score"],
        "expected_score": d["expected_score"],
        "expected_score_reason": d["expected_score_reason"],
        "reasoning": d["reasoning"],
        "error": d["error"],
        "text": d["text"],
    }
    if d["samples"]:
        row.update(samples=d["samples"], score_mean=d["score_mean"], score_std=d["score_std"])
    truth = distortion_truth(sample)
    if truth is not None:  # a labelled dataset: what the reasoning should describe
        row["distortions"] = truth.to_dict()
    return row


# One key per run: a prediction is the image of ``id`` in ``dataset`` (an id may repeat
# across datasets); for the resume, the merge of the parts and the rows summarised.
EVAL_KEY: RowKey[tuple[str, Any]] = RowKey(
    of_row=lambda row: (row["dataset"], str(row["id"])),
    of_item=lambda item: (item[0], str(item[1].id)),
)


def run_eval(
    model: str,
    cfg: EvalConfig,
    out: str | os.PathLike,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    base_url: str | None = None,
    instruction: str = STUDENT_INSTRUCTION,
    scorer: Any = None,
    judge: Any = None,
    describe_judge: Any = None,
    announce: Callable[[str], None] | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
) -> dict[str, Any]:
    """Evaluate a model on the datasets of ``cfg`` and write the run directory.

    Args:
        model: Checkpoint (``hf``/``vllm``) or served model name (``openai``).
        cfg: Datasets (``NAME:PATH``), split, limit, ``on_error`` (bad label rows: stop,
            or skip them and count them in each dataset's ``skipped_rows``), backend,
            decoding, bootstrap.
        out: The run directory.
        model_config: Loading options and the image resize policy (as in training).
        resume: Continue an interrupted run: images already in ``predictions.jsonl`` are
            skipped. Refused when the run was made with a different config.
        base_url: Endpoint of the ``openai`` backend (default: ``cfg.base_url``).
        instruction: The student instruction (the training prompt).
        scorer: A ready :class:`~qponder.inference.Scorer` (otherwise built from ``cfg``).
        judge: A consistency judge (:mod:`qponder.models.judge`): each reasoning's implied
            score is recorded in its row (``implied_score``) and every dataset's summary
            gets the consistency gap. None: no judge.
        describe_judge: A :class:`qponder.models.description_judge.DescriptionJudge`: each
            reasoning's asserted distortions are graded against the image
            (``description_grades``) and the summary gets ``description_judge``. None: none.
        announce: Receives a line per dataset saying which samples are scored and how they
            were chosen (:func:`load_eval_datasets`; on the main process). Default: logged.
        progress_interval: Seconds between two progress lines on stderr when it is not a
            terminal (a terminal gets tqdm's bar); see :class:`qponder.progress.Progress`.

    Returns:
        The summary written to ``summary.json``: ``{"datasets": {NAME: {n, n_scored, srcc,
        plcc, plcc_raw, krcc, rmse, ci95, parse_failures, parse_failure_reasons, fit, ...}},
        "model", "config_hash", ...}``. Metrics are None where no image has a valid score.

    Raises:
        QponderError: Existing predictions without ``resume``, a config mismatch on resume,
            another run using ``out``, or a bad dataset spec; under ``accelerate launch``
            on every process, not only on the main one that found it.
    """
    state = process_state()
    out = Path(out)
    base_url = base_url or cfg.base_url
    run_cfg = build_run_config(model, cfg, model_config, base_url, instruction)
    locks: list[Any] = []
    skipped: dict[str, int] = {}  # dataset -> bad label rows left out (on_error="skip")

    def setup() -> list[tuple[str, Any]]:  # the main process, before anything is read
        locks.append(lock_run_dir(out))  # one run per directory
        _prepare_run_dir(out, run_cfg, resume)
        datasets = load_eval_datasets(cfg, announce)
        skipped.update((d.name, d.skipped_rows) for d in datasets)
        return [(d.name, s) for d in datasets for s in d.samples]

    def shard(journal: Journal, items: list[tuple[str, Any]], main: bool) -> dict[str, int]:
        _score_shard(journal, items, progress_interval if main else None, model, cfg,
                     model_config, base_url, instruction, scorer)  # fmt: skip
        return {}

    try:
        run = score_in_shards(out / PREDICTIONS, setup, Journal, EVAL_KEY, shard, state)
        return on_main_process(
            state, lambda: _summarise(out, run, run_cfg, cfg, judge, describe_judge, skipped)
        )
    finally:
        for lock in locks:
            lock.close()


def _summarise(
    out: Path,
    run: ShardedRun,
    run_cfg: dict[str, Any],
    cfg: EvalConfig,
    judge: Any,
    describe_judge: Any,
    skipped: dict[str, int],
) -> dict[str, Any]:
    """Annotate the run's rows (judges), then write the summary, report and plots (each
    dataset's ``skipped_rows`` from ``skipped``)."""
    from qponder.evaluation.report import write_report_files

    rows = select_rows(read_jsonl(out / PREDICTIONS), run.items, EVAL_KEY)
    changed = judge is not None and _judge_rows(rows, judge)
    changed = (describe_judge is not None and _grade_rows(rows, describe_judge)) or changed
    if changed:  # record the annotations, so a resumed run annotates only new rows
        _rewrite_predictions(out, rows)
    meta = {
        "model": run_cfg["model"],
        "backend": cfg.backend,
        "split": cfg.split,
        "limit": cfg.limit,
        "samples": cfg.samples,
        "config_hash": run_cfg["config_hash"],
        "processes": run.processes,
        "shard_sizes": run.shard_sizes,  # images each process scored in this run
    }
    extra = {name: {"skipped_rows": n} for name, n in skipped.items()}
    return write_report_files(
        out, rows, n_resamples=cfg.bootstrap, seed=cfg.seed, meta=meta, dataset_meta=extra
    )


def _judge_rows(rows: list[dict[str, Any]], judge: Any) -> bool:
    """Give every row with a parsed score and a reasoning the score its reasoning implies
    (``implied_score``, read by ``judge`` without the image or the answer)."""

    def annotate(fresh: list[dict[str, Any]]) -> None:
        todo = [
            r for r in fresh if r.get("score") is not None and (r.get("reasoning") or "").strip()
        ]
        for r in fresh:
            r["implied_score"] = None  # no answer or no reasoning: nothing to compare
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            implied = judge.implied_scores([r["reasoning"] for r in chunk])
            for row, value in zip(chunk, implied, strict=True):
                row["implied_score"] = value

    return _annotate_rows(rows, "implied_score", annotate)


def _grade_rows(rows: list[dict[str, Any]], grader: Any) -> bool:
    """Give every row with a reasoning the description judge's grades of what it asserts
    (``description_grades``: ``{grades: {kind: visible}, error}``)."""
    from qponder.data import load_image
    from qponder.errors import BadImageError

    def annotate(fresh: list[dict[str, Any]]) -> None:
        todo = []
        for r in fresh:
            r["description_grades"] = None  # no reasoning, or the image cannot be read
            if (r.get("reasoning") or "").strip():
                try:
                    todo.append((r, load_image(r["image"])))
                except BadImageError:
                    continue
        grades = grader.grade_many([im for _, im in todo], [r["reasoning"] for r, _ in todo])
        for (row, _), grade in zip(todo, grades, strict=True):
            row["description_grades"] = grade.to_dict()

    return _annotate_rows(rows, "description_grades", annotate)


def _annotate_rows(rows: list[dict[str, Any]], key: str, annotate: Any) -> bool:
    """Let ``annotate`` add ``key`` to the rows that lack it; True when there were any."""
    fresh = [r for r in rows if key not in r]
    if fresh:
        annotate(fresh)
    return bool(fresh)


def _rewrite_predictions(out: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``predictions.jsonl`` whole, its rows updated from ``rows`` (same keys)."""
    by_key = {EVAL_KEY.of_row(r): r for r in rows}
    everything = [by_key.get(EVAL_KEY.of_row(r), r) for r in read_jsonl(out / PREDICTIONS)]
    Journal(out / PREDICTIONS).rewrite(everything)


def _score_shard(
    journal: Journal,
    shard: list[tuple[str, Any]],
    progress_interval: float | None,
    model: str,
    cfg: EvalConfig,
    model_config: ModelConfig | None,
    base_url: str | None,
    instruction: str,
    scorer: Any,
) -> None:
    """Score ``(dataset name, sample)`` pairs into ``journal``, a batch per write;
    ``progress_interval`` None shows no progress (the processes other than the main one)."""
    from qponder.inference import Scorer

    if not shard:
        return
    if scorer is None:
        scorer = Scorer.from_config(
            model, cfg, model_config, base_url=base_url, instruction=instruction
        )
    shown = progress_interval is not None
    with Progress(len(shard), "eval", enabled=shown, interval=progress_interval or 0) as bar:
        for batch in scorer.score_items(shard, image_path=lambda item: item[1].image_path):
            journal.append([_prediction_row(name, s, r) for (name, s), r in batch])
            bar.update(len(batch))
