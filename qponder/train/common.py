"""What SFT and GRPO share: policy loading, LoRA, TRL config defaults, resume, final save."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qponder.config import ConfigError, LoraSettings, ModelConfig, Recipe, recipe_to_dict
from qponder.errors import DatasetError, QponderError
from qponder.runfiles import lock_run_dir, save_run_files

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
ADAPTER_DIR = "final-adapter"
PARTIAL_SUFFIX = ".partial"  # a folder being written; renamed when complete


def _decode_images(batch: dict[str, list]) -> dict[str, list]:
    """``datasets`` transform: image paths to RGB images through qponder's safe loader."""
    from qponder.data import load_image

    # checked whole (damaged JPEG data included) once, by usable_rows, before training
    return {**batch, "image": [load_image(p, verify_jpeg=False) for p in batch["image"]]}


def image_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of rows with an ``image`` path column, decoded on access with
    :func:`qponder.data.load_image` (EXIF orientation, palette/alpha/CMYK/16-bit to RGB, a
    pixel limit), exactly as evaluation reads images."""
    import datasets

    return datasets.Dataset.from_list(rows).with_transform(_decode_images)


def usable_rows(rows: list[dict[str, Any]], processor: Any) -> list[dict[str, Any]]:
    """The training rows whose image loads and is taken by the policy's processor; the
    others are left out with a count (logged, with a few of them and why), so that a run
    never meets them at step N.

    Raises:
        DatasetError: When no row is left.
    """
    from qponder.data import load_image
    from qponder.errors import BadImageError
    from qponder.models.processors import image_problem

    keep, dropped = [], []
    for row in rows:
        try:
            problem = image_problem(processor, load_image(row["image"]).size)
        except BadImageError as exc:
            problem = exc.reason
        if problem is None:
            keep.append(row)
        else:
            dropped.append(f"{row.get('id', row['image'])} ({problem})")
    if dropped:
        logger.warning("left out %d of %d training images the model cannot take: %s%s",
                       len(dropped), len(rows), ", ".join(dropped[:5]),
                       ", ..." if len(dropped) > 5 else "")  # fmt: skip
    if not keep:
        raise DatasetError(f"no usable training image: all {len(rows)} were left out")
    return keep


def lora_config(lora: LoraSettings, freeze_vision: bool = False):
    """Return PEFT's ``LoraConfig`` for the settings, or None when LoRA is off.

    Args:
        lora: The recipe's LoRA settings.
        freeze_vision: Keep adapters out of the vision encoder (``all-linear`` would
            otherwise also hit its MLP).
    """
    if not lora.enabled:
        return None
    from peft import LoraConfig

    kwargs: dict[str, Any] = {}
    if freeze_vision:
        kwargs["exclude_modules"] = r".*\.visual\..*|.*vision_tower.*|.*vision_model.*"
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
        **kwargs,
    )


def load_policy(recipe: Recipe) -> tuple[Any, Any, bool]:
    """Load the model to train, with its processor.

    A PEFT adapter folder given as the model is merged into its base first, so that a
    new LoRA (or full training) starts from the adapted weights and the GRPO reference
    model is the adapted one.

    Returns:
        ``(model, processor, merged_adapter)``; ``merged_adapter`` tells that the start
        point exists only in memory, so the final checkpoint must be a merged one.

    Raises:
        QponderError: When no model path is set.
    """
    from qponder.models import freeze_vision_tower, load_model

    if not recipe.model.path:
        raise QponderError("no model: pass --model PATH or set model.path in the recipe")
    model, processor = load_model(recipe.model.path, recipe.model, for_training=True)
    merged_adapter = False
    if hasattr(model, "merge_and_unload"):  # an adapter folder: train on the merged weights
        model = model.merge_and_unload()
        merged_adapter = True
    if getattr(processor, "image_processor", None) is None:
        raise QponderError(f"{recipe.model.path}: not a vision-language model (no image processor)")
    if recipe.model.freeze_vision:
        n = freeze_vision_tower(model)
        logger.info("froze %d vision-encoder tensors", n)
    return model, processor, merged_adapter


def trl_args(
    cls: type,
    opts: dict[str, Any],
    recipe: Recipe,
    out: Path,
    max_steps: int | None,
    defaults: dict[str, Any] | None = None,
):
    """Build a TRL config (``SFTConfig``/``GRPOConfig``) from a recipe section.

    Precedence: the section's ``trl`` options, then ``--max-steps``, then qponder's
    defaults (TensorBoard logging, precision from ``model.dtype``, gradient checkpointing
    from ``model.gradient_checkpointing``, the recipe seed).
    """
    import torch

    from qponder.models import resolve_dtype

    dtype = resolve_dtype(recipe.model.dtype)
    merged: dict[str, Any] = {
        "report_to": ["tensorboard"],
        "seed": recipe.seed,
        "gradient_checkpointing": recipe.model.gradient_checkpointing,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "logging_first_step": True,
        # Without CUDA, processes started by torchrun/accelerate only form a (gloo) group
        # when the Trainer is told it runs on the CPU; otherwise each trains alone.
        "use_cpu": not torch.cuda.is_available(),
        **(defaults or {}),
        **opts,
    }
    section = "grpo" if "GRPO" in cls.__name__ else "sft"
    merged["output_dir"] = str(out)
    if max_steps is not None:
        if max_steps < 1:
            raise ConfigError(f"{section}.trl.max_steps: must be >= 1, got {max_steps}")
        merged["max_steps"] = int(max_steps)
    if merged.get("gradient_checkpointing") and not merged.get("gradient_checkpointing_kwargs"):
        merged["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    try:
        return cls(**merged)
    except (ValueError, TypeError) as exc:  # TRL's own checks, before any model is loaded
        raise ConfigError(f"{section}.trl: {' '.join(str(exc).split())}") from None


TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: a checkpoint's final file


def last_checkpoint(out: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder of a run, to resume from; None when there
    is none.

    A checkpoint counts only once its final file (``trainer_state.json``, which the Trainer
    writes after the weights, optimizer and scheduler) holds valid JSON: a folder left
    half-written by a kill during save is skipped with a warning naming it, and the run
    resumes from the checkpoint before it.
    """
    import re

    if not out.is_dir():
        return None
    found = []
    for path in out.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning(
                "%s is incomplete (no readable %s: a save was interrupted); skipped, and "
                "training resumes from the checkpoint before it. Delete it when convenient.",
                path,
                TRAINER_STATE,
            )
            continue
        return str(path)
    return None


def require_model(recipe: Recipe) -> None:
    """Refuse a training run without a model to start from (before any work).

    Raises:
        ConfigError: ``model.path`` is not set.
    """
    if not recipe.model.path:
        raise ConfigError("model.path: no model to train; pass --model PATH or set model.path")


@contextmanager
def run_directory(recipe: Recipe, out: str | os.PathLike) -> Iterator[Path]:
    """Hold a training run's directory while the run lasts: created and locked (a second
    run on the same ``--out`` fails at once), then ``run_config.yaml`` and
    ``environment.json`` written. Only the main process (rank 0) locks and writes."""
    out = Path(out)
    # the process group does not exist yet (the Trainer creates it): ask the launcher
    if int(os.environ.get("RANK", "0")) != 0:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    with lock_run_dir(out):
        save_run_files(out, recipe_to_dict(recipe))  # loads again as a recipe
        yield out


def finish_training(
    trainer: Any,
    recipe: Recipe,
    validation_cfg: Any,
    out: Path,
    instruction: str | None,
    merged_adapter: bool,
) -> Path:
    """What every training stage does once its trainer is built: attach validation,
    resume from the newest complete checkpoint, train, and write ``RUN/final``."""
    from qponder.train.callbacks import build_validation

    if updates_round_in_half_precision(trainer):
        logger.warning(
            "full-parameter training of a %s model without DeepSpeed or FSDP: no fp32 master "
            "weights, so AdamW updates smaller than the weights' precision (most of them at "
            "learning rates of 1e-5 and below) are rounded away; use LoRA, a DeepSpeed "
            "config (configs/accelerate), or model.dtype=float32 (docs/training.md)",
            next(trainer.model.parameters()).dtype,
        )
    validation = build_validation(validation_cfg, out, instruction, recipe.seed)
    if validation is not None:
        validation.attach(trainer)
    resume = last_checkpoint(out)
    if resume:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    return save_final(trainer, out, recipe.model, force_merge=merged_adapter)


def updates_round_in_half_precision(trainer: Any) -> bool:
    """Whether the trainer updates bf16/fp16 weights in place with no fp32 master copy:
    full-parameter training (no PEFT adapter) of a half-precision model, without DeepSpeed
    or FSDP (which keep fp32 master weights). The HF Trainer's ``bf16=True`` only adds
    autocast; it does not upcast a model loaded in bf16."""
    import torch

    model = trainer.model
    if hasattr(model, "peft_config"):
        return False
    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(
        trainer, "is_fsdp_enabled", False
    ):
        return False
    trainable = [p for p in model.parameters() if p.requires_grad]
    return bool(trainable) and all(p.dtype in (torch.bfloat16, torch.float16) for p in trainable)


def save_final(trainer: Any, out: Path, model_cfg: ModelConfig, force_merge: bool = False) -> Path:
    """Write ``RUN/final``: a standard checkpoint with its processor.

    With LoRA, the adapter goes to ``RUN/final-adapter``; ``RUN/final`` is then the adapter
    itself (loadable through :func:`qponder.models.load_model`) or, with
    ``lora.merge_on_save`` (or ``force_merge``), the merged full model.

    ``RUN/final`` appears whole or not at all: it is written as ``RUN/final.partial`` and
    renamed once complete, so a run killed while saving leaves no ``final`` that looks
    finished (running the same command again resumes and saves it).
    """
    final = out / FINAL_DIR
    staging = out / f"{FINAL_DIR}{PARTIAL_SUFFIX}"
    main = trainer.accelerator.is_main_process
    if main and staging.exists():
        shutil.rmtree(staging)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    is_peft = hasattr(trainer.model, "peft_config")
    merge = is_peft and (model_cfg.lora.merge_on_save or force_merge)
    target = out / ADAPTER_DIR if merge else staging
    trainer.save_model(str(target))  # gathers ZeRO-3/FSDP shards; main process writes
    trainer.accelerator.wait_for_everyone()
    if main:
        if merge:
            _merge_adapter(target, staging, model_cfg)
        replace_dir(staging, final)
    trainer.accelerator.wait_for_everyone()
    return final


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` in place of ``target`` by renames (same file system):
    at every moment ``target`` is either the old folder or the new one, never half of one."""
    old = target.with_name(f"{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def _merge_adapter(adapter: Path, final: Path, model_cfg: ModelConfig) -> None:
    """Reload the starting model on the CPU in the training dtype, apply the trained
    adapter, merge, and save with the processor (whose pixel bounds are the training ones).

    The starting model is ``model_cfg.path`` as training loaded it: when that is itself an
    adapter, its merged weights (not its base) are what the new adapter was trained on.
    """
    import torch
    from peft import PeftModel

    from qponder.models import load_model, load_processor, resolve_dtype

    names = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
    cfg = ModelConfig(
        dtype=names[resolve_dtype(model_cfg.dtype)],
        device_map="cpu",
        trust_remote_code=model_cfg.trust_remote_code,
        min_pixels=model_cfg.min_pixels,
        max_pixels=model_cfg.max_pixels,
    )
    start, _ = load_model(model_cfg.path, cfg)
    model = PeftModel.from_pretrained(start, str(adapter)).merge_and_unload()
    processor = load_processor(adapter, cfg)
    model.save_pretrained(final)
    processor.save_pretrained(final)
    logger.info("merged LoRA adapter %s into %s", adapter, final)
