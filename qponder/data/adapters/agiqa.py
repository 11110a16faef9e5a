"""AGIQA-3K: ``data.csv`` (``name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,
std_align``).

The quality MOS (``mos_quality``, 0-5) is the score; text-image alignment is kept in
``meta``. No split ships; the seeded split keeps every generator's image of one prompt on
the same side, so that test prompts are unseen.
"""

from __future__ import annotations

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_csv_rows, try_float
from qponder.data.paths import root_and_file


def read(ctx: AdapterContext) -> AdapterResult:
    """Read AGIQA-3K from its root folder or ``data.csv``."""
    root, label = root_and_file(ctx.path, ["data.csv"], "agiqa3k")
    images = ctx.resolver(root)
    header, rows = read_csv_rows(label, ["name", "mos_quality"])
    for line, row in rows:
        name = row["name"]
        meta = {k: row[k] for k in ("prompt", "adj1", "adj2", "style") if row.get(k)}
        for k in ("mos_align", "std_align"):
            if try_float(row.get(k)) is not None:
                meta[k] = try_float(row[k])
        meta["generator"] = name.split("_")[0]
        ctx.collector.add(
            file=label,
            line=line,
            id=name,
            image_path=images.resolve(name),
            raw=row["mos_quality"],
            std_raw=row.get("std_quality"),
            meta=meta,
        )
    return AdapterResult(label_file=label, group_key="prompt")
