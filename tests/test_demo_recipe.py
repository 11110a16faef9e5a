"""qponder.demo.recipe: the demo's recipe, its --quick overrides and the directory it binds;
its ``demo`` section, which the demo checks and every other command accepts unread."""

from __future__ import annotations

import pytest
import yaml

from qponder.cli import main
from qponder.config import EXTENSION_SECTIONS, ConfigError, load_recipe, recipe_to_dict
from qponder.demo.config import DemoConfig, demo_settings
from qponder.demo.paths import DemoPaths
from qponder.demo.recipe import demo_recipe, write_recipe
from qponder.errors import QponderError


def test_quick_applies_the_recipe_quick_overrides_and_set_goes_last():
    full, quick = demo_recipe(), demo_recipe(quick=True)
    assert demo_settings(quick).n_images < demo_settings(full).n_images
    assert demo_settings(demo_recipe(quick=True, overrides=["demo.n_images=123"])).n_images == 123


def test_a_directory_made_by_another_recipe_is_refused(tmp_path):
    paths = DemoPaths(tmp_path / "demo")
    write_recipe(demo_recipe(), paths)
    write_recipe(demo_recipe(), paths)  # the same recipe: resuming is fine
    with pytest.raises(QponderError, match="another recipe"):
        write_recipe(demo_recipe(overrides=["demo.n_images=100"]), paths)


def test_the_demo_checks_its_section_with_the_rest_of_the_recipe(capsys):
    with pytest.raises(ConfigError, match=r"demo\.n_images must be >= 20") as caught:
        demo_recipe(overrides=["demo.n_images=5", "demo.tiny.colour=1", "eval.batch_size=0"])
    message = str(caught.value)
    assert "demo.tiny.colour: unknown key" in message and "eval.batch_size" in message
    # from the command line: one line naming the key, exit 2, before any work
    assert main(["demo", "--out", "unused", "--set", "demo.photo_share=2"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert line.startswith("qponder demo: error:") and "demo.photo_share must lie in [0, 1]" in line


def test_every_other_command_accepts_the_demo_section_without_reading_it(tmp_path):
    assert EXTENSION_SECTIONS == ("demo",)
    recipe = load_recipe("tiny-demo", ["demo.n_images=5"])  # the demo would refuse it
    assert recipe.extensions["demo"]["n_images"] == 5
    with pytest.raises(ConfigError, match="demo.n_images must be >= 20"):
        demo_settings(recipe)
    # the recipe round-trips with the section where a recipe file has it
    recipe = load_recipe("tiny-demo", ["demo.n_images=40"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    assert list(yaml.safe_load(path.read_text()))[-2:] == ["demo", "seed"]
    assert load_recipe(path) == recipe
    settings = demo_settings(demo_recipe(path))  # built by the demo's own load
    assert isinstance(settings, DemoConfig) and settings == demo_settings(recipe)
    assert settings.n_images == 40


@pytest.mark.parametrize("section", ["dmeo", "extensions"])
def test_any_other_unknown_section_is_still_an_error(section):
    with pytest.raises(ConfigError, match=rf"{section}: unknown key; known: \[.*'demo'"):
        load_recipe(None, [f"{section}.n_images=5"])


def test_a_demo_section_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match="demo: expected a mapping"):
        load_recipe(None, ["demo=3"])
