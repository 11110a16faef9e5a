"""BIQ2021: ``Images/`` with ``Train (Images and MOS).csv`` / ``Test (Images and MOS).csv``.

Header ``Image Name,MOS,,`` (two empty trailing columns, as distributed); MOS is the mean of
30 ratings on a 5-point scale rescaled by the authors to [0, 1]. The official split is
train (10,000) / test (2,000); no val split ships, so val is carved from train with the
split seed (see docs/datasets.md).
"""

from __future__ import annotations

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_csv_rows
from qponder.data.paths import find_file
from qponder.errors import DatasetError

FILES = {"train": "Train (Images and MOS).csv", "test": "Test (Images and MOS).csv"}


def read(ctx: AdapterContext) -> AdapterResult:
    """Read BIQ2021 from its root folder (both files) or one of its label files."""
    path = ctx.path
    if path.is_file():
        root = path.parent
        split = next((s for s, f in FILES.items() if f.lower() == path.name.lower()), None)
        if split is None:
            split = "test" if "test" in path.name.lower() else "train"
        labels = [(split, path)]
    elif path.is_dir():
        root = path
        labels = [(s, f) for s, name in FILES.items() if (f := find_file(path, [name], depth=1))]
        if not labels:
            raise DatasetError(f"biq2021: no {' or '.join(map(repr, FILES.values()))} under {path}")
    else:
        raise DatasetError(f"biq2021: {path} does not exist")
    images = ctx.resolver(root)
    for split, label in labels:
        _, rows = read_csv_rows(label, ["Image Name", "MOS"])
        for line, row in rows:
            name = row["Image Name"]
            ctx.collector.add(
                file=label,
                line=line,
                id=name,
                image_path=images.resolve(name),
                raw=row["MOS"],
                split=split,
            )
    return AdapterResult(label_file=labels[0][1])
