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
from qponder.parsing import PARSE_FAILURES
from qponder.prompts import STUDENT_INSTRUCTION
from qponder.runfiles import AppendFile, CsvJournal, Journal, check_fresh_or_resume

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


def _journal(out: Path, kind: str) -> AppendFile:
    return Journal(out) if kind == "jsonl" else CsvJournal(out, CSV_COLUMNS)


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
        resume: Skip files already in ``out`` (matched by resolved path, so ``./a.png``
            and ``/abs/a.png`` are the same file) and append the rest. Without it, an
            existing non-empty ``out`` is refused. A second run on the same ``out`` at once
            is refused (the file is locked while a run writes it).
        base_url: Endpoint of the ``openai`` backend (default: ``cfg.base_url``).
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

    from qponder.inference.scorer import Scorer

    cfg = cfg or EvalConfig()
    out = Path(out)
    kind = _output_kind(out)
    files = expand_image_paths(list(paths))
    if not files:
        raise QponderError("no images found in " + ", ".join(paths))
    check_fresh_or_resume(out, out.exists() and out.stat().st_size > 0, resume)
    stats = {"images": len(files), "scored": 0, "skipped": 0, "parse_failures": 0,
             "bad_images": 0, "other_errors": 0}  # fmt: skip
    t0 = time.perf_counter()
    with _journal(out, kind) as journal:
        journal.open(lock=True)  # before reading: a second run on the same file stops here
        done = {os.path.realpath(r.get("path", "")) for r in journal.recover()}
        todo = [f for f in files if os.path.realpath(f) not in done]
        stats["skipped"] = len(files) - len(todo)
        if todo:
            scorer = scorer or Scorer.from_config(
                model, cfg, model_config, base_url=base_url, instruction=instruction
            )
        with tqdm(total=len(todo), unit="img", desc="scoring", disable=None) as bar:
            for batch in scorer.score_items(todo, image_path=lambda p: p) if todo else []:
                journal.append([_row(path, result, kind) for path, result in batch])
                for _, r in batch:
                    stats[_outcome(r)] += 1
                bar.update(len(batch))
    seconds = time.perf_counter() - t0
    stats.update(
        seconds=round(seconds, 3),
        images_per_s=round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        out=str(out),
    )
    return stats


def _outcome(result: Any) -> str:
    """The stats key a result counts under."""
    if result.score is not None:
        return "scored"
    if result.error in PARSE_FAILURES:
        return "parse_failures"
    return "bad_images" if (result.error or "").startswith("bad_image") else "other_errors"
