"""Generic labels: a CSV or JSON Lines file with ``image`` and ``mos`` per row.

Optional columns: ``id`` (default: the image path as written), ``std`` (on the file's
scale), ``split`` (train/val/test; the others get a seeded split), ``ref`` (rows with the
same ``ref`` share a split). Any other column is kept in ``meta``; a JSON ``meta`` object is
merged into it. Image paths are relative to the label file's folder (or ``--images``).

The MOS is taken to be on [1, 5], higher is better, unless the file declares its range:

CSV, in comment lines before the header::

    # mos_range: 0, 100
    # lower_better: false
    image,mos
    a.jpg,73.2

JSON Lines, in a first object without ``image``::

    {"mos_range": [0, 100], "lower_better": false}
    {"image": "a.jpg", "mos": 73.2}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.catalog import ScoreScale
from qponder.data.labels import read_csv_rows, read_jsonl_rows, read_text, try_float
from qponder.data.paths import ImageResolver
from qponder.errors import DatasetError

RESERVED = ("image", "mos", "id", "std", "split", "ref")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_DECLARATION = re.compile(r"^#\s*(mos_range|lower_better)\s*[:=]\s*(.*?)\s*$", re.IGNORECASE)


def label_file(path: Path, dataset: str = "generic") -> Path:
    """The label file of a spec path: the file itself, or labels.jsonl/.csv in a folder."""
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("labels.jsonl", "labels.csv"):
            if (path / name).is_file():
                return path / name
        raise DatasetError(f"{dataset}: no labels.jsonl or labels.csv in {path}")
    raise DatasetError(f"{dataset}: {path} does not exist")


def make_scale(declared: dict[str, Any], file: Path, line: int, default: ScoreScale) -> ScoreScale:
    """Build the score scale from a file's declarations (``mos_range``, ``lower_better``)."""
    if not declared:
        return default
    rng = declared.get("mos_range", [default.lo, default.hi])
    if isinstance(rng, str):
        rng = [p for p in re.split(r"[\s,;\[\]]+", rng) if p]
    values = [try_float(v) for v in rng] if isinstance(rng, (list, tuple)) else []
    if len(values) != 2 or None in values or not values[0] < values[1]:
        raise DatasetError(f"{file}:{line}: mos_range must be two numbers lo < hi, got {rng!r}")
    flag = declared.get("lower_better", False)
    if isinstance(flag, str):
        if flag.strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise DatasetError(f"{file}:{line}: lower_better must be true or false, got {flag!r}")
        flag = flag.strip().lower() in ("true", "yes", "1")
    return ScoreScale(values[0], values[1], lower_better=bool(flag))


def read_rows(path: Path) -> tuple[dict[str, Any], int, list[tuple[int, dict[str, Any]]]]:
    """Rows of a generic label file, with its declarations and their line number."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = list(read_jsonl_rows(path))
        if (
            rows
            and "image" not in rows[0][1]
            and ("mos_range" in rows[0][1] or "lower_better" in rows[0][1])
        ):
            return rows[0][1], rows[0][0], rows[1:]
        return {}, 1, rows
    text = read_text(path)
    lines = text.splitlines(keepends=True)
    declared: dict[str, Any] = {}
    n = 0
    while n < len(lines) and (lines[n].lstrip().startswith("#") or not lines[n].strip()):
        m = _DECLARATION.match(lines[n].strip())
        if m:
            declared[m.group(1).lower()] = m.group(2)
        n += 1
    header, rows = read_csv_rows(
        path, ["image", "mos"], lower=True, text="".join(lines[n:]), first_line=n + 1
    )
    return declared, 1, list(rows)


def read(ctx: AdapterContext) -> AdapterResult:
    """Read a generic CSV/JSONL label file."""
    path = label_file(ctx.path, ctx.name)
    declared, decl_line, rows = read_rows(path)
    assert ctx.info.scale is not None
    scale = make_scale(declared, path, decl_line, ctx.info.scale)
    images = ImageResolver(path.parent, (), override=ctx.images)
    for line, row in rows:
        add_row(ctx, path, line, row, scale, images)
    return AdapterResult(label_file=path, group_key="ref")


def add_row(
    ctx: AdapterContext,
    path: Path,
    line: int,
    row: dict[str, Any],
    scale: ScoreScale,
    images: ImageResolver,
) -> None:
    """Validate one generic row and hand it to the collector."""
    image = row.get("image")
    if image in (None, ""):
        ctx.collector.error(path, line, "missing 'image'")
        return
    split_text = str(row.get("split") or "").strip().lower()
    split = SPLIT_ALIASES.get(split_text) if split_text else None
    if split_text and split is None:
        ctx.collector.error(
            path, line, f"unknown split {row['split']!r} (expected train, val or test)"
        )
        return
    meta = {
        k: v for k, v in row.items() if k not in RESERVED and k != "meta" and v not in (None, "")
    }
    if isinstance(row.get("meta"), dict):
        meta.update(row["meta"])
    elif isinstance(row.get("meta"), str) and row["meta"].strip().startswith("{"):
        try:
            meta.update(json.loads(row["meta"]))
        except json.JSONDecodeError:
            ctx.collector.error(path, line, "column 'meta' is not a JSON object")
            return
    if row.get("ref") not in (None, ""):
        meta["ref"] = str(row["ref"])
    ctx.collector.add(
        file=path,
        line=line,
        id=str(row.get("id") or image),
        image_path=images.resolve(str(image)),
        raw=row.get("mos"),
        std_raw=row.get("std"),
        split=split,
        meta=meta,
        scale=scale,
    )
