"""What SFT and GRPO share: resuming from the newest complete checkpoint, and TRL options
checked before any model is loaded."""

from __future__ import annotations

import json
import logging

import pytest

from qponder.config import ConfigError, load_recipe
from qponder.train.common import last_checkpoint, trl_args


def _checkpoint(run, step, complete=True):
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_training_rows_the_model_cannot_take_are_left_out_at_load_time(
    tmp_path, small_tiny, caplog
):
    from PIL import Image

    from qponder.errors import DatasetError
    from qponder.models import load_processor
    from qponder.train.common import usable_rows

    paths = {}
    for name, size in (("ok", (64, 48)), ("banner", (4000, 10)), ("also-ok", (48, 48))):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", size, (120, 80, 40)).save(paths[name])
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    rows = [{"id": n, "image": str(p)} for n, p in paths.items()]
    rows.append({"id": "cut", "image": str(tmp_path / "cut.jpg")})
    processor = load_processor(small_tiny)
    with caplog.at_level(logging.WARNING, logger="qponder.train.common"):
        kept = usable_rows(rows, processor)
    assert [r["id"] for r in kept] == ["ok", "also-ok"]
    assert (
        "left out 2 of 4 training images" in caplog.text and "banner (aspect_ratio)" in caplog.text
    )
    with pytest.raises(DatasetError, match="no usable training image"):
        usable_rows(rows[1:2], processor)


def test_the_newest_complete_checkpoint_is_resumed(tmp_path):
    assert last_checkpoint(tmp_path / "none") is None
    _checkpoint(tmp_path, 5)
    newest = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 9)
    assert last_checkpoint(tmp_path) == str(newest)


def test_a_checkpoint_half_written_by_a_kill_is_skipped_with_a_warning(tmp_path, caplog):
    good = _checkpoint(tmp_path, 100)
    torn = _checkpoint(tmp_path, 200, complete=False)
    cut = _checkpoint(tmp_path, 300, complete=False)
    (cut / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    with caplog.at_level(logging.WARNING):
        assert last_checkpoint(tmp_path) == str(good)
    assert str(torn) in caplog.text and str(cut) in caplog.text
    assert last_checkpoint(tmp_path / "x") is None


def test_only_incomplete_checkpoints_mean_a_fresh_start(tmp_path):
    _checkpoint(tmp_path, 3, complete=False)
    assert last_checkpoint(tmp_path) is None


def test_trl_options_trl_rejects_are_one_config_error_before_any_model_loads(tmp_path):
    from trl import GRPOConfig

    recipe = load_recipe("tiny-demo")
    opts = {**recipe.grpo.trl, "num_generations": 3, "per_device_train_batch_size": 16}
    with pytest.raises(ConfigError, match=r"^grpo\.trl: .*\S$"):
        trl_args(GRPOConfig, opts, recipe, tmp_path, None)
    with pytest.raises(ConfigError, match=r"grpo\.trl\.max_steps: must be >= 1, got 0"):
        trl_args(GRPOConfig, recipe.grpo.trl, recipe, tmp_path, 0)


def test_two_training_runs_cannot_share_a_directory(tmp_path):
    from qponder.runfiles import LockedError, lock_run_dir
    from qponder.train.common import run_directory

    recipe = load_recipe("tiny-demo", ["model.path=m"])
    with (
        lock_run_dir(tmp_path / "run"),
        pytest.raises(LockedError, match="another run"),
        run_directory(recipe, tmp_path / "run"),
    ):
        pass
    assert not (tmp_path / "run" / "run_config.yaml").exists()  # the refused run wrote nothing
    with run_directory(recipe, tmp_path / "run") as out:  # free once the first has ended
        assert (out / "run_config.yaml").is_file()


def test_a_finished_folder_replaces_the_old_one_whole(tmp_path):
    from qponder.train.common import replace_dir

    final, new = tmp_path / "final", tmp_path / "final.partial"
    final.mkdir()
    (final / "model.safetensors").write_text("old")
    new.mkdir()
    (new / "model.safetensors").write_text("new")
    (new / "config.json").write_text("{}")
    replace_dir(new, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert (final / "model.safetensors").read_text() == "new"
    assert (final / "config.json").is_file()


def test_half_precision_full_training_without_master_weights_is_detected():
    import torch

    from qponder.train.common import updates_round_in_half_precision

    class Trainer:
        def __init__(self, model, deepspeed=False):
            self.model, self.is_deepspeed_enabled, self.is_fsdp_enabled = model, deepspeed, False

    bf16 = torch.nn.Linear(4, 4).to(torch.bfloat16)
    assert updates_round_in_half_precision(Trainer(bf16))
    assert not updates_round_in_half_precision(Trainer(bf16, deepspeed=True))  # fp32 master
    assert not updates_round_in_half_precision(Trainer(torch.nn.Linear(4, 4)))  # fp32 weights
    bf16.peft_config = {"default": None}  # LoRA: the adapters are fp32
    assert not updates_round_in_half_precision(Trainer(bf16))
    # and the reason it matters: a 1e-5 step does not move a bf16 weight of 0.02
    w = torch.tensor([0.02], dtype=torch.bfloat16)
    assert torch.equal(w - 1e-5, w)
