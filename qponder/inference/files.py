"""``qponder score``: score image files, folders and globs into a JSONL or CSV file.

Rows are appended and flushed to disk after every batch, so a killed run loses at most
one batch; ``resume=True`` skips the files already in the output. A file that is not a
usable image gets a row with ``score: null`` and ``error: "bad_image:<reason>"``.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from pathlib import Path
from typing import Any

from qponder.config import EvalConfig, ModelConfig
from qponder.errors import QponderError
from qponder.evaluation.io import (
    append_csv,
    append_jsonl,
    read_csv_rows,
    read_jsonl,
    trim_torn_tail,
)
from qponder.prompts import STUDENT_INSTRUCTION

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jfif"}
)
CSV_COLUMNS = ["path", "score", "expected_score", "score_mean", "score_std", "reasoning", "error"]
_GLOB_CHARS = set("*?[")


def _folder_images(folder: Path) -> list[str]:
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return [str(p) for p in sorted(found)]


def expand_image_paths(specs: list[str]) -> list[str]:
    """Expand files, folders (recursively, image extensions only) and globs, in order.

    A file given by name is kept whatever its extension (it may still be an image, and if
    not, it gets an error row rather than vanishing). Duplicates are dropped.

    Raises:
        QponderError: When a name is neither a file, a folder nor a glob with matches.
    """
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            out += _folder_images(path)
        elif path.is_file():
            out.append(spec)
        elif _GLOB_CHARS & set(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise QponderError(f"{spec}: the pattern matches no file")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    out += _folder_images(mp)
                elif mp.suffix.lower() in IMAGE_SUFFIXES:
                    out.append(m)
        else:
            raise QponderError(f"{spec}: no such file or folder")
    return list(dict.fromkeys(out))


def _output_kind(out: Path) -> str:
    kind = out.suffix.lower().lstrip(".")
    if kind not in {"jsonl", "csv"}:
        raise QponderError(f"--out {out}: use a .jsonl or .csv file")
    return kind


def _done_paths(out: Path, kind: str) -> set[str]:
    trim_torn_tail(out)
    rows = read_jsonl(out) if kind == "jsonl" else read_csv_rows(out)
    return {str(r.get("path")) for r in rows}


def _row(path: str, result: Any, kind: str) -> dict[str, Any]:
    d = result.to_dict()
    row = {"path": path, **{k: d[k] for k in ("score", "expected_score", "reasoning", "error")}}
    if d["samples"]:
        row.update(score_mean=d["score_mean"], score_std=d["score_std"])
        if kind == "jsonl":
            row["samples"] = d["samples"]
    if kind == "jsonl":
        row["text"] = d["text"]
    return row


def score_paths(
    paths: list[str],
    model: str,
    out: str | os.PathLike,
    cfg: EvalConfig | None = None,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    base_url: str | None = None,
    instruction: str = STUDENT_INSTRUCTION,
    scorer: Any = None,
) -> dict[str, Any]:
    """Score every image named by ``paths`` and write one row per file to ``out``.

    Args:
        paths: Image files, folders (recursive) and globs.
        model: Checkpoint (``hf``/``vllm``) or served model name (``openai``).
        out: ``FILE.jsonl`` or ``FILE.csv``. Rows: ``path, score, expected_score,
            reasoning, error`` (plus ``score_mean, score_std`` with sampling; JSONL rows also
            carry the raw ``text`` and the ``samples``).
        cfg: Batch size, samples, backend, decoding (``eval`` section of the recipe).
        model_config: Loading options and the image resize policy.
        resume: Skip files already in ``out`` and append the rest. Without it, an existing
            non-empty ``out`` is refused.
        base_url: Endpoint of the ``openai`` backend.
        instruction: The student instruction (the training prompt).
        scorer: A ready :class:`~qponder.inference.Scorer` (otherwise built from ``cfg``).

    Returns:
        ``{images, scored, skipped, parse_failures, bad_images, other_errors, seconds,
        images_per_s, out}``.

    Raises:
        QponderError: On an unknown output type, a path that does not exist, or an
            existing output without ``resume``.
    """
    from tqdm.auto import tqdm

    from qponder.evaluation.report import PARSE_FAILURES
    from qponder.inference.scorer import Scorer

    cfg = cfg or EvalConfig()
    out = Path(out)
    kind = _output_kind(out)
    files = expand_image_paths(list(paths))
    if not files:
        raise QponderError("no images found in " + ", ".join(paths))
    if out.exists() and out.stat().st_size and not resume:
        raise QponderError(f"{out} exists; pass --resume to continue it, or choose another --out")
    done = _done_paths(out, kind) if resume else set()
    todo = [f for f in files if f not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = {"images": len(files), "scored": 0, "skipped": len(files) - len(todo), "parse_failures": 0,
             "bad_images": 0, "other_errors": 0}  # fmt: skip
    t0 = time.perf_counter()
    if todo:
        scorer = scorer or Scorer.from_config(
            model, cfg, model_config, base_url=base_url, instruction=instruction
        )
        with tqdm(total=len(todo), unit="img", desc="scoring", disable=None) as bar:
            for batch in scorer.score_items(todo, image_path=lambda p: p):
                rows = [_row(path, result, kind) for path, result in batch]
                if kind == "jsonl":
                    append_jsonl(out, rows)
                else:
                    append_csv(out, rows, CSV_COLUMNS)
                for _, r in batch:
                    key = ("scored" if r.score is not None else "parse_failures" if r.error in PARSE_FAILURES
                           else "bad_images" if (r.error or "").startswith("bad_image") else "other_errors")  # fmt: skip
                    stats[key] += 1
                bar.update(len(batch))
    seconds = time.perf_counter() - t0
    processed = len(todo)
    stats.update(
        seconds=round(seconds, 3),
        images_per_s=round(processed / seconds, 3) if processed and seconds > 0 else None,
        out=str(out),
    )
    return stats
