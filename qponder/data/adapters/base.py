"""What an adapter receives and returns.

An adapter is a function ``read(ctx: AdapterContext) -> AdapterResult``: it reads the
original release files found at ``ctx.path``, hands every row to ``ctx.collector.add`` (which
maps the score to [1, 5] and applies the error policy) and says how a seeded split must
group the samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qponder.data.catalog import DatasetInfo
from qponder.data.labels import Collector
from qponder.data.paths import ImageResolver


@dataclass
class AdapterContext:
    """Inputs of an adapter.

    Attributes:
        name: Canonical adapter name.
        path: The spec's PATH: a dataset root folder or a label file.
        info: The adapter's catalogue entry.
        images: Image folder given by the user (``--images``), overriding the default.
        collector: Receives the rows.
    """

    name: str
    path: Path
    info: DatasetInfo
    images: str | Path | None
    collector: Collector

    def resolver(self, root: Path, candidates: Sequence[str] | None = None) -> ImageResolver:
        """Image resolver under ``root`` (the catalogue's image folders unless given)."""
        dirs = self.info.image_dirs if candidates is None else candidates
        return ImageResolver(root, dirs, override=self.images)


@dataclass
class AdapterResult:
    """What an adapter tells the loader beyond its samples.

    Attributes:
        label_file: The main label file read (names the default split file).
        group_key: ``meta`` key whose value must share a split in a seeded split (e.g.
            ``"ref_image"``); ``None`` splits sample by sample.
    """

    label_file: Path
    group_key: str | None = None
