"""qponder.demo.recipe: the demo's recipe, its --quick overrides and the directory it binds."""

from __future__ import annotations

import pytest

from qponder.demo.paths import DemoPaths
from qponder.demo.recipe import demo_recipe, write_recipe
from qponder.errors import QponderError


def test_quick_applies_the_recipe_quick_overrides_and_set_goes_last():
    full, quick = demo_recipe(), demo_recipe(quick=True)
    assert quick.demo.n_images < full.demo.n_images
    assert demo_recipe(quick=True, overrides=["demo.n_images=123"]).demo.n_images == 123


def test_a_directory_made_by_another_recipe_is_refused(tmp_path):
    paths = DemoPaths(tmp_path / "demo")
    write_recipe(demo_recipe(), paths)
    write_recipe(demo_recipe(), paths)  # the same recipe: resuming is fine
    with pytest.raises(QponderError, match="another recipe"):
        write_recipe(demo_recipe(overrides=["demo.n_images=100"]), paths)
