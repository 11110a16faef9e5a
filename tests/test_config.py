"""Recipes load into typed configs; every bad key is reported at once, with its name."""

from __future__ import annotations

import pytest

from qponder.config import (
    ConfigError,
    apply_overrides,
    load_recipe,
    parse_override,
)


def test_defaults_load_without_a_file():
    recipe = load_recipe()
    assert recipe.grpo.score.kind == "gaussian"
    assert recipe.distill.tolerance == 0.5


def test_overrides_are_yaml_typed_including_scientific_notation():
    assert parse_override("grpo.trl.learning_rate=1e-6") == (["grpo", "trl", "learning_rate"], 1e-6)
    assert parse_override("model.lora.enabled=true") == (["model", "lora", "enabled"], True)
    assert parse_override("eval.datasets=[a, b]") == (["eval", "datasets"], ["a", "b"])


def test_only_true_and_false_are_booleans():
    # YAML 1.1 read "no" as False: TRL's save_strategy=no then failed as "False is not a
    # valid SaveStrategy"
    assert parse_override("sft.trl.save_strategy=no")[1] == "no"
    assert [parse_override(f"k={v}")[1] for v in ("yes", "off", "on")] == ["yes", "off", "on"]
    assert [parse_override(f"k={v}")[1] for v in ("true", "False")] == [True, False]
    assert load_recipe(None, ["sft.trl.save_strategy=no"]).sft.trl == {"save_strategy": "no"}


def test_trl_options_written_in_the_section_are_routed_to_trl():
    recipe = load_recipe(None, ["grpo.num_generations=4", "sft.learning_rate=2e-5"])
    assert recipe.grpo.trl == {"num_generations": 4}
    assert recipe.sft.trl == {"learning_rate": 2e-5}


def test_every_problem_is_reported_at_once_with_its_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model:\n  dtype: float8\n  colour: red\n"
        "grpo:\n  rewards: {score: 1.0, style: 2.0}\n  trl: {num_generationz: 4}\n"
        "distill:\n  samples: 0\n"
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    msg = str(info.value)
    for needle in (
        "bad.yaml",
        "model.colour",
        "model.dtype",
        "grpo.rewards",
        "grpo.trl.num_generationz",
        "distill.samples",
    ):
        assert needle in msg


def test_wrong_types_are_reported():
    with pytest.raises(ConfigError, match="eval.batch_size"):
        load_recipe(None, ["eval.batch_size=many"])


def test_override_into_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_recipe_name_is_reported():
    with pytest.raises(ConfigError, match="not found"):
        load_recipe("no-such-recipe")
