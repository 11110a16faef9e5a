"""TID2013: ``mos_with_names.txt`` (lines ``5.51429 i01_01_1.bmp``) and ``distorted_images/``.

MOS from pairwise comparisons, nominally 0-9, higher is better; ``mos_std.txt`` (one value
per line, same order) gives the standard deviation when present. Names are
``i01_08_3.bmp``: reference 1, distortion type 8 (of 24), level 3 (of 5).
"""

from __future__ import annotations

import re

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_text, try_float
from qponder.data.paths import find_file, root_and_file

_NAME = re.compile(r"^([a-z]\d+)_(\d+)_(\d+)\.\w+$", re.IGNORECASE)


def read(ctx: AdapterContext) -> AdapterResult:
    """Read TID2013 from its root folder or ``mos_with_names.txt``."""
    root, label = root_and_file(ctx.path, ["mos_with_names.txt"], "tid2013")
    std_file = find_file(label.parent, ["mos_std.txt"], depth=0)
    stds = read_text(std_file).split() if std_file else []
    images = ctx.resolver(root)
    entry = 0
    for line_no, line in enumerate(read_text(label).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        entry += 1
        if len(parts) < 2:
            ctx.collector.error(label, line_no, f"expected 'mos name', got {line.strip()!r}")
            continue
        score, name = parts[0], parts[1]
        meta = {}
        m = _NAME.match(name)
        if m:
            meta = {
                "ref_image": f"{m.group(1).upper()}.BMP",
                "distortion_type": int(m.group(2)),
                "level": int(m.group(3)),
            }
        ctx.collector.add(
            file=label,
            line=line_no,
            id=name,
            image_path=images.resolve(name),
            raw=score,
            std_raw=try_float(stds[entry - 1]) if entry <= len(stds) else None,
            meta=meta,
        )
    return AdapterResult(label_file=label, group_key="ref_image")
