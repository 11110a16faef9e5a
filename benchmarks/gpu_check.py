"""GPU check (issue 15): train and score 7B/8B-sized Qwen-VL models on one H100/H200, offline.

Run (one H100 or H200, no network, about 8 minutes in all)::

    python benchmarks/gpu_check.py --wheels /path/wheels --out gpu_check.json

and on a CPU, the same code path with tiny models (a couple of minutes)::

    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke

What it does, stage by stage, each stage skipped with a ``skipped: budget`` line once the
time budget (``--budget-s``, counted from the start, pip included) cannot hold it:

1. ``--wheels DIR``: trl, transformers, peft and accelerate that are missing or older than
   the newest wheel of theirs in DIR are installed from DIR (``pip --no-index``) and the
   script re-executes itself once so that the fresh versions are imported.
2. Per model (``--models``, default Qwen3-VL-8B then Qwen2.5-VL-7B): the tokenizer, chat
   template and image processor come from qponder's offline tiny builder
   (``qponder.models.tiny.build_tiny_model(dir, family=...)``); its config is resized to the
   public sizes of Qwen/Qwen3-VL-8B-Instruct or Qwen/Qwen2.5-VL-7B-Instruct (token ids
   kept; the vocabulary keeps its real size, larger than the tiny tokenizer), instantiated on
   the GPU with random bf16 weights and saved with that processor to a scratch folder.
3. SFT and GRPO through ``qponder.train.sft.run`` / ``qponder.train.grpo.train`` with the
   shipped recipes of that model (LoRA and full-parameter), on synthetic images
   (``qponder.data.synthetic``, resized to KonIQ's 1024x768) and synthetic-teacher
   cold-start answers; GRPO with the format and score rewards (``--consistency`` adds the
   consistency judge, a third copy of the weights), rollouts by transformers (vLLM off).
   Per configuration: median step time after the first step, peak
   ``torch.cuda.max_memory_allocated`` over the whole run (loading included; reset between
   configurations), trainable parameters, and the optimizer state's size and dtype.
   ``RUN/final`` is not written (a benchmark-only stub replaces qponder's final save).
4. Batched scoring through ``qponder.inference.Scorer`` (HF backend) at several batch
   sizes: decode tokens/s (prefill-only run subtracted) against the memory-bandwidth
   roofline, ``batch x bandwidth / (weight bytes + KV bytes per step)``, capped by the
   compute roofline; bandwidth by GPU name (H200 4.8 TB/s, H100 SXM 3.35 TB/s) or
   ``--bandwidth-tbs``.

It always ends with a summary table (also written as JSON to ``--out``, rewritten after
every stage). Exit status: 0, or 1 when a stage failed with an error other than running out
of memory or time, 2 without CUDA (unless ``--cpu-smoke``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REEXEC_ENV = "QPONDER_GPU_CHECK_INSTALLED"  # set on the re-executed run: what pip installed
T0_ENV = "QPONDER_GPU_CHECK_T0"  # start time of the first run, so that pip counts
WHEEL_PACKAGES = ("trl", "transformers", "peft", "accelerate")
GIB = 2**30

# Public config.json sizes (Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-8B-Instruct).
GPU_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "qwen2_5_vl": {
        "text": {
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "max_window_layers": 28,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [16, 24, 24]},
        },
        "vision": {
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        },
    },
    "qwen3_vl": {
        "text": {
            "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
            "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        },
        "vision": {
            "depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
            "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [8, 16, 24], "hidden_act": "gelu_pytorch_tanh",
        },
    },
}  # fmt: skip

# --cpu-smoke: small sizes through the same resizing code (the tiny tokenizer's vocabulary)
SMOKE_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "qwen2_5_vl": {
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2},
        "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                   "out_hidden_size": 64, "patch_size": 14, "fullatt_block_indexes": [1]},
    },
    "qwen3_vl": {
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
        "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                   "out_hidden_size": 64, "patch_size": 16, "deepstack_visual_indexes": [0]},
    },
}  # fmt: skip

FAMILIES = {
    "qwen3_vl": {
        "label": "Qwen3-VL-8B",
        "recipes": {"lora": "qwen3-vl-8b-koniq-lora", "full": "qwen3-vl-8b-koniq"},
    },
    "qwen2_5_vl": {
        "label": "Qwen2.5-VL-7B",
        "recipes": {"lora": "qwen2.5-vl-7b-koniq-lora", "full": "qwen2.5-vl-7b-koniq"},
    },
}

# Nominal HBM bandwidth (bytes/s) and dense bf16 peak (FLOP/s), by a substring of the
# device name, first match wins.
DEVICES = (
    ("H200", 4.8e12, 989e12),
    ("H100 NVL", 3.9e12, 835e12),
    ("H100 PCIe", 2.0e12, 756e12),
    ("H100", 3.35e12, 989e12),  # SXM
)

STAGES = ("build", "sft-lora", "grpo-lora", "sft-full", "grpo-full", "score")
# first guesses of a stage's seconds (GPU), replaced by what the same stage took on the
# previous model; a stage starts only when the time left holds its guess
GPU_GUESS_S = {"build": 60, "sft-lora": 40, "grpo-lora": 50, "sft-full": 45, "grpo-full": 70,
               "score": 45}  # fmt: skip
SMOKE_GUESS_S = {k: 10 for k in STAGES}
RESERVE_S = 8  # kept for the summary and clean-up


class BudgetExceeded(BaseException):
    """Raised by the alarm when the time budget runs out inside a stage (a BaseException,
    so that no library's ``except Exception`` swallows it)."""


# --------------------------------------------------------------------------- wheels


def _wheel_versions(folder: Path) -> dict[str, Any]:
    from packaging.version import InvalidVersion, Version

    newest: dict[str, Any] = {}
    for f in folder.glob("*.whl"):
        parts = f.name.split("-")
        if len(parts) < 3:
            continue
        name = parts[0].lower().replace("_", "-")
        try:
            version = Version(parts[1])
        except InvalidVersion:
            continue
        if name in WHEEL_PACKAGES and (name not in newest or version > newest[name]):
            newest[name] = version
    return newest


def install_wheels(folder: Path) -> list[str]:
    """Install from ``folder`` each of WHEEL_PACKAGES that is missing or older than its
    newest wheel there; return ``["name old -> new", ...]`` for what was installed."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    if not folder.is_dir():
        print(f"wheels: {folder} is not a folder; using the installed packages")
        return []
    wanted, notes = [], []
    for name, new in sorted(_wheel_versions(folder).items()):
        try:
            old = Version(version(name))
        except PackageNotFoundError:
            old = None
        if old is None or old < new:
            wanted.append(f"{name}=={new}")
            notes.append(f"{name} {old or 'missing'} -> {new}")
    if not wanted:
        print(f"wheels: nothing to install from {folder} (installed versions are as new)")
        return []
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(folder)]
    print("wheels: " + " ".join(cmd + wanted), flush=True)
    proc = subprocess.run(cmd + wanted, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        print(f"wheels: pip failed (exit {proc.returncode}); using the installed packages\n{tail}")
        return []
    for note in notes:
        print(f"wheels: installed {note}")
    return notes


# --------------------------------------------------------------------------- helpers


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", *WHEEL_PACKAGES, "flash-attn", "vllm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def device_specs(name: str) -> tuple[float | None, float | None]:
    for key, bandwidth, flops in DEVICES:
        if key in name:
            return bandwidth, flops
    return None, None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def free_memory(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()


@contextmanager
def no_final_save():
    """Skip qponder's ``RUN/final`` write (16 GB per full-parameter run): only the training
    steps are measured. ``finish_training`` calls ``save_final`` by its module-level name."""
    import qponder.train.common as common

    original = common.save_final
    common.save_final = lambda trainer, out, *args, **kwargs: out
    try:
        yield
    finally:
        common.save_final = original


def scratch_dir(cpu_smoke: bool) -> Path:
    """A scratch folder: /dev/shm when it has 48 GiB free (an 8B checkpoint is 17.5 GB; no
    disk writes), else the system temp folder."""
    if not cpu_smoke and Path("/dev/shm").is_dir():
        try:
            if shutil.disk_usage("/dev/shm").free > 48 * GIB:
                return Path(tempfile.mkdtemp(prefix="qponder-gpu-check-", dir="/dev/shm"))
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="qponder-gpu-check-"))


# --------------------------------------------------------------------------- data


def make_data(folder: Path, n: int, width: int, height: int) -> tuple[list[Any], Path]:
    """Synthetic images resized to ``width x height`` (KonIQ: 1024x768), and a cold-start
    JSONL of synthetic-teacher answers for them."""
    from PIL import Image

    from qponder.data import load_dataset
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.distill.synthetic import SyntheticTeacher
    from qponder.prompts import STUDENT_INSTRUCTION

    make_synthetic_dataset(folder, n=n, seed=0)
    samples = list(load_dataset(f"synthetic:{folder}", None))
    for s in samples:
        with Image.open(s.image_path) as im:
            big = im.convert("RGB").resize((width, height), Image.BICUBIC)
        big.save(s.image_path)
    teacher = SyntheticTeacher(error_rate=0.0, seed=0)
    cold = folder / "cold.jsonl"
    rows = [
        {"id": s.id, "image": s.image_path, "mos": s.mos, "prompt": STUDENT_INSTRUCTION,
         "completion": teacher.answer(s)[0]}
        for s in samples
    ]  # fmt: skip
    cold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return samples, cold


# --------------------------------------------------------------------------- models


def tiny_folder(family: str, out: Path) -> Path:
    """The tiny offline model of ``family`` (its processor and token ids are what we use)."""
    from qponder.models.tiny import build_tiny_model

    return Path(build_tiny_model(out, family=family))


def sized_config(tiny: Path, sizes: dict[str, dict[str, Any]]):
    """The tiny folder's config with the given text/vision sizes; token ids are kept."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny)
    data = config.to_dict()
    text, vision = dict(sizes["text"]), dict(sizes["vision"])
    if "num_hidden_layers" in text:
        data["text_config"].pop("layer_types", None)  # one entry per layer: recomputed
    data["text_config"].update(text)
    data["vision_config"].update(vision)
    if "tie_word_embeddings" in text:
        data["tie_word_embeddings"] = text["tie_word_embeddings"]
    return type(config).from_dict(data)


def build_model(family: str, tiny: Path, out: Path, ctx: dict) -> dict:
    """Instantiate the sized model with random weights on the device and save it, with the
    tiny folder's processor, to ``out``."""
    import torch
    from transformers import AutoModelForImageTextToText

    from qponder.models import load_processor

    sizes = (SMOKE_SIZES if ctx["cpu_smoke"] else GPU_SIZES)[family]
    config = sized_config(tiny, sizes)
    processor = load_processor(tiny)
    patch = getattr(processor.image_processor, "patch_size", None)
    if patch != config.vision_config.patch_size:
        raise RuntimeError(
            f"the tiny processor's patch size {patch} is not the model's "
            f"{config.vision_config.patch_size}"
        )
    t0 = time.perf_counter()
    with torch.device(ctx["device"]):
        model = AutoModelForImageTextToText.from_config(config, dtype=ctx["dtype"])
    if ctx["cuda"]:
        torch.cuda.synchronize()
    init_s = time.perf_counter() - t0
    tok = processor.tokenizer
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tok.pad_token_id
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_s = time.perf_counter() - t0
    lm = model.model.language_model
    ctx["lm_weight_bytes"] = (
        sum(p.numel() * p.element_size() for n, p in lm.named_parameters() if "embed_tokens" not in n)
        + model.lm_head.weight.numel() * model.lm_head.weight.element_size()
    )  # fmt: skip
    ctx["lm_params"] = ctx["lm_weight_bytes"] // model.lm_head.weight.element_size()
    tc = config.text_config
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    ctx["kv_bytes_per_token"] = (
        2 * tc.num_hidden_layers * tc.num_key_value_heads * head_dim * model.lm_head.weight.element_size()
    )  # fmt: skip
    del model
    return {
        "params": params,
        "weights_gib": round(params * (2 if ctx["dtype"] == torch.bfloat16 else 4) / GIB, 3),
        "init_s": round(init_s, 1),
        "save_s": round(save_s, 1),
    }


# --------------------------------------------------------------------------- training


def trainer_callbacks(ctx: dict):
    import torch
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Step times, and after the first step: trainable parameters and the optimizer
        state (bytes by dtype)."""

        def __init__(self) -> None:
            self.steps: list[float] = []
            self.info: dict[str, Any] = {}
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if ctx["cuda"]:
                torch.cuda.synchronize()
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if ctx["cuda"]:
                torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self._t0)
            if self.info or optimizer is None:
                return
            opt = getattr(optimizer, "optimizer", optimizer)
            state_bytes: dict[str, int] = {}
            for group in opt.param_groups:
                for p in group["params"]:
                    for v in opt.state.get(p, {}).values():
                        if torch.is_tensor(v) and v.numel() > 1:
                            key = str(v.dtype).removeprefix("torch.")
                            state_bytes[key] = (
                                state_bytes.get(key, 0) + v.numel() * v.element_size()
                            )
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.info = {
                "trainable_m": round(sum(p.numel() for p in trainable) / 1e6, 1),
                "trainable_dtype": sorted({str(p.dtype).removeprefix("torch.") for p in trainable}),
                "opt_state_gib": round(sum(state_bytes.values()) / GIB, 4),
                "opt_state_dtype": sorted(state_bytes),
            }  # fmt: skip

    return Probe()


def train_stage(kind: str, variant: str, family: str, ctx: dict) -> dict:
    from qponder.config import load_recipe
    from qponder.train import grpo, sft

    recipe_name = FAMILIES[family]["recipes"][variant]
    smoke = ctx["cpu_smoke"]
    overrides = [
        f"model.path={ctx['model_dir']}",
        f"model.attn_implementation={ctx['attn']}",
        f"model.dtype={'float32' if smoke else 'bfloat16'}",
        "model.lora.merge_on_save=false",
        f"{kind}.validation.dataset=null",
        f"{kind}.trl.report_to=[]",
        f"{kind}.trl.save_steps=100000",
        f"{kind}.trl.disable_tqdm=true",
        f"{kind}.trl.logging_steps=100000",  # no per-step log lines: timing comes from Probe
        f"{kind}.trl.logging_first_step=false",
    ]
    if kind == "sft":
        overrides += ["sft.trl.dataloader_num_workers=0"]  # no worker processes, no /dev/shm use
        if smoke:
            overrides += ["sft.trl.gradient_accumulation_steps=1"]
    else:
        rewards = "{format: 1.0, score: 1.0, consistency: 0.5}" if ctx["consistency"] else (
            "{format: 1.0, score: 1.0, consistency: 0.0}")  # fmt: skip
        overrides += [
            "grpo.trl.use_vllm=false",
            f"grpo.trl.max_completion_length={ctx['completion_length']}",
            "grpo.trl.gradient_accumulation_steps=1",
            f"grpo.rewards={rewards}",
        ]
    recipe = load_recipe(recipe_name, overrides)
    probe = trainer_callbacks(ctx)
    out = ctx["tmp"] / f"{family}-{kind}-{variant}"
    with no_final_save():
        if kind == "sft":
            sft.run(recipe, ctx["cold"], out, max_steps=ctx["steps"], callbacks=[probe])
        else:
            grpo.train(recipe, ctx["samples"], out, max_steps=ctx["steps"], callbacks=[probe])
    shutil.rmtree(out, ignore_errors=True)
    timed = probe.steps[1:] or probe.steps
    trl = recipe.sft.trl if kind == "sft" else recipe.grpo.trl
    return {
        "recipe": recipe_name,
        "steps": len(probe.steps),
        "step_s": round(statistics.median(timed), 3) if timed else None,
        "first_step_s": round(probe.steps[0], 3) if probe.steps else None,
        "batch": trl.get("per_device_train_batch_size"),
        **probe.info,
    }


# --------------------------------------------------------------------------- scoring


def score_stage(family: str, ctx: dict) -> dict:
    import torch

    from qponder.config import load_recipe
    from qponder.data import load_image
    from qponder.inference import Scorer
    from qponder.models import load_model

    recipe = load_recipe(
        FAMILIES[family]["recipes"]["full"],
        [f"model.attn_implementation={ctx['attn']}",
         f"model.dtype={'float32' if ctx['cpu_smoke'] else 'bfloat16'}"],
    )  # fmt: skip
    model, processor = load_model(ctx["model_dir"], recipe.model)
    images = [load_image(s.image_path) for s in ctx["samples"]]
    calls: list[dict] = []
    original = model.generate

    def timed_generate(*args, **kwargs):
        if ctx["cuda"]:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        seqs = original(*args, **kwargs)
        if ctx["cuda"]:
            torch.cuda.synchronize()
        prompt = kwargs["input_ids"].shape[1]
        calls.append({"s": time.perf_counter() - t0, "rows": seqs.shape[0], "prompt": prompt,
                      "new": seqs.shape[1] - prompt})  # fmt: skip
        return seqs

    model.generate = timed_generate

    def run(batch: int, new_tokens: int) -> tuple[dict, float]:
        scorer = Scorer(model, processor=processor, model_config=recipe.model,
                        batch_size=batch, max_new_tokens=new_tokens)  # fmt: skip
        batch_images = [images[i % len(images)] for i in range(batch)]
        calls.clear()
        t0 = time.perf_counter()
        scorer.score(batch_images)
        return calls[-1], time.perf_counter() - t0

    run(ctx["score_batches"][0], 4)  # warm-up
    bandwidth, flops = ctx["bandwidth"], ctx["flops"]
    rows = []
    for batch in ctx["score_batches"]:
        prefill, _ = run(batch, 1)
        full, wall = run(batch, ctx["new_tokens"])
        steps = full["new"] - prefill["new"]
        decode_s = full["s"] - prefill["s"]
        tps = full["rows"] * steps / decode_s if steps > 0 and decode_s > 0 else None
        row = {
            "batch": batch,
            "prompt_tokens": full["prompt"],
            "new_tokens": full["new"],
            "prefill_s": round(prefill["s"], 3),
            "decode_tok_s": round(tps, 1) if tps else None,
            "images_s": round(batch / wall, 2),
        }
        if bandwidth:
            context = full["prompt"] + full["new"] / 2
            step_bytes = ctx["lm_weight_bytes"] + ctx["kv_bytes_per_token"] * context * batch
            roof = batch * bandwidth / step_bytes
            if flops:
                roof = min(roof, flops / (2 * ctx["lm_params"]))
            row["roofline_tok_s"] = round(roof, 1)
            row["of_roofline"] = round(tps / roof, 3) if tps else None
        rows.append(row)
    model.generate = original
    return {"rows": rows}


# --------------------------------------------------------------------------- the run


class Runner:
    def __init__(self, args: argparse.Namespace, t0: float, ctx: dict) -> None:
        self.args, self.t0, self.ctx = args, t0, ctx
        self.guess = dict(SMOKE_GUESS_S if args.cpu_smoke else GPU_GUESS_S)
        self.rows: list[dict] = []
        self.report: dict[str, Any] = {}

    def left(self) -> float:
        return self.args.budget_s - (time.time() - self.t0)

    def skip(self, label: str, stage: str, why: str) -> None:
        row = {"model": label, "stage": stage, "status": f"skipped: {why}"}
        self.rows.append(row)
        print(f"[{time.time() - self.t0:6.1f} s] {label} {stage}: skipped: {why}", flush=True)

    def stage(self, label: str, stage: str, fn) -> str:
        import torch

        cuda = self.ctx["cuda"]
        left = self.left() - RESERVE_S
        if left < self.guess[stage]:
            why = f"budget ({max(0.0, left):.0f} s left, about {self.guess[stage]:.0f} s needed)"
            self.skip(label, stage, why)
            return f"skipped: {why}"
        row: dict[str, Any] = {"model": label, "stage": stage}
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, max(1.0, left))
        try:
            row.update(fn())
            row["status"] = "ok"
        except BudgetExceeded:
            row["status"] = "skipped: budget (stopped inside the stage)"
        except torch.OutOfMemoryError as exc:
            row["status"] = "CUDA out of memory"
            row["detail"] = first_line(exc)
        except Exception as exc:  # report, go on with the next stage
            if "out of memory" in str(exc).lower():  # an OOM re-raised under another type
                row["status"] = "CUDA out of memory"
                row["detail"] = first_line(exc)
            else:
                row["status"] = f"error: {first_line(exc)}"
                traceback.print_exc(limit=-6)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        row["wall_s"] = round(time.perf_counter() - start, 1)
        if row["status"] == "ok":
            self.guess[stage] = row["wall_s"]
        if cuda:
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        free_memory(cuda)
        if cuda:  # what the stage left behind (should be ~0: nothing kept between stages)
            row["left_gib"] = round(torch.cuda.memory_allocated() / GIB, 2)
        self.rows.append(row)
        shown = {k: v for k, v in row.items() if k not in ("model", "stage")}
        print(f"[{time.time() - self.t0:6.1f} s] {label} {stage}: {json.dumps(shown)}", flush=True)
        self.write()
        return row["status"]

    def write(self) -> None:
        if self.args.out:
            data = {**self.report, "elapsed_s": round(time.time() - self.t0, 1), "rows": self.rows}
            Path(self.args.out).write_text(json.dumps(data, indent=2) + "\n")

    def run_model(self, family: str) -> None:
        label = FAMILIES[family]["label"]
        ctx = self.ctx
        model_dir = ctx["tmp"] / f"model-{family}"
        ctx["model_dir"] = model_dir
        try:
            built = self.stage(label, "build", lambda: self._build(family, model_dir))
            if built != "ok":
                why = "budget (no model)" if built.startswith("skipped: budget") else "no model"
                for stage in STAGES[1:]:
                    self.skip(label, stage, why)
                return
            for stage in STAGES[1:]:
                if stage == "score":
                    self.stage(label, stage, lambda: score_stage(family, ctx))
                else:
                    kind, variant = stage.split("-")
                    self.stage(
                        label, stage, lambda k=kind, v=variant: train_stage(k, v, family, ctx)
                    )
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)

    def _build(self, family: str, model_dir: Path) -> dict:
        tiny = tiny_folder(family, self.ctx["tmp"] / f"tiny-{family}")
        return build_model(family, tiny, model_dir, self.ctx)

    def summary(self) -> None:
        print("\n== summary")
        print(f"{'model':<14} {'stage':<10} {'status':<26} {'wall s':>7} {'step s':>7} "
              f"{'1st step s':>10} {'peak GiB':>9} {'trainable M':>11}  optimizer state")  # fmt: skip
        for r in self.rows:
            status = r["status"] if len(r["status"]) <= 26 else r["status"][:23] + "..."
            opt = ""
            if "opt_state_gib" in r:
                opt = f"{_fmt(r['opt_state_gib'])} GiB {'/'.join(r['opt_state_dtype'])}"
            print(
                f"{r['model']:<14} {r['stage']:<10} {status:<26} {_fmt(r.get('wall_s')):>7} "
                f"{_fmt(r.get('step_s')):>7} {_fmt(r.get('first_step_s')):>10} "
                f"{_fmt(r.get('peak_gib')):>9} {_fmt(r.get('trainable_m')):>11}  {opt}".rstrip()
            )
        for r in self.rows:
            if r["stage"] == "build" and r["status"] == "ok":
                n = r["params"]
                size = f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"
                print(f"{r['model']} build: {size} parameters, {_fmt(r['weights_gib'])} GiB of weights, "
                      f"init {r['init_s']} s, save {r['save_s']} s; tokenizer from build_tiny_model")  # fmt: skip
            elif r["stage"] == "score" and r["status"] == "ok":
                print(f"{r['model']} scoring (HF backend, greedy):")
                print(f"  {'batch':>5} {'prompt':>6} {'new':>4} {'prefill s':>9} {'decode tok/s':>12} "
                      f"{'roofline':>9} {'measured/roofline':>17} {'images/s':>8}")  # fmt: skip
                for s in r["rows"]:
                    print(f"  {s['batch']:>5} {s['prompt_tokens']:>6} {s['new_tokens']:>4} "
                          f"{s['prefill_s']:>9} {_fmt(s['decode_tok_s']):>12} "
                          f"{_fmt(s.get('roofline_tok_s', 'n/a')):>9} {_fmt(s.get('of_roofline', 'n/a')):>17} "
                          f"{s['images_s']:>8}")  # fmt: skip
            elif r["status"] != "ok":
                print(f"{r['model']} {r['stage']}: {r['status']} {r.get('detail', '')}".rstrip())
        print(f"total {time.time() - self.t0:.1f} s (budget {self.args.budget_s:.0f} s)")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--wheels", type=Path, help="folder of wheels for trl/transformers/peft/accelerate"
    )
    p.add_argument("--out", help="also write the results as JSON to this file")
    p.add_argument("--budget-s", type=float, default=450.0, help="time budget (default 450 s)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, float32")
    p.add_argument("--models", default="qwen3_vl,qwen2_5_vl",
                   help="model families in order (default qwen3_vl,qwen2_5_vl)")  # fmt: skip
    p.add_argument("--steps", type=int, help="optimizer steps per run (default 3; smoke 2)")
    p.add_argument("--completion-length", type=int,
                   help="GRPO max_completion_length (default 128; smoke 16)")  # fmt: skip
    p.add_argument("--consistency", action="store_true",
                   help="GRPO also with the consistency reward (loads a frozen judge copy)")  # fmt: skip
    p.add_argument("--images", type=int, help="synthetic training images (default 16; smoke 8)")
    p.add_argument("--image-size", default=None,
                   help="WxH of the images (default 1024x768, KonIQ; smoke 112x112)")  # fmt: skip
    p.add_argument("--score-batches", default=None,
                   help="scoring batch sizes (default 1,8,32; smoke 1,4)")  # fmt: skip
    p.add_argument("--new-tokens", type=int, help="scoring max_new_tokens (default 128; smoke 16)")
    p.add_argument("--bandwidth-tbs", type=float, help="HBM bandwidth in TB/s (default: by name)")
    args = p.parse_args(argv)
    smoke = args.cpu_smoke
    args.steps = args.steps or (2 if smoke else 3)
    args.completion_length = args.completion_length or (16 if smoke else 128)
    args.images = args.images or (8 if smoke else 16)
    args.image_size = args.image_size or ("112x112" if smoke else "1024x768")
    args.score_batches = [
        int(b) for b in (args.score_batches or ("1,4" if smoke else "1,8,32")).split(",")
    ]
    args.new_tokens = args.new_tokens or (16 if smoke else 128)
    unknown = [m for m in args.models.split(",") if m not in FAMILIES]
    if unknown:
        p.error(f"--models: unknown {unknown}; known: {', '.join(FAMILIES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = float(os.environ.get(T0_ENV) or time.time())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network: nothing is downloaded
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device; run it on an H100/H200, or pass --cpu-smoke",
            file=sys.stderr,
        )
        return 2
    installed = json.loads(os.environ.get(REEXEC_ENV) or "null")
    if args.wheels and installed is None:
        notes = install_wheels(args.wheels)
        if notes:  # import the fresh versions: start again, once
            env = {**os.environ, REEXEC_ENV: json.dumps(notes), T0_ENV: repr(t0)}
            argv_now = sys.argv[1:] if argv is None else argv
            os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv_now], env)
    installed = installed or []
    import warnings

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    def on_alarm(signum, frame):
        raise BudgetExceeded()

    signal.signal(signal.SIGALRM, on_alarm)
    cuda = not args.cpu_smoke
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    bandwidth, flops = device_specs(name) if cuda else (None, None)
    if args.bandwidth_tbs:
        bandwidth = args.bandwidth_tbs * 1e12
    import importlib.util

    attn = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    width, height = (int(x) for x in args.image_size.lower().split("x"))
    tmp = scratch_dir(args.cpu_smoke)
    ctx: dict[str, Any] = {
        "cpu_smoke": args.cpu_smoke, "cuda": cuda, "device": "cuda" if cuda else "cpu",
        "dtype": torch.float32 if args.cpu_smoke else torch.bfloat16, "attn": attn, "tmp": tmp,
        "steps": args.steps, "completion_length": args.completion_length,
        "consistency": args.consistency, "score_batches": args.score_batches,
        "new_tokens": args.new_tokens, "bandwidth": bandwidth, "flops": flops,
    }  # fmt: skip
    runner = Runner(args, t0, ctx)
    total_gib = torch.cuda.get_device_properties(0).total_memory / GIB if cuda else None
    runner.report = {
        "device": name, "memory_gib": round(total_gib, 1) if total_gib else None,
        "bandwidth_tbs": bandwidth / 1e12 if bandwidth else None, "versions": versions(),
        "installed": installed, "attn": attn, "cpu_smoke": args.cpu_smoke, "scratch": str(tmp),
        "settings": {k: v for k, v in vars(args).items() if k not in ("wheels", "out")},
    }  # fmt: skip
    print(f"gpu_check: {name}" + (f", {total_gib:.1f} GiB" if total_gib else "")
          + (f", {bandwidth / 1e12:.2f} TB/s nominal" if bandwidth else "")
          + f"; attention {attn}; scratch {tmp}")  # fmt: skip
    print("versions: " + ", ".join(f"{k} {v}" for k, v in runner.report["versions"].items()))
    if installed:
        print("installed from wheels: " + "; ".join(installed))
    try:
        ctx["samples"], ctx["cold"] = make_data(tmp / "data", args.images, width, height)
        for family in args.models.split(","):
            runner.run_model(family)
    except BudgetExceeded:
        runner.skip("-", "-", "budget")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        runner.summary()
        runner.write()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any(r["status"].startswith("error") for r in runner.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
