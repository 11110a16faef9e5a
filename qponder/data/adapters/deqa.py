"""DeQA-Score meta JSONs: ``[{id, image, gt_score, gt_score_norm, std, std_norm, ...}]``.

The peer projects (DeQA-Score, Q-Insight, VisualQuality-R1) share these files
(``Data-DeQA-Score/KONIQ/metas/test_koniq_2k.json`` ...). ``gt_score_norm`` is already on
[1, 5] (``4 (mos - min) / (max - min) + 1`` over the dataset) and is used as the MOS;
``gt_score`` is kept as ``mos_raw`` and ``std_norm`` as ``std``. ``image`` is relative to the
``Data-DeQA-Score`` root. The split comes from the file name (``train_*`` / ``test_*``);
JSON Lines files are read too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_jsonl_rows, read_text
from qponder.data.paths import ImageResolver
from qponder.errors import DatasetError

_KEPT = ("level_probs", "level_probs_org", "conversations")


def split_from_name(name: str) -> str | None:
    """``train``/``val``/``test`` when the file name says so (``test_koniq_2k.json``)."""
    words = name.lower().replace("-", "_").replace(".", "_").split("_")
    for word, split in (("train", "train"), ("val", "val"), ("valid", "val"), ("test", "test")):
        if word in words:
            return split
    return None


def _records(path: Path) -> list[tuple[int | str, dict]]:
    if path.suffix.lower() == ".jsonl":
        return list(read_jsonl_rows(path))
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return [(f"record {i}", r) for i, r in enumerate(data)]


def _image_root(path: Path, first_image: str | None) -> Path:
    candidates = [path.parent, path.parent.parent, path.parent.parent.parent]
    if first_image:
        for root in candidates:
            if (root / first_image).exists():
                return root
    if path.parent.name.lower() == "metas":
        return path.parent.parent.parent
    return path.parent


def _meta_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"deqa: {path} does not exist")
    folder = path / "metas" if (path / "metas").is_dir() else path
    files = sorted([*folder.glob("*.json"), *folder.glob("*.jsonl")])
    if not files:
        raise DatasetError(f"deqa: no meta .json files in {folder}")
    return files


def read(ctx: AdapterContext) -> AdapterResult:
    """Read one DeQA meta file, or every meta file of a dataset folder."""
    files = _meta_files(ctx.path)
    for path in files:
        records = _records(path)
        first = next((r.get("image") for _, r in records if isinstance(r, dict)), None)
        root = Path(ctx.images) if ctx.images else _image_root(path, first)
        images = ImageResolver(root, (), override=ctx.images)
        split = split_from_name(path.stem)
        for line, rec in records:
            if not isinstance(rec, dict) or "image" not in rec or "gt_score_norm" not in rec:
                ctx.collector.error(path, line, "record lacks 'image' or 'gt_score_norm'")
                continue
            image = str(rec["image"])
            meta = {k: rec[k] for k in _KEPT if k in rec}
            if rec.get("std") is not None:
                meta["std_raw"] = rec["std"]
            ctx.collector.add(
                file=path,
                line=line,
                id=str(rec.get("id") or image),
                image_path=images.resolve(image),
                raw=rec["gt_score_norm"],
                native=rec.get("gt_score", rec["gt_score_norm"]),
                std=rec.get("std_norm") if isinstance(rec.get("std_norm"), (int, float)) else None,
                split=split,
                meta={**meta, "image_name": os.path.basename(image)},
            )
    return AdapterResult(label_file=files[0])
