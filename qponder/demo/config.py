"""The ``demo`` section of a recipe: the data and the tiny model ``qponder demo`` builds, and
how it runs the stages.

The section is one of :data:`qponder.config.EXTENSION_SECTIONS`: every command accepts a
recipe that has it (the shipped ``tiny-demo``), and only the demo knows, and checks, what it
holds. The demo loads its recipe with ``load_recipe(..., sections=DEMO_SECTIONS)``, so a bad
``demo.*`` key is reported with the rest of the recipe's problems, on one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qponder.config import ConfigError, Recipe, build_dataclass

DEMO_SECTION = "demo"


@dataclass
class TinyModelConfig:
    """Sizes of the tiny offline Qwen2.5-VL (:func:`qponder.models.tiny.build_tiny_model`)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vocab_size: int = 1024
    seed: int = 0
    # perception pretraining of the vision tower on the training images' low-level
    # statistics (qponder.demo.pretext; no MOS); 0 steps = a random encoder
    pretext_steps: int = 0
    pretext_learning_rate: float = 1e-3
    pretext_batch_size: int = 32


@dataclass
class DemoConfig:
    """``qponder demo``: the data and model it builds, and how it runs the stages."""

    n_images: int = 1000  # synthetic images (70 % train, 10 % val, 20 % test)
    data_seed: int = 0
    kinds: list[str] | None = None  # distortion kinds of the synthetic data; None = all
    photo_share: float = 0.35  # photograph crops among the contents; 0 = procedural only
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    eval_limit: int | None = None  # test images scored per stage; None = the whole split
    parallel_sft: bool = True  # train the CoT and answer-only SFT side by side, a core each
    quick: list[str] = field(default_factory=list)  # --set overrides applied by --quick

    def __post_init__(self) -> None:
        problems = []
        if self.n_images < 20:
            problems.append("demo.n_images must be >= 20")
        if not 0.0 <= self.photo_share <= 1.0:
            problems.append("demo.photo_share must lie in [0, 1]")
        if self.eval_limit is not None and self.eval_limit < 3:
            problems.append("demo.eval_limit must be >= 3 (SRCC needs three images), or null")
        if problems:
            raise ConfigError("; ".join(problems))


# what the demo passes to load_recipe(sections=...) to have its section checked
DEMO_SECTIONS: dict[str, type] = {DEMO_SECTION: DemoConfig}


def demo_settings(recipe: Recipe) -> DemoConfig:
    """The ``demo`` section of ``recipe``, validated.

    Args:
        recipe: Loaded with ``sections=DEMO_SECTIONS`` (the section is then built already),
            or without (it is then checked now).

    Returns:
        The :class:`DemoConfig` (its defaults where the recipe has no ``demo`` section).

    Raises:
        ConfigError: Listing every problem of the section, each with its ``demo.`` key.
    """
    section = recipe.extensions.get(DEMO_SECTION)
    if isinstance(section, DemoConfig):
        return section
    problems: list[str] = []
    settings = build_dataclass(DemoConfig, section or {}, f"{DEMO_SECTION}.", problems)
    if problems:
        raise ConfigError("invalid recipe: " + "; ".join(problems))
    return settings


__all__ = ["DEMO_SECTION", "DEMO_SECTIONS", "DemoConfig", "TinyModelConfig", "demo_settings"]
