"""LIVE In the Wild Image Quality Challenge (CLIVE): the MATLAB files of ``Data/``.

``AllImages_release.mat`` (cell array of 1,169 names), ``AllMOS_release.mat`` (MOS, 0-100)
and, when present, ``AllStdDev_release.mat``; images in ``Images/``. The first seven
entries (``t1.bmp`` .. ``t7.bmp``, in ``Images/trainingImages``) were shown to train the
raters and, as in the authors' protocol and every peer, are left out: 1,162 images.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from qponder.data.adapters.base import AdapterContext, AdapterResult
from qponder.data.paths import find_file
from qponder.errors import DatasetError

MOS_FILE = "AllMOS_release.mat"
NAMES_FILE = "AllImages_release.mat"
STD_FILE = "AllStdDev_release.mat"
_TRAINING_IMAGE = re.compile(r"^t\d+\.\w+$", re.IGNORECASE)


def load_mat_vector(path: Path, key: str) -> list:
    """Read a MATLAB vector or cell array of strings as a flat Python list.

    Raises:
        DatasetError: Missing file, unreadable file, or no variable ``key``.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except (NotImplementedError, ValueError, OSError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable MATLAB v5 .mat file ({exc})") from None
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable {key!r}; found {found or 'none'}")
    return [_scalar(x) for x in np.asarray(mat[key], dtype=object).ravel()]


def _scalar(x):
    while isinstance(x, np.ndarray):
        if x.size == 0:
            return None
        x = x.ravel()[0]
    return x.item() if isinstance(x, np.generic) else x


def read(ctx: AdapterContext) -> AdapterResult:
    """Read LIVE Challenge from its root folder, its ``Data/`` folder or a .mat file."""
    path = ctx.path
    folder = path.parent if path.is_file() else path
    if not folder.exists():
        raise DatasetError(f"livec: {path} does not exist")
    mos_file = find_file(folder, [MOS_FILE, f"Data/{MOS_FILE}"], depth=1)
    if mos_file is None:
        raise DatasetError(f"livec: no {MOS_FILE} under {folder}")
    data = mos_file.parent
    root = data.parent if data.name.lower() == "data" else data
    names_file = find_file(data, [NAMES_FILE], depth=0) or data / NAMES_FILE
    names = load_mat_vector(names_file, "AllImages_release")
    mos = load_mat_vector(mos_file, "AllMOS_release")
    if len(names) != len(mos):
        raise DatasetError(
            f"{mos_file}: {len(mos)} scores for {len(names)} names in {names_file.name}"
        )
    std_file = find_file(data, [STD_FILE], depth=0)
    stds = load_mat_vector(std_file, "AllStdDev_release") if std_file else [None] * len(mos)
    if len(stds) != len(mos):
        raise DatasetError(f"{std_file}: {len(stds)} values for {len(mos)} scores")
    images = ctx.resolver(root)
    for i, (name, score, std) in enumerate(zip(names, mos, stds, strict=True), start=1):
        name = str(name).strip() if name is not None else ""
        if _TRAINING_IMAGE.match(name):
            continue
        ctx.collector.add(
            file=mos_file,
            line=f"entry {i}",
            id=name,
            image_path=images.resolve(name),
            raw=score,
            std_raw=std,
        )
    return AdapterResult(label_file=mos_file)
