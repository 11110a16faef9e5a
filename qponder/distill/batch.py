"""Distillation through a batch API: write the teacher requests as an OpenAI Batch input
file, run them wherever is cheapest (``vllm run-batch``, a hosted batch API), and read the
results back through the same filter and journals as a live ``qponder distill``.

- :func:`export_batch` (``qponder distill --export-batch requests.jsonl``): one line per
  image not yet in the journals, ``{"custom_id", "method": "POST", "url":
  "/v1/chat/completions", "body": {model, messages, n, temperature, max_tokens}}``, the
  messages exactly those the live teacher sends (system prompt, the image as a lossless PNG
  data URL, the blind or MOS-guided prompt). An image that cannot be read is rejected as
  ``bad_image`` right away, as a live run does.
- :func:`import_batch` (``qponder distill --import-batch results.jsonl``): each result line
  ``{"custom_id", "response": {"status_code", "body": <chat completion>}, "error"}`` is
  judged like a live reply and lands in the kept or rejected journal. A failed line (an
  ``error``, a status other than 200, a body with no usable choice) is a ``teacher_error``
  reject, retried by ``--retry-errors`` on the next export or live run; a line for an image
  already in the journals (a duplicate) is skipped; an image with no line stays pending.

The journals, the report and the resume check are the live run's (:mod:`qponder.distill.
runner`), with the teacher named ``openai:<model>`` as a live run against the same model is:
a batch can be imported into a file a live run started, and a live run can finish what a
batch left.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qponder.config import ConfigError, Recipe
from qponder.distill.filtering import BAD_IMAGE, TEACHER_ERROR, judge_replies
from qponder.distill.runner import (
    Outputs,
    check_settings,
    dataset_root,
    load_samples,
    open_outputs,
    reject_record,
    run_settings,
    verdict_record,
)
from qponder.errors import BadImageError
from qponder.prompts import load_prompts, teacher_prompt
from qponder.runfiles import Journal, RunFileError, read_jsonl, write_json_atomic

logger = logging.getLogger(__name__)

CHAT_URL = "/v1/chat/completions"


def _teacher_name(recipe: Recipe) -> str:
    if not recipe.distill.model:
        raise ConfigError(
            "distill.model: a batch names the served model in every request; pass --model NAME"
        )
    return f"openai:{recipe.distill.model}"


def _start(recipe: Recipe, outputs: Outputs, name: str, split: Any, root: Any) -> dict:
    """Check the settings against the files and write the report's start."""
    prompts = load_prompts(recipe.prompts)
    settings = run_settings(recipe, _teacher_name(recipe), prompts, name, split, root)
    check_settings(outputs.paths, settings)
    return {"out": str(outputs.paths.kept), "rejected_file": str(outputs.paths.rejected),
            "settings": settings}  # fmt: skip


def export_batch(
    recipe: Recipe,
    dataset: Any,
    requests: str | os.PathLike,
    split: str | None = "train",
    out: str | os.PathLike = "cold_start.jsonl",
    limit: int | None = None,
    *,
    retry_errors: bool = False,
) -> dict[str, Any]:
    """Write the requests of the images not yet distilled into ``out`` as a Batch input file.

    Args:
        recipe: The run's recipe (``distill`` section: model, mode, samples, temperature,
            max_tokens, max_side; ``prompts``).
        dataset: A ``NAME:PATH`` spec, a loaded dataset, or a list of samples.
        requests: The Batch input file to write (replaced whole).
        split: Split to distil.
        out: The kept records' JSONL whose journals say what is done.
        limit: At most the first ``limit`` samples.
        retry_errors: Export the images rejected with ``teacher_error`` again.

    Returns:
        ``{"requests": n, "bad_images": n, "already_done": n, "file": path}``.

    Raises:
        ConfigError: No ``distill.model``, or the journals were made with other settings.
    """
    from qponder.data import load_image
    from qponder.distill.openai_teacher import chat_messages, encode_image

    cfg = recipe.distill
    prompts = load_prompts(recipe.prompts)
    name, samples = load_samples(dataset, split, limit)
    teacher = _teacher_name(recipe)
    lines, bad = [], 0
    with open_outputs(out, retry_errors) as outputs:
        report = _start(recipe, outputs, name, split, dataset_root(dataset))
        pending = [s for s in samples if str(s.id) not in outputs.done]
        for sample in pending:
            try:
                image = load_image(sample.image_path, max_side=cfg.max_side)
            except BadImageError as exc:
                outputs.commit(reject_record(sample, teacher, prompts, BAD_IMAGE, str(exc)), False)
                bad += 1
                continue
            mos = float(sample.mos) if cfg.mode == "guided" else None
            messages = chat_messages(prompts.teacher_system, teacher_prompt(prompts, cfg.mode, mos),
                                     encode_image(image, cfg.max_side))  # fmt: skip
            body = {"model": cfg.model, "messages": messages, "n": cfg.samples,
                    "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}  # fmt: skip
            lines.append({"custom_id": str(sample.id), "method": "POST", "url": CHAT_URL,
                          "body": body})  # fmt: skip
        Journal(requests).rewrite(lines)  # whole or not at all
        report.update(status="exported", **outputs.tally.summary())
        write_json_atomic(outputs.paths.report, report)
    return {"requests": len(lines), "bad_images": bad, "already_done": len(samples) - len(pending),
            "file": str(requests)}  # fmt: skip


def _as_attributes(value: Any) -> Any:
    """JSON data as nested objects with attributes (what :func:`replies_from_response`
    reads), lists kept as lists."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): _as_attributes(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_as_attributes(v) for v in value]
    return value


def _result_replies(line: dict[str, Any]) -> tuple[list[Any] | None, str]:
    """The replies of one result line, or None and why the line failed.

    Only what qponder reads of a chat completion is checked (its choices, their message
    and finish reason): batch services leave out or add other fields (``created``,
    ``system_fingerprint``, ...), and a strict schema would reject good replies for them.
    """
    from qponder.distill.openai_teacher import replies_from_response

    if line.get("error"):
        return None, f"batch error: {json.dumps(line['error'])[:300]}"
    response = line.get("response") or {}
    status = response.get("status_code")
    if status != 200:
        return None, f"batch status {status}: {json.dumps(response.get('body'))[:300]}"
    body = response.get("body")
    if not isinstance(body, dict):
        return None, f"batch body is not a chat completion: {json.dumps(body)[:300]}"
    try:
        return replies_from_response(_as_attributes(body)), ""
    except ValueError as exc:  # no choices, or none with a text message
        return None, f"batch body is not a usable chat completion: {str(exc)[:300]}"


def import_batch(
    recipe: Recipe,
    dataset: Any,
    results: str | os.PathLike,
    split: str | None = "train",
    out: str | os.PathLike = "cold_start.jsonl",
    limit: int | None = None,
) -> dict[str, Any]:
    """Judge a Batch output file's replies and append them to ``out``'s journals.

    Args:
        recipe: The recipe the requests were exported with (same settings are checked).
        dataset: The dataset the requests were made from.
        results: The Batch output file (``custom_id`` + ``response`` or ``error`` per line).
        split: Split of the dataset.
        out: The kept records' JSONL.
        limit: At most the first ``limit`` samples.

    Returns:
        The report, also written to ``FILE.report.json``, with ``batch``: ``{lines, kept,
        rejected, failed, duplicates, unknown, pending}``.

    Raises:
        RunFileError: ``results`` is missing, or a line other than a torn last one is not a
            JSON object (named by file and line).
        ConfigError: No ``distill.model``, or the journals were made with other settings.
    """
    cfg = recipe.distill
    prompts = load_prompts(recipe.prompts)
    name, samples = load_samples(dataset, split, limit)
    teacher = _teacher_name(recipe)
    if not Path(results).is_file():
        raise RunFileError(f"{results}: no such batch results file")
    by_id = {str(s.id): s for s in samples}
    counts = dict.fromkeys(("lines", "kept", "rejected", "failed", "duplicates", "unknown"), 0)
    with open_outputs(out) as outputs:
        report = _start(recipe, outputs, name, split, dataset_root(dataset))
        for line in read_jsonl(results):
            counts["lines"] += 1
            key = str(line.get("custom_id"))
            sample = by_id.get(key)
            if sample is None:
                counts["unknown"] += 1
                continue
            if key in outputs.done:
                counts["duplicates"] += 1
                continue
            replies, why = _result_replies(line)
            if replies is None:
                outputs.commit(reject_record(sample, teacher, prompts, TEACHER_ERROR, why), False)
                counts["failed"] += 1
                continue
            verdict = judge_replies(replies, float(sample.mos), cfg.tolerance, cfg.mode)
            record, kept = verdict_record(sample, teacher, prompts, verdict)
            outputs.commit(record, kept)
            counts["kept" if kept else "rejected"] += 1
        counts["pending"] = sum(1 for s in samples if str(s.id) not in outputs.done)
        status = "complete" if counts["pending"] == 0 else "pending"
        report.update(status=status, total=len(samples), **outputs.tally.summary(), batch=counts)
        write_json_atomic(outputs.paths.report, report)
    if counts["unknown"]:
        logger.warning("%s: %d line(s) name no image of this dataset", results, counts["unknown"])
    return report
