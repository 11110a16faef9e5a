"""``qponder data inspect``: what a dataset holds and what is wrong with it.

The report counts samples per split, gives the MOS range on [1, 5], counts missing images,
decodes every present image with :func:`~qponder.data.images.load_image` (in threads; PIL
releases the GIL while decoding) and lists the bad ones with their reason.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qponder.data.datasets import load_dataset
from qponder.data.images import DEFAULT_MAX_PIXELS, check_image
from qponder.data.samples import LoadedDataset
from qponder.runfiles import RunFileError, write_bytes_atomic


def inspect_dataset(
    spec: str,
    images: str | None = None,
    split: str | None = None,
    check_images: bool = True,
    plot: str | None = None,
    *,
    on_error: str = "raise",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> dict[str, Any]:
    """Summarise a dataset.

    Args:
        spec: ``NAME:PATH``.
        images: Image folder, when the images are not where the adapter looks.
        split: Only this split (``train``/``val``/``test``); default all.
        check_images: Decode every image that exists; else only check that it exists.
        plot: Write a MOS histogram (PNG) to this path.
        on_error: ``raise`` on the first bad label row, or ``skip`` and count them.
        max_pixels: Pixel limit passed to the image loader.
        workers: Decoding threads (default: CPU count, at most 8).

    Returns:
        ``{n, splits: {name: count}, mos_min, mos_max, missing_images, bad_images:
        [{path, reason}], ...}`` with MOS on [1, 5]; also ``dataset``, ``spec``,
        ``label_file``, ``split_file``, ``mos_mean``, ``mos_std``, ``clipped``,
        ``checked_images`` and ``skipped_rows``.

    Raises:
        RunFileError: ``plot`` is not a PNG, PDF, SVG or JPEG file name (checked first).
    """
    if plot:
        check_plot_path(plot)
    ds = load_dataset(spec, split, images=images, on_error=on_error)
    paths = [s.image_path for s in ds]
    present = [p for p in paths if os.path.isfile(p)]
    bad: list[dict[str, str]] = []
    if check_images and present:
        n_workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            reasons = pool.map(lambda p: check_image(p, max_pixels=max_pixels), present)
            bad = [{"path": p, "reason": r} for p, r in zip(present, reasons, strict=True) if r]
    report = summarise(ds)
    report.update(
        missing_images=len(paths) - len(present),
        bad_images=bad,
        checked_images=bool(check_images),
    )
    if plot:
        plot_histogram(ds, plot)
        report["plot"] = str(plot)
    return report


def summarise(ds: LoadedDataset) -> dict[str, Any]:
    """Counts and MOS statistics of a loaded dataset (no file access)."""
    mos = [s.mos for s in ds]
    mean = sum(mos) / len(mos)
    return {
        "dataset": ds.name,
        "spec": ds.spec,
        "label_file": str(ds.label_file) if ds.label_file else None,
        "split_file": str(ds.split_file) if ds.split_file else None,
        "n": len(ds),
        "splits": ds.split_counts(),
        "mos_min": min(mos),
        "mos_max": max(mos),
        "mos_mean": mean,
        "mos_std": (sum((m - mean) ** 2 for m in mos) / len(mos)) ** 0.5,
        "clipped": sum(1 for s in ds if s.meta.get("clipped")),
        "skipped_rows": ds.skipped,
    }


PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_plot_path(path: str | Path) -> None:
    """Refuse a plot file name whose suffix is not an image format, before any work.

    Raises:
        RunFileError: Naming the path and the formats that work.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise RunFileError(f"--plot {path}: use a file ending in {', '.join(PLOT_SUFFIXES)}")
    if path.is_dir():
        raise RunFileError(f"--plot {path}: is a directory; give the image file to write")


def plot_histogram(ds: LoadedDataset, path: str | Path) -> None:
    """Write a histogram of MOS on [1, 5], one stacked bar colour per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_split: dict[str, list[float]] = {}
    for s in ds:
        by_split.setdefault(s.split or "none", []).append(s.mos)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    names = sorted(by_split)
    ax.hist([by_split[k] for k in names], bins=32, range=(1, 5), stacked=True, label=names)
    ax.set_xlabel("MOS on [1, 5] (higher is better)")
    ax.set_ylabel("images")
    ax.set_title(f"{ds.name}: {len(ds)} images")
    ax.legend()
    fig.tight_layout()
    check_plot_path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    plt.close(fig)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFileError(f"--plot {path}: cannot create its folder ({exc.strerror})") from None
    write_bytes_atomic(path, buf.getvalue())


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text of an :func:`inspect_dataset` report."""
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    lines = [
        f"dataset       {report.get('dataset', '?')} ({report.get('spec', '')})",
        f"label file    {report.get('label_file')}",
        f"samples       {report['n']} ({splits})",
        f"MOS [1, 5]    min {report['mos_min']:.3f}  max {report['mos_max']:.3f}"
        + (
            f"  mean {report['mos_mean']:.3f}  std {report['mos_std']:.3f}"
            if "mos_mean" in report
            else ""
        ),
        f"missing       {report['missing_images']} image(s)",
    ]
    if report.get("split_file"):
        lines.insert(3, f"split file    {report['split_file']}")
    if report.get("clipped"):
        lines.append(f"clipped       {report['clipped']} score(s) outside the nominal range")
    if report.get("checked_images", True):
        lines.append(f"bad images    {len(report['bad_images'])}")
        lines += [f"  {b['path']}: {b['reason']}" for b in report["bad_images"][:20]]
        if len(report["bad_images"]) > 20:
            lines.append(f"  ... and {len(report['bad_images']) - 20} more")
    skipped = report.get("skipped_rows") or []
    if skipped:
        lines.append(f"skipped rows  {len(skipped)}")
        lines += [f"  {r['file']}:{r['line']}: {r['reason']}" for r in skipped[:20]]
    if report.get("plot"):
        lines.append(f"histogram     {report['plot']}")
    return "\n".join(lines)
