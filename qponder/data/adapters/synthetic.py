"""The synthetic dataset written by ``qponder data synth`` (``DIR/labels.csv``).

Reads the labels back with their metadata: ``meta["distortions"]`` is the list of
``{"kind", "level"}`` applied, ``meta["content"]`` the source scene, and the per-aspect
severities are numbers; the split is the one the generator drew (disjoint in content).
"""

from __future__ import annotations

import json

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.adapters.generic import label_file
from qponder.data.labels import read_csv_rows, try_float
from qponder.data.paths import ImageResolver
from qponder.data.synthetic import SEVERITY_COLUMNS

_INTEGER = ("level", *SEVERITY_COLUMNS)
_TEXT = ("image", "mos", "std", "split", "distortions", "content", "content_kind", "distortion")


def read(ctx: AdapterContext) -> AdapterResult:
    """Read ``DIR/labels.csv`` (or the file itself)."""
    path = label_file(ctx.path, "synthetic")
    images = ImageResolver(path.parent, (), override=ctx.images)
    header, rows = read_csv_rows(path, ["image", "mos", "split", "distortions", "content"])
    for line, row in rows:
        try:
            distortions = json.loads(row["distortions"])
        except json.JSONDecodeError:
            ctx.collector.error(path, line, "column 'distortions' is not JSON")
            continue
        meta = {
            "distortions": distortions,
            "content": row["content"],
            "content_kind": row.get("content_kind", ""),
            "distortion": row.get("distortion", ""),
        }
        for key in header:
            if key not in _TEXT:
                value = try_float(row[key])
                if key in _INTEGER and value is not None and value.is_integer():
                    value = int(value)
                meta[key] = value if value is not None else row[key]
        ctx.collector.add(
            file=path,
            line=line,
            id=row["image"],
            image_path=images.resolve(row["image"]),
            raw=row["mos"],
            std=try_float(row.get("std")),
            split=row["split"] or None,
            meta=meta,
        )
    return AdapterResult(label_file=path, group_key="content")
