"""Stage 1b: supervised fine-tuning on the cold-start data (the result is Q-Ponder-CI).

A thin wrapper around TRL's ``SFTTrainer``: cold-start rows become conversational
prompt/completion pairs with an image, so the loss falls on the completion only (the
reasoning and the answer), never on the instruction or the image tokens.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from qponder.config import Recipe
from qponder.errors import DatasetError
from qponder.train.callbacks import (
    METRICS_FILE,
    MetricsJsonlCallback,
)
from qponder.train.common import (
    finish_training,
    image_dataset,
    load_policy,
    lora_config,
    require_model,
    run_directory,
    trl_args,
    usable_rows,
)

logger = logging.getLogger(__name__)

_REQUIRED = ("image", "prompt", "completion")


def _resolve_image(raw: str, base: Path) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists() and (base / path).exists():
        path = base / path
    return path


def _answer_only(row: dict[str, Any], where: str) -> str:
    """The completion of the no-CoT ablation: the answer block alone."""
    from qponder.parsing import format_answer, parse_score

    score = parse_score(row["completion"])
    if score is None and row.get("teacher_score") is not None:
        score = float(row["teacher_score"])
    if score is None:
        raise DatasetError(f"{where}: completion has no parsable score (needed for --no-cot)")
    return format_answer(score)


def read_cold_start(path: str | os.PathLike, no_cot: bool = False) -> list[dict[str, Any]]:
    """Read cold-start JSONL rows into SFT examples.

    Args:
        path: JSONL from ``qponder distill``: ``{id, image, mos, prompt, completion, ...}``;
            a relative ``image`` is looked up next to the file when it is not found as given.
        no_cot: Replace each completion by its answer block (the paper's ablation).

    Returns:
        Rows ``{"image": path, "prompt": [user turn], "completion": [assistant turn], "id"}``,
        sorted by id: a concurrent distillation writes its images in the order they finish,
        and the same data must give the same (seeded) training.

    Raises:
        DatasetError: Naming the file and line of a malformed row or a missing image.
    """
    from qponder.prompts import student_messages

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: cold-start file not found")
    rows = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        missing = [k for k in _REQUIRED if not isinstance(row.get(k), str) or not row[k]]
        if missing:
            raise DatasetError(f"{where}: missing or empty field(s) {missing}")
        image = _resolve_image(row["image"], path.parent)
        if not image.is_file():
            raise DatasetError(f"{where}: image not found: {row['image']}")
        completion = _answer_only(row, where) if no_cot else row["completion"]
        rows.append(
            {
                "id": str(row.get("id", lineno)),
                "image": str(image),
                "prompt": student_messages(row["prompt"]),
                "completion": [{"role": "assistant", "content": completion}],
            }
        )
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return sorted(rows, key=lambda r: r["id"])


def build_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of the rows whose ``image`` paths decode to RGB images on
    access, through the same loader as evaluation."""
    return image_dataset(rows)


def run(
    recipe: Recipe,
    data: str | os.PathLike,
    out: str | os.PathLike,
    max_steps: int | None = None,
    callbacks: list | None = None,
) -> Path:
    """Fine-tune ``recipe.model.path`` on cold-start data with TRL's SFTTrainer.

    Resumes from the newest ``RUN/checkpoint-N`` when there is one.

    Args:
        recipe: The run's recipe (``model`` and ``sft`` sections; ``sft.trl`` holds
            ``trl.SFTConfig`` options).
        data: Cold-start JSONL from ``qponder distill``.
        out: The run directory.
        max_steps: Overrides ``sft.trl.max_steps``.
        callbacks: Extra ``transformers.TrainerCallback`` objects.

    Returns:
        ``RUN/final``: a checkpoint (or LoRA adapter) with its processor, loadable by
        every qponder command.
    """
    from trl import SFTConfig, SFTTrainer

    require_model(recipe)
    with run_directory(recipe, out) as out:
        rows = read_cold_start(data, no_cot=recipe.sft.no_cot)  # checked before anything loads
        # the TRL config first: under DeepSpeed ZeRO-3 it makes from_pretrained load sharded
        args = trl_args(
            SFTConfig, recipe.sft.trl, recipe, out, max_steps, defaults={"max_length": None}
        )
        model, processor, merged_adapter = load_policy(recipe)
        train = build_dataset(usable_rows(rows, processor))  # never an unusable image at step N
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train,
            processing_class=processor,
            peft_config=lora_config(recipe.model.lora, recipe.model.freeze_vision),
            callbacks=[
                MetricsJsonlCallback(out / METRICS_FILE),
                *(callbacks or []),
            ],
        )
        instruction = train[0]["prompt"][0]["content"][-1]["text"]
        return finish_training(
            trainer, recipe, recipe.sft.validation, out, instruction, merged_adapter
        )
