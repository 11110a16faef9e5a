"""``qponder data convert``: any dataset as the generic JSONL that ``generic:`` reads back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from qponder.data.datasets import load_dataset
from qponder.runfiles import RunFileError, write_text_atomic


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

    Raises:
        RunFileError: ``out`` is a folder or cannot be written (nothing is left behind).
    """
    out = Path(out)
    if out.is_dir():
        raise RunFileError(f"--out {out}: is a directory; give the .jsonl file to write")
    ds = load_dataset(spec, split, images=images, on_error=on_error)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFileError(f"--out {out}: cannot create its folder ({exc.strerror})") from None
    base = out.parent.absolute()
    lines = []
    for sample in ds:
        record = sample.to_record()
        record["image"] = _relative(sample.image_path, base)
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text_atomic(out, "".join(lines))  # no half file, no temporary left behind
    return len(ds)


def _relative(path: str, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return path
