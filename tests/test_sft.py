"""SFT on cold-start rows: loss on the completion only, a loadable final checkpoint, resume, LoRA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from answer_tags import tagged
from checkpoint_checks import assert_stock_loadable
from PIL import Image
from tiny_models import COMPLETION
from transformers import TrainerCallback

from qponder.config import load_recipe
from qponder.errors import DatasetError
from qponder.prompts import STUDENT_INSTRUCTION
from qponder.train.callbacks import read_metrics
from qponder.train.sft import build_dataset, read_cold_start

REPO = Path(__file__).resolve().parent.parent


def write_cold_start(folder: Path, n: int = 8, relative: bool = True) -> Path:
    """Images plus a cold-start JSONL in the format ``qponder distill`` writes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        name = f"im{i}.png"
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(folder / name)
        score = 1.5 + 3 * i / max(1, n - 1)
        completion = COMPLETION.replace("3.47", f"{score:.2f}")
        lines.append(json.dumps({
            "id": f"im{i}", "image": name if relative else str(folder / name), "mos": score,
            "prompt": STUDENT_INSTRUCTION, "completion": completion, "teacher_score": score,
            "teacher": "synthetic", "prompt_version": "qponder-prompts-v1",
        }))  # fmt: skip
    path = folder / "cold.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny(small_tiny):
    return small_tiny


def _recipe(model, *extra):
    return load_recipe(None, [
        f"model.path={model}", "sft.trl.per_device_train_batch_size=4", "sft.trl.logging_steps=1",
        "sft.trl.learning_rate=3e-3", "sft.trl.save_steps=2", "sft.trl.lr_scheduler_type=constant",
        *extra,
    ])  # fmt: skip


# --------------------------------------------------------------------------- reading rows


def test_rows_become_conversational_prompt_completion_pairs_with_an_image(tmp_path):
    rows = read_cold_start(write_cold_start(tmp_path, n=2))
    assert rows[0]["image"] == str(tmp_path / "im0.png")  # relative to the JSONL
    assert rows[0]["prompt"][0]["role"] == "user"
    assert rows[0]["prompt"][0]["content"][0] == {"type": "image"}
    assert rows[0]["completion"] == [
        {"role": "assistant", "content": COMPLETION.replace("3.47", "1.50")}
    ]


def test_row_order_of_the_file_does_not_change_the_training_rows(tmp_path):
    path = write_cold_start(tmp_path, n=5)
    rows = read_cold_start(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(reversed(lines)) + "\n")  # another completion order
    assert read_cold_start(path) == rows


def test_no_cot_keeps_only_the_answer(tmp_path):
    rows = read_cold_start(write_cold_start(tmp_path, n=2), no_cot=True)
    assert rows[1]["completion"][0]["content"] == tagged("<answer>4.50</answer>")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "invalid JSON"),
        ('{"image": "im0.png", "prompt": "p"}', "completion"),
        ('{"image": "nope.png", "prompt": "p", "completion": "c"}', "image not found"),
        ('["a list"]', "JSON object"),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(tmp_path, line, needle):
    path = write_cold_start(tmp_path, n=1)
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DatasetError, match=needle) as info:
        read_cold_start(path)
    assert f"{path}:2" in str(info.value)


def test_undecodable_bytes_are_reported_with_file_and_line(tmp_path):
    path = write_cold_start(tmp_path, n=1)
    path.write_bytes(path.read_bytes() + b'{"image": "im0.png", "prompt": "\xff"}\n')
    with pytest.raises(DatasetError, match=r"c.*:2: not UTF-8 text"):
        read_cold_start(path)


def test_no_cot_needs_a_score(tmp_path):
    path = tmp_path / "c.jsonl"
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path.write_text(json.dumps({"image": "a.png", "prompt": "p", "completion": "no answer"}) + "\n")
    with pytest.raises(DatasetError, match="no parsable score"):
        read_cold_start(path, no_cot=True)


def test_loss_falls_on_the_completion_only(tmp_path, tiny):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from qponder.models import load_processor

    processor = load_processor(tiny)
    ds = build_dataset(read_cold_start(write_cold_start(tmp_path, n=2)))
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(
        [ds[0], ds[1]]
    )
    assert "pixel_values" in batch
    labels = batch["labels"][0]
    text = processor.tokenizer.decode(labels[labels != -100])
    assert text.startswith(tagged("<think>")) and tagged("<answer>1.50</answer><|im_end|>") in text
    assert "Rate the visual quality" not in text  # no loss on the instruction or the image


# --------------------------------------------------------------------------- training runs


class _Crash(TrainerCallback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated interruption")


@pytest.mark.slow
def test_cli_sft_loss_falls_and_final_loads_anywhere(tmp_path, tiny):
    from qponder.cli import main
    from qponder.models import load_model

    data = write_cold_start(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["sft", "--data", str(data), "--model", str(tiny), "--out", str(out), "--max-steps", "8"]
    for kv in ("sft.trl.per_device_train_batch_size=4", "sft.trl.logging_steps=1",
               "sft.trl.learning_rate=3e-3", "sft.trl.lr_scheduler_type=constant"):  # fmt: skip
        argv += ["--set", kv]
    assert main(argv) == 0
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.5
    assert (out / "run_config.yaml").is_file() and (out / "environment.json").is_file()
    assert list((out / "runs").rglob("events.out.tfevents*")), "no TensorBoard logs"
    model, processor = load_model(out / "final")
    assert processor.image_processor is not None
    assert_stock_loadable(out / "final")
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(out / "final")


@pytest.mark.slow
def test_resume_after_an_interruption_continues_from_the_last_checkpoint(tmp_path, tiny):
    from qponder.train.sft import run

    data = write_cold_start(tmp_path / "data")
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(_recipe(tiny), data, out, max_steps=6, callbacks=[_Crash(at_step=3)])
    assert (out / "checkpoint-2").is_dir() and not (out / "final").exists()
    final = run(_recipe(tiny), data, out, max_steps=6)
    assert final == out / "final" and (final / "model.safetensors").is_file()
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 3 logged before the crash is not duplicated
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("merge", [False, True])
def test_lora_sft_writes_an_adapter_or_a_merged_checkpoint(tmp_path, tiny, merge):
    from peft import PeftModel

    from qponder.models import load_model
    from qponder.train.sft import run

    recipe = _recipe(tiny, "model.lora.enabled=true", "model.lora.r=4",
                     f"model.lora.merge_on_save={str(merge).lower()}", "model.freeze_vision=true")  # fmt: skip
    final = run(recipe, write_cold_start(tmp_path / "data", n=4), tmp_path / "run", max_steps=2)
    from safetensors.torch import load_file

    adapter = load_file(
        tmp_path / "run" / ("final-adapter" if merge else "final") / "adapter_model.safetensors"
    )
    assert any("language_model" in k for k in adapter)
    assert not any("visual" in k for k in adapter)  # frozen vision: no adapters there
    assert (final / "adapter_config.json").exists() is not merge
    model, processor = load_model(final)
    assert not isinstance(model, PeftModel)
    assert processor.image_processor is not None
    if merge:  # a merged LoRA is a full checkpoint
        assert_stock_loadable(final)


@pytest.mark.slow
def test_a_new_adapter_on_an_adapter_is_merged_onto_the_adapted_weights(tmp_path, tiny):
    from safetensors.torch import load_file

    from qponder.models import load_model
    from qponder.train.sft import run

    data = write_cold_start(tmp_path / "data", n=4)
    lora = ["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=4"]
    first = run(_recipe(tiny, *lora), data, tmp_path / "a", max_steps=2)
    assert (first / "adapter_config.json").is_file()
    final = run(_recipe(first, *lora), data, tmp_path / "b", max_steps=2)  # starts from base + A
    assert not (final / "adapter_config.json").exists()  # forced merge
    start = dict(load_model(first)[0].named_parameters())
    merged = dict(load_model(final)[0].named_parameters())
    adapter = load_file(tmp_path / "b" / "final-adapter" / "adapter_model.safetensors")
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    prefix = "base_model.model." + key.removesuffix(".weight")
    delta = adapter[prefix + ".lora_B.weight"] @ adapter[prefix + ".lora_A.weight"]  # alpha / r = 1
    assert delta.abs().max() > 0
    base = dict(load_model(tiny)[0].named_parameters())
    assert not torch.equal(
        start[key], base[key]
    )  # A changed the weights: merging onto base differs
    torch.testing.assert_close(
        merged[key].detach(), start[key].detach() + delta, atol=1e-5, rtol=1e-4
    )


@pytest.mark.slow
def test_validation_scores_the_split_with_the_shared_scorer_during_training(tmp_path, tiny):
    from qponder.data import load_dataset
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.train.sft import run

    make_synthetic_dataset(tmp_path / "synth", n=40, seed=0, size=48)
    n_val = len(load_dataset(f"synthetic:{tmp_path / 'synth'}", "val"))
    recipe = _recipe(tiny, f"sft.validation.dataset=synthetic:{tmp_path / 'synth'}",
                     "sft.validation.every_n_steps=2", "sft.validation.max_new_tokens=8")  # fmt: skip
    run(recipe, write_cold_start(tmp_path / "data", n=4), tmp_path / "run", max_steps=3)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val/n" in r]
    assert [r["step"] for r in rows] == [2, 3]  # every 2 steps, and at the end
    # validating at a logging step does not swallow the trainer's own log of that step
    losses = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert losses == [1, 2, 3]
    assert all(
        r["val/n"] == min(n_val, 64) and 0.0 <= r["val/parse_failure_rate"] <= 1.0 for r in rows
    )


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path, tiny):
    """accelerate's --cpu launcher starts ONE process; --multi_gpu starts torchrun, and the
    Trainer forms a gloo group on the CPU (use_cpu)."""
    data = write_cold_start(tmp_path / "data")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        "-m", "qponder.cli", "sft", "--data", str(data), "--model", str(tiny), "--out", str(out),
        "--max-steps", "2", "--set", "sft.trl.per_device_train_batch_size=2",
        "--set", "sft.trl.logging_steps=1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # written once, by rank 0
    assert rows[-1]["epoch"] == pytest.approx(
        1.0
    )  # 2 steps x 2 processes x 2 rows = all 8 (one process: 0.5)
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_validation_metrics_reach_the_report_to_trackers(tmp_path, tiny):
    """Validation SRCC goes through the trainer's logging, so a tracker chosen with
    report_to records it: trackio (offline, its local store) and TensorBoard."""
    import sqlite3

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from qponder.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "synth", n=60, seed=0, size=48)
    out, store = tmp_path / "run", tmp_path / "trackio"
    env = {**os.environ, "TRACKIO_DIR": str(store), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qponder.cli", "sft", "--data",
           str(write_cold_start(tmp_path / "data", n=4)), "--model", str(tiny), "--out", str(out),
           "--max-steps", "2", "--set", "sft.trl.report_to=[trackio, tensorboard]",
           "--set", "sft.trl.project=qponder-test", "--set", "sft.trl.run_name=val",
           "--set", "sft.trl.trackio_static_space_id=false",
           "--set", f"sft.validation.dataset=synthetic:{tmp_path / 'synth'}",
           "--set", "sft.validation.every_n_steps=1", "--set", "sft.validation.max_new_tokens=4",
           "--set", "sft.trl.per_device_train_batch_size=2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_val = len([r for r in read_metrics(out / "metrics.jsonl") if "val/n" in r])
    assert n_val == 2  # steps 1 and 2
    with sqlite3.connect(store / "qponder-test.db") as db:
        logged = [json.loads(m) for (m,) in db.execute("select metrics from metrics")]
    val = [m for m in logged if "train/val/n" in m]
    assert [m["train/global_step"] for m in val] == [1, 2]
    assert all(m["train/val/n"] == 6 and "train/val/srcc" in m for m in val)
    events = EventAccumulator(str(next((out / "runs").rglob("events.out.tfevents*")).parent))
    events.Reload()
    assert [e.step for e in events.Scalars("train/val/n")] == [1, 2]
