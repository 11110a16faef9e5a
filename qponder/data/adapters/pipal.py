"""PIPAL (NTIRE training release): ``Train_Label/A0001.txt`` ... with lines ``name,elo``.

Scores are Elo ratings from pairwise comparisons (higher is better, no fixed bound).
Distorted images live in ``Train_Dist/`` or, as some mirrors ship them, in
``Distortion_1`` .. ``Distortion_4``; references in ``Train_Ref/A0001.bmp``. Only the
training labels are public, so the split is seeded and keeps each reference on one side.
"""

from __future__ import annotations

from pathlib import Path

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_text
from qponder.data.paths import ImageResolver
from qponder.errors import DatasetError

LABEL_DIRS = ("Train_Label", "train_label", "Label")
DIST_DIRS = ("Train_Dist", "Distortion_1", "Distortion_2", "Distortion_3", "Distortion_4")


def _label_files(path: Path) -> tuple[Path, list[Path]]:
    """Dataset root and label files for a root folder, a label folder or one label file."""
    if path.is_file():
        root = path.parent.parent if path.parent.name.lower().endswith("label") else path.parent
        return root, [path]
    if not path.is_dir():
        raise DatasetError(f"pipal: {path} does not exist")
    if path.name.lower().endswith("label"):
        return path.parent, sorted(path.glob("*.txt"))
    for name in LABEL_DIRS:
        folder = path / name
        if folder.is_dir():
            return path, sorted(folder.glob("*.txt"))
    raise DatasetError(f"pipal: no Train_Label/ folder of .txt label files under {path}")


def read(ctx: AdapterContext) -> AdapterResult:
    """Read PIPAL from its root folder, its label folder or one label file."""
    root, files = _label_files(ctx.path)
    if not files:
        raise DatasetError(f"pipal: no .txt label files for {ctx.path}")
    images = ImageResolver(root, (), override=ctx.images)
    subdirs = [d for d in DIST_DIRS if images.fs.find(images.base, d)] or ["Train_Dist"]
    for label in files:
        for line_no, line in enumerate(read_text(label).splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.replace("\t", ",").split(",")]
            if len(parts) < 2:
                ctx.collector.error(label, line_no, f"expected 'name,elo', got {line.strip()!r}")
                continue
            name = parts[0]
            ref = name.split("_")[0]
            ctx.collector.add(
                file=label,
                line=line_no,
                id=name,
                image_path=images.resolve(name, subdirs=subdirs),
                raw=parts[1],
                meta={"ref_image": f"{ref}.bmp"},
            )
    return AdapterResult(label_file=files[0].parent, group_key="ref_image")
