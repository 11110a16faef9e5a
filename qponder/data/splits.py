"""Seeded train/val/test splits that keep each group (a reference image) on one side.

Where a dataset ships no official split, :func:`assign_splits` draws one: groups (all the
distortions of one reference image, or single images) are ordered by a hash of
``(seed, group)`` and dealt out by count, so the split depends only on the seed and the group
names, not on file order or the Python version. The result is written to a JSON split file and
reused from it afterwards, so training and evaluation see the same split even if the
algorithm or the label file changes later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from qponder.data.catalog import split_fractions, val_from_train_fraction
from qponder.data.samples import SPLITS, Sample
from qponder.errors import DatasetError

logger = logging.getLogger(__name__)

SPLIT_FILE_FORMAT = "qponder-split/1"


def group_split(groups: Sequence[str], seed: int, fractions: dict[str, float]) -> dict[str, str]:
    """Assign each distinct group to a split.

    Args:
        groups: Group names (repeats allowed).
        seed: Split seed.
        fractions: Share of groups per split, e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``;
            the first key takes the remainder.

    Returns:
        ``{group: split}``. With at least as many groups as splits, every split with a
        non-zero fraction gets one group or more.

    Example:
        >>> s = group_split(["a", "b", "c", "d"], 0, {"train": 0.5, "test": 0.5})
        >>> sorted(s.values())
        ['test', 'test', 'train', 'train']
    """
    unique = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    names = list(fractions)
    total = len(unique)
    counts = {}
    for name in names[1:]:
        n = round(total * fractions[name])
        if fractions[name] > 0 and total >= len(names):
            n = max(n, 1)
        counts[name] = n
    counts[names[0]] = total - sum(counts.values())
    if counts[names[0]] < 1 and total:
        raise DatasetError(f"too few groups ({total}) for a {'/'.join(names)} split")
    out: dict[str, str] = {}
    order = [*names[1:][::-1], names[0]]  # test first, then val, then train
    i = 0
    for name in order:
        for g in unique[i : i + counts[name]]:
            out[g] = name
        i += counts[name]
    return out


def default_split_dir() -> Path:
    """``$XDG_CACHE_HOME/qponder/splits`` (default ``~/.cache/qponder/splits``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "qponder" / "splits"


def default_split_path(dataset: str, label_file: Path, seed: int) -> Path:
    """Split file of a dataset: named after the adapter, the label file's path and the seed."""
    digest = hashlib.sha1(str(Path(label_file).absolute()).encode()).hexdigest()[:12]
    return default_split_dir() / f"{dataset}-{digest}-seed{seed}.json"


def read_split_file(path: Path) -> dict[str, str]:
    """Read a split file into ``{sample id: split}``.

    Raises:
        DatasetError: Unreadable or not a qponder split file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        splits = data["splits"]
        return {sid: name for name in SPLITS for sid in splits.get(name, [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: not a readable split file ({exc})") from None


def write_split_file(path: Path, mapping: dict[str, str], info: dict) -> None:
    """Write ``{sample id: split}`` with provenance ``info`` as JSON (atomically)."""
    body = {
        "format": SPLIT_FILE_FORMAT,
        **info,
        "counts": {s: sum(1 for v in mapping.values() if v == s) for s in SPLITS},
        "splits": {s: sorted(k for k, v in mapping.items() if v == s) for s in SPLITS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _group_of(sample: Sample, group_key: str | None) -> str:
    if group_key and sample.meta.get(group_key) not in (None, ""):
        return str(sample.meta[group_key])
    return sample.id


def draw_split(
    samples: Sequence[Sample], *, group_key: str | None, policy: str, seed: int
) -> dict[str, str]:
    """Draw the split of the samples an official split leaves open.

    Args:
        samples: All samples; those with an official split keep it, except that with
            ``policy="official_no_val"`` a share of the official train groups becomes val.
        group_key: ``meta`` key whose value groups samples (``None``: each sample alone).
        policy: ``official``, ``official_no_val`` or ``seeded``.
        seed: Split seed.

    Returns:
        ``{sample id: split}`` for the samples whose split was drawn.
    """
    mapping: dict[str, str] = {}
    open_ = [s for s in samples if s.split is None]
    if open_:
        by_group = group_split([_group_of(s, group_key) for s in open_], seed, split_fractions())
        mapping.update({s.id: by_group[_group_of(s, group_key)] for s in open_})
    if policy == "official_no_val" and not any(s.split == "val" for s in samples):
        train = [s for s in samples if s.split == "train"]
        if train:
            frac = val_from_train_fraction()
            by_group = group_split(
                [_group_of(s, group_key) for s in train], seed, {"train": 1 - frac, "val": frac}
            )
            mapping.update({s.id: by_group[_group_of(s, group_key)] for s in train})
    return mapping


def assign_splits(
    samples: list[Sample],
    *,
    dataset: str,
    label_file: Path,
    group_key: str | None,
    policy: str,
    seed: int = 0,
    split_file: str | Path | None = None,
) -> tuple[list[Sample], Path | None]:
    """Give every sample a split: official where shipped, else from the split file.

    Args:
        samples: Samples as read by an adapter.
        dataset: Adapter name (names the default split file).
        label_file: The label file (names the default split file).
        group_key: ``meta`` key grouping samples that must share a split.
        policy: ``official``, ``official_no_val`` or ``seeded``.
        seed: Split seed.
        split_file: Split file to reuse or write; default under :func:`default_split_dir`.

    Returns:
        The samples with ``split`` set, and the split file used (``None`` when all splits
        are official).

    Raises:
        DatasetError: An existing split file does not cover every sample.
    """
    needs_val = policy == "official_no_val" and not any(s.split == "val" for s in samples)
    if not needs_val and all(s.split is not None for s in samples):
        return samples, None
    path = Path(split_file) if split_file else default_split_path(dataset, label_file, seed)
    drawn = draw_split(samples, group_key=group_key, policy=policy, seed=seed)
    if path.exists():
        stored = read_split_file(path)
        missing = [sid for sid in drawn if sid not in stored]
        if missing:
            raise DatasetError(
                f"{path}: split file does not cover {len(missing)} sample(s) of {label_file} "
                f"(e.g. {missing[0]!r}); delete it to draw the split again, or pass another seed"
            )
        mapping = {sid: stored[sid] for sid in drawn}
    else:
        mapping = drawn
        info = {
            "dataset": dataset,
            "label_file": str(Path(label_file).absolute()),
            "seed": seed,
            "policy": policy,
            "group_by": group_key or "sample",
        }
        try:
            write_split_file(path, mapping, info)
            logger.info("wrote split file %s", path)
        except OSError as exc:
            logger.warning("could not write split file %s (%s); split not saved", path, exc)
            path = None
    out = [dataclasses.replace(s, split=mapping[s.id]) if s.id in mapping else s for s in samples]
    return out, path
