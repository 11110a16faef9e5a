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

Under ``accelerate launch`` each process scores a contiguous shard of the pending images
into ``predictions.partN.jsonl``; the main process merges the parts and writes the summary.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from qponder.config import EvalConfig, ModelConfig
from qponder.data.distortion_labels import distortion_truth
from qponder.errors import QponderError
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
# summary, and the same served model may move to another endpoint).
UNHASHED_EVAL_KEYS = ("batch_size", "limit", "bootstrap", "base_url")
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
    for p in preds:
        Journal(p).recover()
    write_json_atomic(existing, run_cfg)
    write_json_atomic(out / ENVIRONMENT, environment_info())


def load_eval_datasets(cfg: EvalConfig) -> list[tuple[str, list[Any]]]:
    """Load each ``NAME:PATH`` of ``cfg.datasets`` (split and limit applied).

    Returns:
        ``[(name, samples), ...]``; a name used twice gets its path's stem appended.
    """
    from qponder.data import load_dataset

    if not cfg.datasets:
        raise QponderError("no dataset: pass --dataset NAME:PATH (repeatable)")
    # the default split seed, as training uses: a drawn test split never overlaps training
    loaded = [load_dataset(spec, split=cfg.split) for spec in cfg.datasets]
    names = [ds.name for ds in loaded]
    out = []
    for ds in loaded:
        name = (
            ds.name
            if names.count(ds.name) == 1
            else f"{ds.name}:{Path(ds.spec.partition(':')[2]).stem}"
        )
        samples = ds.samples[: cfg.limit] if cfg.limit is not None else ds.samples
        out.append((name, samples))
    return out


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


def _read_all_predictions(out: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(out / PREDICTIONS)
    for part in sorted(out.glob("predictions.part*.jsonl")):
        rows += read_jsonl(part)
    return rows


def _merge_parts(out: Path) -> list[int]:
    """Append the shard files' rows to predictions.jsonl (those not in it yet), then remove
    them; returns how many rows each shard held, in process order."""
    parts = sorted(out.glob("predictions.part*.jsonl"), key=lambda p: int(p.suffixes[0][5:]))
    sizes = []
    if not parts:
        return sizes
    have = {(r["dataset"], str(r["id"])) for r in read_jsonl(out / PREDICTIONS)}
    for part in parts:
        part_rows = read_jsonl(part)
        sizes.append(len(part_rows))
        rows = [r for r in part_rows if (r["dataset"], str(r["id"])) not in have]
        with Journal(out / PREDICTIONS) as journal:
            journal.open()
            journal.append(rows)
        have |= {(r["dataset"], str(r["id"])) for r in rows}
        part.unlink()
    return sizes


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
) -> dict[str, Any]:
    """Evaluate a model on the datasets of ``cfg`` and write the run directory.

    Args:
        model: Checkpoint (``hf``/``vllm``) or served model name (``openai``).
        cfg: Datasets (``NAME:PATH``), split, limit, backend, decoding, bootstrap.
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

    Returns:
        The summary written to ``summary.json``: ``{"datasets": {NAME: {n, n_scored, srcc,
        plcc, plcc_raw, krcc, rmse, ci95, parse_failures, parse_failure_reasons, fit, ...}},
        "model", "config_hash", ...}``. Metrics are None where no image has a valid score.

    Raises:
        QponderError: Existing predictions without ``resume``, a config mismatch on resume,
            another run using ``out``, or a bad dataset spec.
    """
    from qponder.inference.files import process_state

    state = process_state()
    out = Path(out)
    base_url = base_url or cfg.base_url
    run_cfg = build_run_config(model, cfg, model_config, base_url, instruction)
    lock = None
    try:
        if state.is_main_process:
            lock = lock_run_dir(out)  # before anything is read: one run per directory
            _prepare_run_dir(out, run_cfg, resume)
        state.wait_for_everyone()
        return _run(out, run_cfg, state, model, cfg, model_config, base_url, instruction, scorer,
                    judge, describe_judge)  # fmt: skip
    finally:
        if lock is not None:
            lock.close()


def _run(out, run_cfg, state, model, cfg, model_config, base_url, instruction, scorer, judge,
         describe_judge):  # fmt: skip
    """Score what is pending (each process its shard), merge, and write the summary."""
    from qponder.evaluation.report import write_report_files

    datasets = load_eval_datasets(cfg)
    selection = [(name, s) for name, samples in datasets for s in samples]
    done = {(r["dataset"], str(r["id"])) for r in _read_all_predictions(out)}
    state.wait_for_everyone()  # every process has read what exists before anyone appends
    pending = [(n, s) for n, s in selection if (n, str(s.id)) not in done]
    with state.split_between_processes(pending) as shard:
        _score_shard(shard, out, state, model, cfg, model_config, base_url, instruction, scorer)
    state.wait_for_everyone()
    if state.is_main_process:
        shards = _merge_parts(out) if state.num_processes > 1 else [len(pending)]
        wanted = {(n, str(s.id)) for n, s in selection}
        rows, seen = [], set()
        for r in read_jsonl(out / PREDICTIONS):
            key = (r["dataset"], str(r["id"]))
            if key in wanted and key not in seen:
                seen.add(key)
                rows.append(r)
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
            "processes": state.num_processes,
            "shard_sizes": shards,  # images each process scored in this run
        }
        summary = write_report_files(out, rows, n_resamples=cfg.bootstrap, seed=cfg.seed, meta=meta)
    state.wait_for_everyone()
    if not state.is_main_process:
        summary = read_json(out / "summary.json")
    return summary


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
    by_key = {(r["dataset"], str(r["id"])): r for r in rows}
    everything = [
        by_key.get((r["dataset"], str(r["id"])), r) for r in read_jsonl(out / PREDICTIONS)
    ]
    Journal(out / PREDICTIONS).rewrite(everything)


def _score_shard(
    shard, out, state, model, cfg, model_config, base_url, instruction, scorer
) -> None:
    from tqdm.auto import tqdm

    from qponder.inference import Scorer

    if not shard:
        return
    target = out / (
        PREDICTIONS if state.num_processes == 1 else f"predictions.part{state.process_index}.jsonl"
    )
    if scorer is None:
        scorer = Scorer.from_config(
            model, cfg, model_config, base_url=base_url, instruction=instruction
        )
    disable = None if state.is_main_process else True
    with (
        Journal(target) as journal,
        tqdm(total=len(shard), unit="img", desc="eval", disable=disable) as bar,
    ):
        journal.open(lock=True)
        for batch in scorer.score_items(shard, image_path=lambda item: item[1].image_path):
            journal.append([_prediction_row(name, s, r) for (name, s), r in batch])
            bar.update(len(batch))
