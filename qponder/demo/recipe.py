"""The demo's recipe: loaded with its ``--quick`` and ``--set`` overrides, pointed at a demo
directory, and recorded there as ``recipe.yaml`` for every stage to run with."""

from __future__ import annotations

import os
from collections.abc import Sequence

import yaml

from qponder.config import Recipe, load_recipe, recipe_to_dict
from qponder.demo.config import DEMO_SECTIONS, demo_settings
from qponder.demo.paths import DemoPaths
from qponder.errors import QponderError
from qponder.runfiles import write_text_atomic


def demo_recipe(
    config: str | os.PathLike = "tiny-demo", quick: bool = False, overrides: Sequence[str] = ()
) -> Recipe:
    """The demo's recipe: ``config`` with, for ``quick``, its ``demo.quick`` overrides, then
    ``overrides`` (``key=value`` strings as given to ``--set``); its ``demo`` section checked
    with the rest (:func:`qponder.demo.config.demo_settings` reads it)."""
    recipe = load_recipe(config, list(overrides), sections=DEMO_SECTIONS)
    quick_overrides = demo_settings(recipe).quick
    if quick and quick_overrides:
        recipe = load_recipe(config, [*quick_overrides, *overrides], sections=DEMO_SECTIONS)
    return recipe


def bind_paths(recipe: Recipe, paths: DemoPaths) -> Recipe:
    """Point ``recipe``'s validation and evaluation at the demo's own data (in place;
    returns it). Each stage names its model on its command line."""
    recipe.sft.validation.dataset = paths.dataset
    recipe.grpo.validation.dataset = paths.dataset
    recipe.eval.datasets = [paths.dataset]
    recipe.eval.split = "test"
    recipe.eval.limit = demo_settings(recipe).eval_limit
    recipe.model.path = None
    return recipe


def write_recipe(recipe: Recipe, paths: DemoPaths) -> None:
    """Write ``recipe.yaml``.

    Raises:
        QponderError: The directory holds a recipe.yaml of a different recipe (resuming
            across recipes would mix two experiments).
    """
    text = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
    if paths.recipe.is_file() and paths.recipe.read_text() != text:
        raise QponderError(
            f"{paths.root} holds a demo made with another recipe ({paths.recipe}); "
            "use another --out, or delete the folder to start again"
        )
    paths.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.recipe, text)


__all__ = ["bind_paths", "demo_recipe", "write_recipe"]
