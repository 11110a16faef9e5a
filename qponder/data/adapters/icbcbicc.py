"""The unified CSVs of the icbcbicc/IQA-Dataset collection (``csv/<NAME>.txt``).

Columns ``dis_img_path,dis_type[,ref_img_path],score`` (some files add more, kept in
``meta``); ``score`` is the dataset's native MOS/DMOS, mapped with the range of the
collection table in ``catalog.yaml`` chosen by the file name (``KonIQ-10k.csv`` ->
``KonIQ-10k``). Image paths start with the dataset folder (``KonIQ-10k/1024x768/...``) and
are resolved against ``--images`` (the collection's image root), default the CSV's folder.
"""

from __future__ import annotations

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.catalog import normalise_key, scale_from_entry
from qponder.data.labels import read_csv_rows
from qponder.data.paths import ImageResolver
from qponder.errors import DatasetError


def collection_entry(ctx: AdapterContext, stem: str) -> tuple[str, dict]:
    """The collection-table entry for a CSV file name (ignoring case and punctuation)."""
    table = ctx.info.raw.get("collection") or {}
    key = normalise_key(stem)
    for name, entry in table.items():
        if normalise_key(name) == key:
            return name, entry
    raise DatasetError(
        f"icbcbicc: no range known for {stem!r}; known: {', '.join(table)} "
        "(for another file, use generic: with a declared mos_range)"
    )


def read(ctx: AdapterContext) -> AdapterResult:
    """Read one icbcbicc CSV."""
    label = ctx.path
    if not label.is_file():
        raise DatasetError(f"icbcbicc: expected a CSV file of the collection, got {label}")
    name, entry = collection_entry(ctx, label.stem)
    scale = scale_from_entry(entry)
    images = ImageResolver(label.parent, (), override=ctx.images)
    header, rows = read_csv_rows(label, ["dis_img_path", "score"])
    extra = [h for h in header if h not in ("dis_img_path", "score", "dis_type", "ref_img_path")]
    for line, row in rows:
        path = row["dis_img_path"]
        meta = {"collection_dataset": name}
        if row.get("dis_type"):
            meta["distortion"] = row["dis_type"]
        if row.get("ref_img_path"):
            meta["ref_image"] = row["ref_img_path"]
        meta.update({k: row[k] for k in extra if row.get(k) not in (None, "")})
        ctx.collector.add(
            file=label,
            line=line,
            id=path,
            image_path=images.resolve(path),
            raw=row["score"],
            meta=meta,
            scale=scale,
        )
    return AdapterResult(label_file=label, group_key="ref_image")
