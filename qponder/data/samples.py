"""The records every dataset adapter produces: one :class:`Sample` per rated image.

Scores are on the common scale of DESIGN §3: [1, 5], higher is better. The dataset's own
value is kept in ``mos_raw`` so that nothing is lost by the mapping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
# the split name that takes every sample (``--split all``), the same as giving no split
ALL_SAMPLES = "all"
SPLIT_CHOICES = (*SPLITS, ALL_SAMPLES)


@dataclass(frozen=True)
class Sample:
    """One rated image.

    Attributes:
        id: Unique within the dataset (usually the image name as the label file gives it).
        image_path: Absolute path of the image; the file may not exist (label-only folders).
        mos: Mean opinion score on [1, 5], higher is better.
        mos_raw: The dataset's native value (MOS, DMOS, Elo, ...), as read.
        dataset: Adapter name, e.g. ``"koniq"``.
        split: ``"train"``, ``"val"``, ``"test"``, or ``None`` when not assigned.
        std: Standard deviation of the opinion scores on the [1, 5] scale, when known.
        meta: Adapter extras: reference image, distortion type and level, prompt, ...
    """

    id: str
    image_path: str
    mos: float
    mos_raw: float
    dataset: str
    split: str | None
    std: float | None = None
    meta: dict = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Return the sample as a JSON-serialisable dict (the generic JSONL fields)."""
        record: dict[str, Any] = {
            "id": self.id,
            "image": self.image_path,
            "mos": self.mos,
            "mos_raw": self.mos_raw,
            "dataset": self.dataset,
            "split": self.split,
        }
        if self.std is not None:
            record["std"] = self.std
        if self.meta:
            record["meta"] = self.meta
        return record


@dataclass
class LoadedDataset:
    """The samples of one dataset spec, after split selection.

    Attributes:
        name: Adapter name, e.g. ``"koniq"``.
        spec: The ``NAME:PATH`` string it was loaded from.
        samples: The samples, in label-file order.
        skipped: Rows left out with ``on_error="skip"``: ``{"file", "line", "reason"}``.
        label_file: The main label file that was read.
        split_file: The split file used or written for a seeded split, if any.
        split: The split selected; None: every sample.
        total: Samples of the dataset before the split was selected (bad rows left out).
        drawn: How many of ``samples`` have a split drawn with ``split_seed`` (the labels
            gave them none, or a share of the official train split became val); the
            others have the split their labels give.
        split_seed: Seed of the drawn split.
    """

    name: str
    spec: str
    samples: list[Sample]
    skipped: list[dict] = field(default_factory=list)
    label_file: Path | None = None
    split_file: Path | None = None
    split: str | None = None
    total: int | None = None
    drawn: int = 0
    split_seed: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def describe_selection(self) -> str:
        """Which samples were selected, how, and how many, in words, e.g. ``split test drawn
        with seed 0 (kept in FILE): 200 of 1000 samples``."""
        n, total = len(self.samples), self.total if self.total is not None else len(self.samples)
        size = f"{n} of {total} samples"
        if self.split is None:
            return f"every sample, no split selected: {size}"
        kept = f"kept in {self.split_file}" if self.split_file else "not saved"
        if not self.drawn:
            return f"split {self.split} as the labels give it: {size}"
        if self.drawn == n:
            return f"split {self.split} drawn with seed {self.split_seed} ({kept}): {size}"
        return (
            f"split {self.split}, {n - self.drawn} as the labels give it and {self.drawn} drawn "
            f"with seed {self.split_seed} ({kept}): {size}"
        )

    def split_counts(self) -> dict[str, int]:
        """Number of samples per split name (``"none"`` for unassigned samples)."""
        counts = Counter(s.split or "none" for s in self.samples)
        return {k: counts[k] for k in (*SPLITS, "none") if counts[k]}
