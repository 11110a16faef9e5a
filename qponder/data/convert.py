"""``qponder data convert``: any dataset as the generic JSONL that ``generic:`` reads back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from qponder.data.datasets import load_dataset


def convert_dataset(
    spec: str,
    out: str | Path,
    images: str | None = None,
    split: str | None = None,
    *,
    on_error: str = "raise",
) -> int:
    """Write a dataset as generic JSON Lines.

    One object per sample: ``id``, ``image`` (relative to the output file's folder when
    possible), ``mos`` (on [1, 5]), ``mos_raw``, ``dataset``, ``split``, ``std`` when known and
    ``meta``. ``load_dataset("generic:" + out)`` gives back the same ids, MOS, splits and
    images.

    Args:
        spec: ``NAME:PATH`` of the source dataset.
        out: Output ``.jsonl`` path (parent folders are created).
        images: Image folder of the source, when not where the adapter looks.
        split: Only this split; default all.
        on_error: ``raise`` or ``skip`` bad label rows.

    Returns:
        Number of samples written.
    """
    ds = load_dataset(spec, split, images=images, on_error=on_error)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.absolute()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for sample in ds:
            record = sample.to_record()
            record["image"] = _relative(sample.image_path, base)
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return len(ds)


def _relative(path: str, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return path
