"""SPAQ: ``Annotations/MOS and Image attribute scores.xlsx`` and ``TestImage/*.jpg``.

MOS on a 0-100 scale; the five attribute scores (brightness, colorfulness, contrast,
noisiness, sharpness; 0-100) are kept in ``meta``. SPAQ ships no split.
"""

from __future__ import annotations

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_xlsx_rows, try_float
from qponder.data.paths import root_and_file

XLSX = "MOS and Image attribute scores.xlsx"
ATTRIBUTES = ("Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness")


def read(ctx: AdapterContext) -> AdapterResult:
    """Read SPAQ from its root folder or the annotation workbook."""
    root, label = root_and_file(ctx.path, [XLSX, f"Annotations/{XLSX}"], "spaq")
    if ctx.path.is_file() and label.parent.name.lower() == "annotations":
        root = label.parent.parent
    images = ctx.resolver(root)
    for line, row in read_xlsx_rows(label, ["Image name", "MOS"]):
        name = str(row["Image name"]).strip()
        meta = {}
        for attr in ATTRIBUTES:
            value = try_float(row.get(attr))
            if value is not None:
                meta[attr.lower()] = value
        ctx.collector.add(
            file=label,
            line=line,
            id=name,
            image_path=images.resolve(name),
            raw=row["MOS"],
            meta=meta,
        )
    return AdapterResult(label_file=label)
