"""Dataset specs (``NAME:PATH``) and :func:`load_dataset`, the one entry point to every adapter."""

from __future__ import annotations

import os
from pathlib import Path

from qponder.data.adapters import ADAPTERS, AdapterContext
from qponder.data.catalog import dataset_info
from qponder.data.labels import Collector
from qponder.data.samples import ALL_SAMPLES, SPLIT_CHOICES, LoadedDataset
from qponder.data.splits import assign_splits
from qponder.errors import DatasetError

DATA_ROOT_ENV = "QPONDER_DATA_ROOT"


def parse_spec(spec: str) -> tuple[str, Path]:
    """Split a dataset spec into the adapter name and the path.

    ``PATH`` is the dataset's root folder or its label file. A relative path that does not
    exist is looked up under ``$QPONDER_DATA_ROOT``; a bare ``NAME`` means the catalogue's
    default folder under ``$QPONDER_DATA_ROOT``.

    Args:
        spec: ``NAME:PATH``, e.g. ``koniq:/data/koniq10k`` or ``generic:labels.csv``; NAME
            may be an alias (``clive``, ``koniq10k``), returned as the canonical name.

    Returns:
        ``(name, path)``.

    Raises:
        DatasetError: Unknown name, or no path and no ``$QPONDER_DATA_ROOT`` default.

    Example:
        >>> parse_spec("koniq:/data/koniq10k")
        ('koniq', PosixPath('/data/koniq10k'))
    """
    name, sep, raw = spec.partition(":")
    info = dataset_info(name)
    data_root = os.environ.get(DATA_ROOT_ENV)
    if not sep or not raw.strip():
        if not (data_root and info.default_dir):
            raise DatasetError(
                f"dataset spec {spec!r} has no path: write NAME:PATH, e.g. {info.name}:/data/"
                f"{info.default_dir or 'labels.csv'}"
                + (f", or set {DATA_ROOT_ENV}" if info.default_dir else "")
            )
        return info.name, Path(data_root) / info.default_dir
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute() and not path.exists() and data_root:
        candidate = Path(data_root).expanduser() / path
        if candidate.exists():
            path = candidate
    return info.name, Path(os.path.abspath(path))


def load_dataset(
    spec: str,
    split: str | None = None,
    *,
    images: str | None = None,
    on_error: str = "raise",
    split_seed: int = 0,
    split_file: str | None = None,
    require_images: bool = False,
) -> LoadedDataset:
    """Load a dataset from its original release files, MOS mapped to [1, 5].

    Args:
        spec: ``NAME:PATH`` (see :func:`parse_spec`).
        split: ``train``, ``val`` or ``test``; ``all`` or ``None`` keeps every sample. The
            official split where the dataset ships one; otherwise a seeded split that keeps
            all distortions of one reference image on the same side, stored in a reusable
            split file. :meth:`LoadedDataset.describe_selection` says which it was.
        images: Image folder, when the images are not where the adapter looks.
        on_error: ``raise`` stops at the first bad label row with a ``DatasetError`` naming
            the file and line; ``skip`` leaves bad rows out and lists them in ``skipped``.
        split_seed: Seed of a drawn split.
        split_file: Split file to reuse or create; default
            ``~/.cache/qponder/splits/<name>-<hash of the label path>-seed<S>.json``.
        require_images: Check that every image file exists: missing ones raise (with a count)
            or, with ``on_error="skip"``, are skipped. Off by default, so that label-only
            folders load.

    Returns:
        The loaded dataset.

    Raises:
        DatasetError: Bad spec, missing or malformed label file, bad row (``on_error="raise"``),
            an empty split, or missing images with ``require_images``.
    """
    if split is not None and split not in SPLIT_CHOICES:
        raise DatasetError(f"unknown split {split!r}: expected {', '.join(SPLIT_CHOICES)}")
    split = None if split == ALL_SAMPLES else split
    name, path = parse_spec(spec)
    info = dataset_info(name)
    collector = Collector(dataset=name, scale=info.scale, on_error=on_error)
    ctx = AdapterContext(name=name, path=path, info=info, images=images, collector=collector)
    result = ADAPTERS[name](ctx)
    samples = collector.samples
    if not samples:
        raise DatasetError(f"{result.label_file}: no usable samples")
    given = {s.id: s.split for s in samples}  # the labels' own splits, before any is drawn
    samples, used_split_file = assign_splits(
        samples,
        dataset=name,
        label_file=result.label_file,
        group_key=result.group_key,
        policy=info.split,
        seed=split_seed,
        split_file=split_file,
    )
    if require_images:
        samples = _check_images_exist(samples, collector)
    total = len(samples)
    if split is not None:
        available = sorted({s.split for s in samples if s.split})
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise DatasetError(
                f"{spec}: no samples in split {split!r} (available: {', '.join(available)})"
            )
    return LoadedDataset(
        name=name,
        spec=spec,
        samples=samples,
        skipped=collector.skipped,
        label_file=result.label_file,
        split_file=used_split_file,
        split=split,
        total=total,
        drawn=sum(given[s.id] != s.split for s in samples),
        split_seed=split_seed,
    )


def _check_images_exist(samples: list, collector: Collector) -> list:
    missing = [s for s in samples if not os.path.isfile(s.image_path)]
    if not missing:
        return samples
    if collector.on_error == "raise":
        raise DatasetError(
            f"{len(missing)} of {len(samples)} images are missing (e.g. {missing[0].image_path}); "
            "pass --images DIR if they are elsewhere"
        )
    for s in missing:
        collector.skipped.append({"file": s.image_path, "line": None, "reason": "missing image"})
    gone = {id(s) for s in missing}
    return [s for s in samples if id(s) not in gone]
