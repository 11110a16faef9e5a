"""Every shipped recipe and accelerate config loads; the recipes say what their names promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from qponder.config import CONFIG_DIR, load_recipe

RECIPES = sorted(CONFIG_DIR.glob("*.yaml"))
# launcher configs stay in the repository (configs/accelerate), next to the docs that use them
ACCELERATE = sorted(
    (Path(__file__).resolve().parent.parent / "configs" / "accelerate").glob("*.yaml")
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "training.md"


def test_the_expected_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert {
        "tiny-demo",
        "qwen2.5-vl-7b-koniq",
        "qwen2.5-vl-7b-koniq-lora",
        "qwen3-vl-8b-koniq",
        "qwen3-vl-8b-koniq-lora",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_its_trl_options_exist(path):
    recipe = load_recipe(path)  # checks every key, TRL's included
    assert load_recipe(path.stem) == recipe  # also found by name


def test_tiny_demo_runs_on_a_cpu_offline():
    r = load_recipe("tiny-demo")
    assert r.distill.teacher == "synthetic"
    assert r.model.dtype == "float32" and not r.model.lora.enabled
    assert not r.grpo.trl.get("use_vllm", False)
    assert r.model.max_pixels <= 112 * 112  # a handful of image tokens
    assert r.grpo.trl["per_device_train_batch_size"] % r.grpo.trl["num_generations"] == 0


def test_the_paper_recipe_is_the_paper_setting():
    r = load_recipe("qwen2.5-vl-7b-koniq")
    assert r.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert r.distill.teacher == "openai" and "72B" in r.distill.model
    assert r.sft.validation.dataset == "koniq" and r.grpo.validation.dataset == "koniq"
    assert {"format", "score", "consistency"} <= {k for k, w in r.grpo.rewards.items() if w}
    assert not r.model.lora.enabled
    assert r.grpo.trl["use_vllm"] is True
    assert {"koniq", "spaq", "kadid", "pipal", "livec", "agiqa3k", "csiq"} <= set(r.eval.datasets)


@pytest.mark.parametrize("name", ["qwen2.5-vl-7b-koniq", "qwen3-vl-8b-koniq"])
def test_the_lora_variant_differs_only_where_lora_needs_it(name):
    full, lora = load_recipe(name), load_recipe(f"{name}-lora")
    assert lora.model.lora.enabled and lora.model.lora.merge_on_save and lora.model.freeze_vision
    assert lora.sft.trl["learning_rate"] > full.sft.trl["learning_rate"]
    assert (
        lora.distill == full.distill
        and lora.eval == full.eval
        and lora.grpo.rewards == full.grpo.rewards
    )


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_configs_parse_as_accelerate_cluster_configs(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert cfg.num_processes == raw["num_processes"] >= 1
    if raw["distributed_type"] == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)
        assert str(cfg.deepspeed_config["zero_stage"]) in path.stem or "zero" not in path.stem


def test_the_accelerate_set_covers_one_gpu_eight_gpus_and_several_nodes():
    stages = {}
    for path in ACCELERATE:
        raw = yaml.safe_load(path.read_text())
        stages[path.stem] = (
            raw["num_machines"],
            raw["num_processes"],
            (raw.get("deepspeed_config") or {}).get("zero_stage"),
        )
    assert (1, 1, None) in stages.values()
    assert (1, 8, 2) in stages.values() and (1, 8, 3) in stages.values()
    assert any(machines > 1 for machines, _, _ in stages.values())


def test_docs_show_a_launch_command_for_every_accelerate_config():
    text = DOCS.read_text()
    for path in ACCELERATE:
        assert f"configs/accelerate/{path.name}" in text
    for path in RECIPES:
        assert path.stem in text
    assert re.search(r"accelerate launch .*--config_file", text)


def test_the_accelerate_launch_configs_are_there():
    assert {p.name for p in ACCELERATE} == {
        "1gpu.yaml",
        "8gpu-zero2.yaml",
        "8gpu-zero3.yaml",
        "multinode-zero3.yaml",
    }
