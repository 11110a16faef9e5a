"""Recipes load into typed configs; every bad key is reported at once, with its name."""

from __future__ import annotations

import pytest

from qponder.config import (
    CONFIG_DIR,
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


# issue 25: "'zero' is not of type <class 'int'>"
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.batch_size=zero", "eval.batch_size: must be a whole number, got 'zero'"),
        ("eval.batch_size=true", "eval.batch_size: must be a whole number, got True"),
        ("eval.temperature=hot", "eval.temperature: must be a number, got 'hot'"),
        ("model.lora.enabled=yes", "model.lora.enabled: must be true or false, got 'yes'"),
        ("eval.datasets=koniq", "eval.datasets: must be a list, got 'koniq'"),
        ("eval.limit=many", "eval.limit: must be a whole number or null, got 'many'"),
        ("model.path=3", "model.path: must be a string or null, got 3"),
        (
            "model.lora.target_modules=3",
            "model.lora.target_modules: must be a string or a list, got 3",
        ),
        ("grpo.rewards=1", "grpo.rewards: must be a mapping, got 1"),
    ],
)
def test_a_value_of_the_wrong_type_says_what_the_key_takes(override, message):
    with pytest.raises(ConfigError) as info:
        load_recipe(None, [override])
    assert str(info.value) == f"invalid recipe (--set): {message}"


def test_errors_say_where_the_bad_values_came_from(tmp_path):
    # issue 25: every error said "invalid recipe (defaults)" when no file was given
    def error(*args) -> str:
        with pytest.raises(ConfigError) as info:
            load_recipe(*args)
        return str(info.value)

    assert error(None, None, {"eval.batch_size": 0}) == (
        "invalid recipe (flags): eval.batch_size: must be >= 1, got 0"
    )
    assert error(None, ["eval.limit=x"], {"eval.batch_size": 0}).startswith(
        "invalid recipe (--set, flags): eval.limit: must be a whole number or null, got 'x'"
    )
    path = tmp_path / "r.yaml"
    path.write_text("model: {dtype: float8}\ngrpo: {trl: {max_steps: 5}}\n")
    assert error(path, ["eval.limit=3"]).startswith(f"invalid recipe ({path}): model.dtype:")
    assert error(path, ["eval.limit=x", "model.dtype=auto"]).startswith(
        "invalid recipe (--set): eval.limit: "  # the file's bad value was replaced
    )
    assert error(path, ["eval.limit=x"]).startswith(f"invalid recipe ({path}, --set): ")
    # a TRL option written in its section is checked as grpo.trl.num_generations
    assert error(None, ["model.dtype=auto", "grpo.num_generations=1"], {}) == (
        "invalid recipe (--set): grpo.trl.num_generations: must be >= 2, got 1"
    )
    path.write_text("grpo: {num_generations: 1}\n")
    assert error(path, None, {"eval.limit": 2}).startswith(f"invalid recipe ({path}): grpo.trl")


def test_override_into_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_recipe_name_is_reported_with_the_shipped_ones():
    with pytest.raises(ConfigError) as info:
        load_recipe("no-such-recipe")
    shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert "tiny-demo" in shipped and len(shipped) >= 5
    assert str(info.value) == (
        "recipe 'no-such-recipe' not found: neither a file nor a shipped recipe "
        f"({', '.join(shipped)})"
    )
