"""CSIQ: ``csiq.DMOS.xlsx`` (sheet ``all_by_image``) or the ``csiq_label.txt`` variant.

DMOS on [0, 1], lower is better; ``dmos_std`` is its standard deviation. Distorted images
are ``dst_imgs/<type>/<image>.<TYPE>.<level>.png`` (``dst_imgs/awgn/1600.AWGN.1.png``), or
one flat folder (``dst_imgs_all/``); references ``src_imgs/<image>.png``.
"""

from __future__ import annotations

from pathlib import Path

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_text, read_xlsx_rows
from qponder.data.paths import ImageResolver, root_and_file

XLSX = "csiq.DMOS.xlsx"
TXT = "csiq_label.txt"
# dst_type in the workbook -> (folder, token in the file name)
TYPES = {
    "noise": ("awgn", "AWGN"),
    "awgn": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "jpeg2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}


def _image_name(image) -> str:
    if isinstance(image, float) and image.is_integer():
        image = int(image)
    return str(image).strip()


def read(ctx: AdapterContext) -> AdapterResult:
    """Read CSIQ from its root folder, the DMOS workbook or ``csiq_label.txt``."""
    root, label = root_and_file(ctx.path, [XLSX, TXT], "csiq")
    images = ctx.resolver(root)
    if label.suffix.lower() == ".xlsx":
        _read_xlsx(ctx, label, images)
    else:
        _read_txt(ctx, label, images)
    return AdapterResult(label_file=label, group_key="ref_image")


def _read_xlsx(ctx: AdapterContext, label: Path, images: ImageResolver) -> None:
    rows = read_xlsx_rows(label, ["image", "dst_type", "dst_lev", "dmos"], sheet=None)
    for line, row in rows:
        image = _image_name(row["image"])
        dst_type = str(row["dst_type"]).strip().lower()
        if dst_type not in TYPES:
            ctx.collector.error(label, line, f"unknown dst_type {row['dst_type']!r}")
            continue
        folder, token = TYPES[dst_type]
        try:
            level = int(float(row["dst_lev"]))
        except (TypeError, ValueError):
            ctx.collector.error(label, line, f"dst_lev {row['dst_lev']!r} is not a number")
            continue
        name = f"{image}.{token}.{level}.png"
        ctx.collector.add(
            file=label,
            line=line,
            id=name,
            image_path=images.resolve(name, subdirs=[folder]),
            raw=row["dmos"],
            std_raw=row.get("dmos_std"),
            meta={"ref_image": f"{image}.png", "distortion": dst_type, "level": level},
        )


def _read_txt(ctx: AdapterContext, label: Path, images: ImageResolver) -> None:
    folders = {token.lower(): folder for folder, token in TYPES.values()}
    for line_no, line in enumerate(read_text(label).splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) < 2:
            ctx.collector.error(label, line_no, f"expected 'name dmos', got {line.strip()!r}")
            continue
        name = parts[0] if parts[0].lower().endswith(".png") else f"{parts[0]}.png"
        fields = name.split(".")
        meta = {"ref_image": f"{fields[0]}.png"}
        subdirs = []
        if len(fields) == 4:
            subdirs = [folders.get(fields[1].lower(), fields[1])]
            meta["distortion"] = subdirs[0]
            meta["level"] = int(fields[2]) if fields[2].isdigit() else fields[2]
        ctx.collector.add(
            file=label,
            line=line_no,
            id=name,
            image_path=images.resolve(name, subdirs=subdirs),
            raw=parts[1],
            meta=meta,
        )
