"""KADID-10k: ``dmos.csv`` (``dist_img,ref_img,dmos,var``) and ``images/``.

Despite its name the ``dmos`` column is the mean of 5-point degradation-category ratings,
higher is better; ``var`` is its variance. Names are ``I01_02_03.png``: reference 1,
distortion type 2 (of 25), level 3 (of 5).
"""

from __future__ import annotations

import math
import re

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.labels import read_csv_rows, try_float
from qponder.data.paths import root_and_file

_NAME = re.compile(r"^I(\d+)_(\d+)_(\d+)\.", re.IGNORECASE)


def read(ctx: AdapterContext) -> AdapterResult:
    """Read KADID-10k from its root folder or ``dmos.csv``."""
    root, label = root_and_file(ctx.path, ["dmos.csv"], "kadid")
    images = ctx.resolver(root)
    _, rows = read_csv_rows(label, ["dist_img", "ref_img", "dmos"])
    for line, row in rows:
        name = row["dist_img"]
        meta = {"ref_image": row["ref_img"]}
        m = _NAME.match(name)
        if m:
            meta["distortion_type"] = int(m.group(2))
            meta["level"] = int(m.group(3))
        std = None
        var = try_float(row.get("var"))
        if var is not None and var >= 0:
            std = math.sqrt(var)  # the 1-5 scale is already the common scale
        ctx.collector.add(
            file=label,
            line=line,
            id=name,
            image_path=images.resolve(name),
            raw=row["dmos"],
            std=std,
            meta=meta,
        )
    return AdapterResult(label_file=label, group_key="ref_image")
