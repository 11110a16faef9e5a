"""Stage 2: GRPO with the joint score + reasoning-consistency reward (the result is Q-Ponder).

A thin wrapper around TRL's ``GRPOTrainer`` (TRL 1.16, no trainer code copied or
overridden): each image becomes a conversational prompt (the student instruction with an
image placeholder) plus ``image``, ``mos`` and ``id`` columns; TRL passes the extra columns
to the reward functions of :mod:`qponder.rewards`, and logs each reward by name as
``rewards/<name>/mean`` (``format``, ``score``, ``consistency``, ``ranking``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qponder.config import Recipe
from qponder.errors import DatasetError, MissingDependencyError
from qponder.train.callbacks import METRICS_FILE, MetricsJsonlCallback
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


def build_dataset(samples: Iterable[Any], instruction: str):
    """A ``datasets.Dataset`` of GRPO prompts: ``prompt`` (conversational, with an image
    placeholder), ``image`` (decoded on access, as evaluation reads it), ``mos`` and ``id``.

    Args:
        samples: Objects with ``id``, ``image_path`` and ``mos`` (:class:`qponder.data.Sample`).
        instruction: The student instruction.

    Raises:
        DatasetError: When there are no samples or an image is missing.
    """
    return image_dataset(training_rows(samples, instruction))


def training_rows(samples: Iterable[Any], instruction: str) -> list[dict[str, Any]]:
    """The rows of :func:`build_dataset`, image paths not yet decoded.

    Raises:
        DatasetError: When there are no samples or an image is missing.
    """
    from qponder.prompts import student_messages

    prompt = student_messages(instruction)
    rows = []
    for s in samples:
        if not Path(s.image_path).is_file():
            raise DatasetError(f"sample {s.id!r}: image not found: {s.image_path}")
        rows.append(
            {"prompt": prompt, "image": str(s.image_path), "mos": float(s.mos), "id": str(s.id)}
        )
    if not rows:
        raise DatasetError("GRPO needs at least one training image; the dataset is empty")
    return rows


def _check_vllm(opts: dict[str, Any]) -> None:
    if not opts.get("use_vllm"):
        return
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        raise MissingDependencyError(
            "grpo.trl.use_vllm is true but vLLM is not installed; install it with "
            "`pip install 'qponder[vllm]'` (GPU only) or set grpo.trl.use_vllm=false"
        )


def single_image_inputs(processor: Any) -> None:
    """Make ``processor`` leave out ``batch_num_images`` when every prompt has one image.

    LLaVA-OneVision's processor returns it, and TRL 1.16's GRPOTrainer passes every
    processor output on to ``_get_per_token_logps_and_entropies``, which does not take it
    (TypeError at the first step). With one image per prompt (every qponder prompt), it
    says what the model assumes without it, so leaving it out changes nothing.
    """
    cls = type(processor)
    if getattr(cls, "_qponder_single_image", False):
        return

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = cls.__call__(self, *args, **kwargs)
        counts = out.get("batch_num_images") if hasattr(out, "get") else None
        if counts is not None and all(int(n) == 1 for n in counts):
            del out["batch_num_images"]
        return out

    namespace = {"__call__": __call__, "__module__": cls.__module__, "_qponder_single_image": True}
    processor.__class__ = type(cls.__name__, (cls,), namespace)


def train(
    recipe: Recipe,
    samples: Iterable[Any],
    out: str | os.PathLike,
    max_steps: int | None = None,
    callbacks: list | None = None,
    judge: Any = None,
) -> Path:
    """Run GRPO on rated images.

    Resumes from the newest ``RUN/checkpoint-N`` when there is one.

    Args:
        recipe: The run's recipe (``model`` and ``grpo`` sections; ``grpo.trl`` holds
            ``trl.GRPOConfig`` options such as ``num_generations``, ``beta``, ``loss_type``,
            ``temperature``, ``max_completion_length``, ``learning_rate``, ``use_vllm``).
        samples: Training samples with ``id``, ``image_path`` and ``mos`` on [1, 5].
        out: The run directory.
        max_steps: Overrides ``grpo.trl.max_steps``.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        judge: A ready consistency judge (see :mod:`qponder.models.judge`), instead of the
            one ``grpo.consistency`` describes.

    Returns:
        ``RUN/final``: a checkpoint (or LoRA adapter) with its processor.
    """
    from trl import GRPOConfig, GRPOTrainer

    from qponder.answer_format import opened_by_template
    from qponder.models import generation_prompt
    from qponder.models.judge import build_judge
    from qponder.prompts import load_prompts
    from qponder.rewards import build_reward_functions, needs_judge, reward_weights, with_opened

    _check_vllm(recipe.grpo.trl)
    require_model(recipe)
    with run_directory(recipe, out) as out:
        instruction = load_prompts(recipe.prompts).student_instruction
        rows = training_rows(samples, instruction)  # checked before anything loads
        policy_path = str(recipe.model.path)
        opts = {**recipe.grpo.trl, "reward_weights": reward_weights(recipe.grpo.rewards)}
        # TRL's own checks (e.g. num_generations dividing the batch) before the judge loads;
        # the config kept is built after the judge, which must not be sharded by ZeRO-3
        trl_args(GRPOConfig, {k: v for k, v in opts.items() if k != "deepspeed"}, recipe, out,
                 max_steps)  # fmt: skip
        if judge is None and needs_judge(recipe.grpo.rewards):
            cfg = recipe.grpo.consistency
            judge = build_judge(cfg, policy_path, recipe.model, instruction=instruction)
            judge.check()  # an unusable judge fails now, before the policy loads
        reward_funcs, weights = build_reward_functions(recipe.grpo, judge)
        # the TRL config first: under DeepSpeed ZeRO-3 it makes from_pretrained load sharded;
        # the weights come from grpo.rewards alone (config refuses grpo.trl.reward_weights)
        args = trl_args(GRPOConfig, {**opts, "reward_weights": weights}, recipe, out, max_steps)
        model, processor, merged_adapter = load_policy(recipe)
        train_ds = image_dataset(usable_rows(rows, processor))  # never an unusable image at step N
        # a thinking template (Qwen3.5) opens <think> in the prompt: rewards read it back
        opened = opened_by_template(generation_prompt(processor, instruction))
        single_image_inputs(processor)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=with_opened(reward_funcs, opened),
            args=args,
            train_dataset=train_ds,
            processing_class=processor,  # without it TRL treats the model as text-only
            peft_config=lora_config(recipe.model.lora, recipe.model.freeze_vision),
            callbacks=[
                MetricsJsonlCallback(out / METRICS_FILE),
                *(callbacks or []),
            ],
        )
        return finish_training(
            trainer, recipe, recipe.grpo.validation, out, instruction, merged_adapter
        )


def run(
    recipe: Recipe,
    dataset: str,
    split: str | None,
    out: str | os.PathLike,
    max_steps: int | None = None,
    callbacks: list | None = None,
) -> Path:
    """Run GRPO on a dataset given as ``NAME:PATH`` (see :func:`qponder.data.load_dataset`).

    Args:
        recipe: The run's recipe.
        dataset: ``NAME:PATH``, e.g. ``koniq:/data/koniq10k`` or ``synthetic:runs/demo/data``.
        split: The split to train on (``train``), or None for every sample.
        out: The run directory.
        max_steps: Overrides ``grpo.trl.max_steps``.
        callbacks: Extra ``transformers.TrainerCallback`` objects.

    Returns:
        ``RUN/final``.
    """
    from qponder.data import load_dataset

    samples = list(load_dataset(dataset, split))
    logger.info("GRPO on %d images of %s (split %s)", len(samples), dataset, split)
    return train(recipe, samples, out, max_steps=max_steps, callbacks=callbacks)
