"""The dataset catalogue (``catalog.yaml``) and the mapping of native scores to [1, 5].

Every adapter takes its nominal MOS range and direction from the catalogue, so the table in
docs/datasets.md, the YAML file and the code cannot drift apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml

from qponder.errors import DatasetError


@dataclass(frozen=True)
class ScoreScale:
    """How a native score maps to the common [1, 5] scale (higher is better).

    Attributes:
        lo: Nominal minimum of the native score.
        hi: Nominal maximum of the native score.
        lower_better: True for DMOS-style scores, which are flipped.
        clip: Clamp values outside [lo, hi] instead of rejecting them.
    """

    lo: float
    hi: float
    lower_better: bool = False
    clip: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise DatasetError(f"invalid MOS range [{self.lo}, {self.hi}]: need lo < hi")

    def contains(self, raw: float) -> bool:
        """Whether ``raw`` lies in the nominal range (with a rounding tolerance)."""
        tol = 1e-9 * (self.hi - self.lo)
        return self.lo - tol <= raw <= self.hi + tol

    def to_mos(self, raw: float) -> float:
        """Map a native score to [1, 5], higher is better (clamped to [1, 5]).

        Example:
            >>> ScoreScale(0, 100).to_mos(75.0)
            4.0
            >>> ScoreScale(0, 1, lower_better=True).to_mos(0.25)
            4.0
        """
        unit = (raw - self.lo) / (self.hi - self.lo)
        if self.lower_better:
            unit = 1.0 - unit
        return min(5.0, max(1.0, 1.0 + 4.0 * unit))

    def std_to_mos(self, std_raw: float) -> float:
        """Map a native standard deviation to the [1, 5] scale."""
        return 4.0 * std_raw / (self.hi - self.lo)

    def describe(self) -> str:
        """``[lo, hi], higher is better`` and the like, for messages."""
        direction = "lower is better" if self.lower_better else "higher is better"
        return f"[{_num(self.lo)}, {_num(self.hi)}], {direction}"


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogue entry.

    Attributes:
        name: Canonical adapter name.
        title: Human-readable name.
        aliases: Other names accepted in a spec.
        scale: Native score range and direction (``None`` for collections).
        image_dirs: Image folders tried in order, relative to the dataset root.
        split: ``official``, ``official_no_val`` or ``seeded``.
        default_dir: Folder name under ``$QPONDER_DATA_ROOT`` when a spec has no path.
        raw: The whole YAML entry.
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    scale: ScoreScale | None
    image_dirs: tuple[str, ...]
    split: str
    default_dir: str | None
    raw: dict = field(repr=False, default_factory=dict)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def scale_from_entry(entry: dict[str, Any]) -> ScoreScale | None:
    """Build a :class:`ScoreScale` from a YAML entry with ``mos_range``/``lower_better``."""
    rng = entry.get("mos_range")
    if rng is None:
        return None
    return ScoreScale(
        float(rng[0]),
        float(rng[1]),
        lower_better=bool(entry.get("lower_better", False)),
        clip=bool(entry.get("clip", False)),
    )


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    """Return the parsed ``catalog.yaml`` shipped with the package."""
    text = resources.files("qponder.data").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def dataset_info(name: str) -> DatasetInfo:
    """Return the catalogue entry of an adapter name or alias (case-insensitive).

    Raises:
        DatasetError: The name is not in the catalogue.
    """
    datasets = load_catalog()["datasets"]
    key = name.strip().lower()
    for canonical, entry in datasets.items():
        if key == canonical or key in [a.lower() for a in entry.get("aliases") or []]:
            return DatasetInfo(
                name=canonical,
                title=entry.get("title", canonical),
                aliases=tuple(entry.get("aliases") or ()),
                scale=scale_from_entry(entry),
                image_dirs=tuple(entry.get("images") or ()),
                split=entry.get("split", "seeded"),
                default_dir=entry.get("default_dir"),
                raw=entry,
            )
    known = ", ".join(sorted(datasets))
    raise DatasetError(f"unknown dataset {name!r}; known: {known}")


def dataset_names() -> list[str]:
    """Canonical names of every adapter in the catalogue."""
    return list(load_catalog()["datasets"])


def split_fractions() -> dict[str, float]:
    """Fractions of a seeded split, e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``."""
    return dict(load_catalog()["seeded_split"])


def val_from_train_fraction() -> float:
    """Share of an official train split carved out as val when no val split ships."""
    return float(load_catalog()["val_from_train"])


def normalise_key(name: str) -> str:
    """Lower-case a name and drop everything but letters and digits (``KonIQ-10k`` -> ``koniq10k``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())
