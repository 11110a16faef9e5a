"""Where a GRPO step's time goes, and (on a GPU) step time and peak memory of SFT and GRPO
for a 7B-sized Qwen2.5-VL.

Run: ``.venv/bin/python benchmarks/bench_grpo_step.py [--steps 6] [--generations 4]
[--completion-length 128] [--gpu] [--gpu-steps 3]``.

CPU section (always): the tiny offline model (``qponder model tiny``) runs GRPO through
``qponder.train.grpo.train`` with the format, score and consistency rewards (the judge is a
frozen copy of the policy, as in the recipes). Each step is split into

- ``generation``: TRL's rollout generation (``GRPOTrainer._generate``),
- ``reward``: all reward functions (``GRPOTrainer._calculate_rewards``), of which ``judge``
  is the consistency judge's forward pass (``Judge.implied_scores``; it reads only the
  completions that parse, so ``judge_all_parsed`` also times it on a full step's worth of
  synthetic-teacher reasonings),
- ``scoring other``: the rest of ``_generate_and_score_completions`` (old-policy log-probs,
  advantages, bookkeeping),
- ``optimisation``: the loss's forward and backward passes and the optimizer step,

by wrapping those TRL methods for the run (timing only; TRL is unchanged). The first step
(warm-up) is left out; figures are medians over the remaining steps.

GPU section (``--gpu``; skipped without CUDA): a randomly initialised Qwen2.5-VL with the
7B model's sizes, saved once to a temporary folder, trained by ``qponder.train.sft.run`` and
``qponder.train.grpo.train`` with LoRA and full-parameter settings, bf16; reported: median
step time and ``torch.cuda.max_memory_allocated``. Full-parameter AdamW needs about 16 bytes
per parameter (weights, gradients, two moments): more than 80 GB for 8 B parameters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, between on_step_begin and on_step_end."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._t0)


class PeakMemory(TrainerCallback):
    """Peak CUDA memory over the steps after the first."""

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        if state.global_step == 1:
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        import torch

        return torch.cuda.max_memory_allocated() / 2**30


@contextmanager
def timed_methods(targets: dict[str, tuple[type, str]]):
    """Wrap ``cls.method`` for each name, recording per-call wall times in ``times[name]``."""
    times: dict[str, list[float]] = defaultdict(list)
    originals = []
    for name, (cls, attr) in targets.items():
        orig = getattr(cls, attr)
        originals.append((cls, attr, orig))

        def wrapper(*args, _orig=orig, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _orig(*args, **kwargs)
            finally:
                times[_name].append(time.perf_counter() - t0)

        setattr(cls, attr, wrapper)
    try:
        yield times
    finally:
        for cls, attr, orig in originals:
            setattr(cls, attr, orig)


def make_samples(folder: Path, n: int, side: int = 112) -> list[SimpleNamespace]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = folder / f"b{i}.png"
        Image.fromarray((rng.random((side, side, 3)) * 255).astype("uint8")).save(path)
        out.append(
            SimpleNamespace(id=f"b{i}", image_path=str(path), mos=1.0 + 4.0 * i / max(1, n - 1))
        )
    return out


def _median_after_warmup(values: list[float], calls_per_step: int = 1) -> float:
    per_step = [sum(values[i : i + calls_per_step]) for i in range(0, len(values), calls_per_step)]
    rest = per_step[1:] or per_step
    return statistics.median(rest) if rest else float("nan")


def cpu_breakdown(steps: int, generations: int, completion_length: int) -> dict:
    from trl import GRPOTrainer

    from qponder.config import load_recipe
    from qponder.models.judge import Judge
    from qponder.models.tiny import build_tiny_model
    from qponder.train.grpo import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "tiny")
        recipe = load_recipe("tiny-demo", [
            f"model.path={model}", f"grpo.trl.num_generations={generations}",
            f"grpo.trl.per_device_train_batch_size={2 * generations}",
            f"grpo.trl.max_completion_length={completion_length}", "grpo.trl.logging_steps=1",
            "grpo.trl.save_steps=100000", "grpo.trl.report_to=[]",
            "grpo.rewards={format: 1.0, score: 1.0, consistency: 0.5}",
        ])  # fmt: skip
        timer = StepTimer()
        targets = {
            "generation": (GRPOTrainer, "_generate"),
            "reward": (GRPOTrainer, "_calculate_rewards"),
            "scoring": (GRPOTrainer, "_generate_and_score_completions"),
            "judge": (Judge, "implied_scores"),
        }
        with timed_methods(targets) as times:
            train(
                recipe,
                make_samples(tmp / "img", 16),
                tmp / "run",
                max_steps=steps,
                callbacks=[timer],
            )
        judge_all = judge_all_parsed(model, 2 * generations)
    step = _median_after_warmup(timer.steps)
    gen = _median_after_warmup(times["generation"])
    reward = _median_after_warmup(times["reward"])
    scoring = _median_after_warmup(times["scoring"])
    return {
        "steps_timed": max(1, steps - 1),
        "completions_per_step": 2 * generations,
        "max_completion_length": completion_length,
        "step_s": step,
        "generation_s": gen,
        "reward_s": reward,
        "judge_s": _median_after_warmup(times["judge"]) if times["judge"] else 0.0,
        "judge_all_parsed_s": judge_all,
        "scoring_other_s": scoring - gen - reward,
        "optimisation_s": step - scoring,
    }


def judge_all_parsed(model: Path, n: int, repeat: int = 5) -> float:
    """Seconds the consistency judge takes for one step in which all ``n`` completions
    parse (a random policy's rarely do, so the in-step figure understates it): the frozen
    policy reads ``n`` synthetic-teacher reasonings in one forward pass."""
    from qponder.data.synthetic_reasoning import example_completions
    from qponder.models.judge import HFJudge
    from qponder.parsing import parse_completion

    judge = HFJudge.from_pretrained(str(model), batch_size=n)
    texts = [parse_completion(c).reasoning for c in example_completions(n, seed=3)]
    judge.implied_scores(texts)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        judge.implied_scores(texts)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- GPU


QWEN2_5_VL_7B = {
    "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                   out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31]),
}  # fmt: skip


def build_random_7b(out: Path) -> Path:
    """A Qwen2.5-VL with the 7B sizes and random bf16 weights, with the tiny model's
    processor (its token ids are a subset of the 7B vocabulary)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from qponder.models import load_processor
    from qponder.models.tiny import build_tiny_model

    tiny = build_tiny_model(out / "tiny-processor")
    processor = load_processor(tiny)
    tiny_cfg = json.loads((tiny / "config.json").read_text())
    ids = {
        k: tiny_cfg[k]
        for k in (
            "image_token_id",
            "video_token_id",
            "vision_start_token_id",
            "vision_end_token_id",
        )
    }
    tok = processor.tokenizer
    text = {**QWEN2_5_VL_7B["text"], "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
            "mrope_section": [16, 24, 24]}, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}  # fmt: skip
    config = Qwen2_5_VLConfig(text_config=text, vision_config=QWEN2_5_VL_7B["vision"], **ids)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    path = out / "random-7b"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return path


def gpu_section(steps: int) -> list[dict]:
    import torch

    from qponder.config import load_recipe
    from qponder.train import grpo, sft

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_random_7b(tmp)
        samples = make_samples(tmp / "img", 16, side=448)
        cold = tmp / "cold.jsonl"
        completion = (
            "<think>\n"
            + "The image is sharp with slight noise. " * 40
            + "\n</think>\n<answer>3.50</answer>"
        )
        cold.write_text("".join(
            json.dumps({"id": s.id, "image": s.image_path, "mos": s.mos, "prompt": "Rate the image.",
                        "completion": completion}) + "\n" for s in samples
        ))  # fmt: skip
        for variant, config in (
            ("lora", "qwen2.5-vl-7b-koniq-lora"),
            ("full", "qwen2.5-vl-7b-koniq"),
        ):
            common = [f"model.path={model}", "model.attn_implementation=sdpa", "sft.validation.dataset=null",
                      "grpo.validation.dataset=null", "sft.trl.report_to=[]", "grpo.trl.report_to=[]",
                      "sft.trl.save_steps=100000", "grpo.trl.save_steps=100000",
                      "model.lora.merge_on_save=false"]  # fmt: skip
            for stage in ("sft", "grpo"):
                overrides = list(common)
                if stage == "grpo":
                    overrides += ["grpo.trl.use_vllm=false", "grpo.trl.max_completion_length=256",
                                  "grpo.trl.gradient_accumulation_steps=1"]  # fmt: skip
                recipe = load_recipe(config, overrides)
                timer, mem = StepTimer(), PeakMemory()
                out = tmp / f"{variant}-{stage}"
                torch.cuda.reset_peak_memory_stats()
                try:
                    if stage == "sft":
                        sft.run(recipe, cold, out, max_steps=steps, callbacks=[timer, mem])
                    else:
                        grpo.train(recipe, samples, out, max_steps=steps, callbacks=[timer, mem])
                    row = {"variant": variant, "stage": stage, "step_s": _median_after_warmup(timer.steps),
                           "peak_gib": mem.peak_gib()}  # fmt: skip
                except torch.OutOfMemoryError:
                    row = {"variant": variant, "stage": stage, "error": "CUDA out of memory"}
                rows.append(row)
                print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--steps", type=int, default=6, help="GRPO steps on the tiny model (first is warm-up)"
    )
    p.add_argument("--generations", type=int, default=4, help="rollouts per image")
    p.add_argument("--completion-length", type=int, default=128, help="max_completion_length")
    p.add_argument("--gpu", action="store_true", help="also run the 7B-sized GPU section")
    p.add_argument("--gpu-steps", type=int, default=3)
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    args = p.parse_args(argv)

    results = [
        {
            "section": "cpu-tiny-grpo",
            **cpu_breakdown(args.steps, args.generations, args.completion_length),
        }
    ]
    print(json.dumps(results[-1], indent=2))
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("GPU section skipped: no CUDA device", file=sys.stderr)
        else:
            results.append({"section": "gpu-7b", "device": torch.cuda.get_device_name(0),
                            "rows": gpu_section(args.gpu_steps)})  # fmt: skip
            print(json.dumps(results[-1], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
