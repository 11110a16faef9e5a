"""KonIQ-10k: ``koniq10k_scores_and_distributions.csv`` + ``koniq10k_distributions_sets.csv``.

The MOS is the mean of 5-point ACR ratings (the ``MOS`` column of the scores file, 1-5). The
sets file carries the official split (training 7,058 / validation 1,000 / test 2,015) and the
rating distribution ``c1..c5``; when only the sets file is present, the 1-5 MOS is computed
from the distribution (it equals the scores file's MOS) and the sets file's rescaled
z-score MOS (1-100) is kept as ``meta["mos_zscore"]``.
"""

from __future__ import annotations

from pathlib import Path

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import parse_float, read_csv_rows, try_float
from qponder.data.paths import find_file, root_and_file

SCORES = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
SET_NAMES = {"training": "train", "validation": "val", "test": "test"}
_COUNTS = ("c1", "c2", "c3", "c4", "c5")


def read(ctx: AdapterContext) -> AdapterResult:
    """Read KonIQ-10k from its root folder or either label file."""
    root, label = root_and_file(ctx.path, [SCORES, SETS], "koniq")
    folder = label.parent
    scores = label if label.name.lower() == SCORES else find_file(folder, [SCORES], depth=0)
    sets = label if label.name.lower() == SETS else find_file(folder, [SETS], depth=0)
    images = ctx.resolver(root)
    splits, set_rows = _read_sets(ctx, sets) if sets else ({}, {})
    if scores is not None:
        _read_scores(ctx, scores, images, splits)
        return AdapterResult(label_file=scores)
    for name, (line, row) in set_rows.items():
        try:
            counts = [parse_float(row[c]) or 0.0 for c in _COUNTS]
        except ValueError:
            ctx.collector.error(sets, line, "rating distribution c1..c5 is not numeric")
            continue
        mos = sum((k + 1) * c for k, c in enumerate(counts)) / (sum(counts) or float("nan"))
        ctx.collector.add(
            file=sets,
            line=line,
            id=name,
            image_path=images.resolve(name),
            raw=mos,
            std=try_float(row.get("SD")),
            split=splits.get(name),
            meta={"mos_zscore": try_float(row.get("MOS")), "n_ratings": row.get("c_total")},
        )
    return AdapterResult(label_file=sets)


def _read_sets(ctx: AdapterContext, path: Path) -> tuple[dict[str, str], dict[str, tuple]]:
    _, rows = read_csv_rows(path, ["image_name", "set"])
    splits: dict[str, str] = {}
    set_rows: dict[str, tuple] = {}
    for line, row in rows:
        name = row["image_name"]
        split = SET_NAMES.get(row["set"].lower())
        if split is None:
            ctx.collector.error(
                path, line, f"unknown set {row['set']!r} (training/validation/test)"
            )
            continue
        splits[name] = split
        set_rows[name] = (line, row)
    return splits, set_rows


def _read_scores(ctx: AdapterContext, path: Path, images, splits: dict[str, str]) -> None:
    _, rows = read_csv_rows(path, ["image_name", "MOS"])
    for line, row in rows:
        name = row["image_name"]
        meta = {"mos_zscore": try_float(row["MOS_zscore"])} if row.get("MOS_zscore") else {}
        ctx.collector.add(
            file=path,
            line=line,
            id=name,
            image_path=images.resolve(name),
            raw=row["MOS"],
            std=try_float(row.get("SD")),
            split=splits.get(name),
            meta=meta,
        )
