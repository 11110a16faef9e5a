"""GRPO on the tiny model: every reward component is computed and logged by name, resume, LoRA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from checkpoint_checks import assert_stock_loadable
from PIL import Image
from transformers import TrainerCallback

from qponder.config import load_recipe
from qponder.errors import DatasetError, MissingDependencyError
from qponder.train.callbacks import read_metrics
from qponder.train.grpo import _check_vllm, build_dataset, train

REPO = Path(__file__).resolve().parent.parent
ALL_REWARDS = "grpo.rewards={format: 1.0, score: 1.0, consistency: 0.5, ranking: 0.5}"


@pytest.fixture(scope="module")
def tiny(small_tiny):
    return small_tiny


def make_samples(folder: Path, n: int = 6) -> list[SimpleNamespace]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        path = folder / f"g{i}.png"
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")).save(path)
        out.append(SimpleNamespace(id=f"g{i}", image_path=str(path), mos=1.0 + 4 * i / (n - 1)))
    return out


def _recipe(model, *extra):
    return load_recipe(None, [
        f"model.path={model}", "grpo.trl.num_generations=4", "grpo.trl.per_device_train_batch_size=4",
        "grpo.trl.steps_per_generation=2", "grpo.trl.max_completion_length=12",
        "grpo.trl.logging_steps=1", "grpo.trl.save_steps=2", "grpo.trl.learning_rate=1e-3",
        "grpo.consistency.batch_size=8", *extra,
    ])  # fmt: skip


def test_dataset_has_a_conversational_prompt_an_image_and_the_reward_columns(tmp_path):
    ds = build_dataset(make_samples(tmp_path, n=2), "Rate it.")
    assert set(ds.column_names) == {"prompt", "image", "mos", "id"}
    row = ds[1]
    assert row["image"].mode == "RGB" and row["mos"] == 5.0 and row["id"] == "g1"
    assert row["prompt"][0]["content"][-1]["text"] == "Rate it."


def test_a_missing_image_or_an_empty_dataset_is_a_dataset_error(tmp_path):
    samples = make_samples(tmp_path, n=2)
    os.remove(samples[0].image_path)
    with pytest.raises(DatasetError, match="g0"):
        build_dataset(samples, "x")
    with pytest.raises(DatasetError, match="empty"):
        build_dataset([], "x")


def test_use_vllm_without_vllm_is_a_clear_error():
    import trl  # noqa: F401
    from trl.import_utils import is_vllm_available

    if is_vllm_available():
        pytest.skip("vLLM is installed")
    with pytest.raises(MissingDependencyError, match="vLLM"):
        _check_vllm({"use_vllm": True})
    _check_vllm({"use_vllm": False})


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated interruption")


class _RewardSpy(TrainerCallback):
    """Records that the policy weights changed (a real optimisation step happened)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.changed = any(
            not torch.equal(p.detach(), self.before[n])
            for n, p in model.named_parameters()
            if n in self.before
        )


class _ConstantJudge:
    """A judge that says every reasoning implies 3.0 (so consistency rewards vary)."""

    def implied_scores(self, texts):
        return [3.0] * len(texts)


@pytest.mark.slow
def test_grpo_computes_and_logs_every_reward_component(tmp_path, tiny):
    from qponder.models import load_model

    out = tmp_path / "run"
    final = train(_recipe(tiny, ALL_REWARDS), make_samples(tmp_path / "img"), out, max_steps=2)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "rewards/format/mean" in r]
    assert rows, "no reward metrics logged"
    for name in ("format", "score", "consistency", "ranking"):
        assert f"rewards/{name}/mean" in rows[0]
    assert {"reward", "completions/mean_length"} <= set(rows[0])
    assert (out / "run_config.yaml").is_file()
    model, processor = load_model(final)
    assert processor.image_processor is not None


@pytest.mark.slow
def test_rewards_drive_the_update_with_a_judge_and_dataset_columns(tmp_path, tiny, monkeypatch):
    """Completions that parse are rare for a random model, so the score-free rewards are
    checked through a spy: TRL passes mos and id to every reward, and weights change."""
    import qponder.rewards as rewards

    seen = {}

    def spy(completions, **kwargs):
        seen.update({k: kwargs.get(k) for k in ("mos", "id", "image")})
        return [1.0 if i % 2 else 0.0 for i in range(len(completions))]  # a learning signal

    monkeypatch.setattr(rewards, "format_reward", spy)
    recipe = _recipe(tiny, "grpo.rewards={format: 1.0, consistency: 0.5}")
    grad = _RewardSpy()
    train(recipe, make_samples(tmp_path / "img"), tmp_path / "run", max_steps=2,
          callbacks=[grad], judge=_ConstantJudge())  # fmt: skip
    assert seen["mos"] and all(1.0 <= m <= 5.0 for m in seen["mos"])
    assert seen["id"] and seen["image"]
    assert grad.changed


@pytest.mark.slow
def test_resume_after_an_interruption(tmp_path, tiny):
    samples = make_samples(tmp_path / "img")
    out = tmp_path / "run"
    recipe = _recipe(tiny, "grpo.rewards={format: 1.0, score: 1.0}")
    with pytest.raises(KeyboardInterrupt):
        train(recipe, samples, out, max_steps=4, callbacks=[_Crash()])
    assert (out / "checkpoint-2").is_dir()
    train(recipe, samples, out, max_steps=4)
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]
    assert (out / "final" / "model.safetensors").is_file()
    assert_stock_loadable(out / "final")


@pytest.mark.slow
def test_lora_with_a_frozen_vision_tower_leaves_the_encoder_unchanged(tmp_path, tiny):
    from safetensors.torch import load_file

    recipe = _recipe(tiny, "grpo.rewards={format: 1.0, score: 1.0}", "model.lora.enabled=true",
                     "model.lora.r=4", "model.freeze_vision=true", "model.lora.merge_on_save=true")  # fmt: skip
    final = train(recipe, make_samples(tmp_path / "img"), tmp_path / "run", max_steps=2)
    before, after = load_file(tiny / "model.safetensors"), load_file(final / "model.safetensors")
    visual = [k for k in before if ".visual." in k or k.startswith("visual.")]
    assert visual and all(torch.equal(before[k], after[k]) for k in visual)
    adapter = load_file(tmp_path / "run" / "final-adapter" / "adapter_model.safetensors")
    assert adapter and not any("visual" in k for k in adapter)


@pytest.mark.slow
def test_cli_grpo_on_the_synthetic_dataset(tmp_path, tiny):
    from qponder.cli import main
    from qponder.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "synth", n=12, seed=0, size=48)
    out = tmp_path / "run"
    argv = ["grpo", "--dataset", f"synthetic:{tmp_path / 'synth'}", "--model", str(tiny),
            "--out", str(out), "--max-steps", "1"]  # fmt: skip
    for kv in ("grpo.trl.num_generations=2", "grpo.trl.per_device_train_batch_size=2",
               "grpo.trl.max_completion_length=8", "grpo.trl.logging_steps=1",
               "grpo.rewards={format: 1.0, score: 1.0}"):  # fmt: skip
        argv += ["--set", kv]
    assert main(argv) == 0
    assert (out / "final" / "config.json").is_file()
    assert json.loads((out / "environment.json").read_text())["packages"]["trl"]


@pytest.mark.slow
def test_two_processes_run_grpo(tmp_path, tiny):
    from qponder.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "synth", n=12, seed=0, size=48)
    out = tmp_path / "run"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29518",
        "-m", "qponder.cli", "grpo", "--dataset", f"synthetic:{tmp_path / 'synth'}",
        "--model", str(tiny), "--out", str(out), "--max-steps", "2",
        "--set", "grpo.trl.num_generations=4", "--set", "grpo.trl.per_device_train_batch_size=2",
        "--set", "grpo.trl.max_completion_length=8", "--set", "grpo.trl.logging_steps=1",
        "--set", "grpo.rewards={format: 1.0, score: 1.0, consistency: 0.5}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "rewards/consistency/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert (out / "final" / "model.safetensors").is_file()
