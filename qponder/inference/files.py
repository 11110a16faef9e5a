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
from qponder.inference.parallel import RowKey, score_in_shards
from qponder.inference.parallel import process_state as process_state  # its former home
from qponder.parsing import PARSE_FAILURES
from qponder.progress import DEFAULT_INTERVAL, Progress
from qponder.prompts import STUDENT_INSTRUCTION
from qponder.runfiles import AppendFile, CsvJournal, Journal, RunFileError, check_fresh_or_resume

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jfif"}
)
CSV_COLUMNS = ["path", "score", "expected_score", "reasoning", "error"]
# with k > 1 samples only: greedy scoring has no mean or spread to report
SAMPLING_COLUMNS = ["score_mean", "score_std"]
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


def csv_columns(sampling: bool) -> list[str]:
    """The CSV header of a run: ``path, score, expected_score, reasoning, error``, with
    ``score_mean, score_std`` after ``expected_score`` when each image gets k > 1 samples.

    Example:
        >>> csv_columns(True)[2:5]
        ['expected_score', 'score_mean', 'score_std']
    """
    return CSV_COLUMNS[:3] + SAMPLING_COLUMNS + CSV_COLUMNS[3:] if sampling else list(CSV_COLUMNS)


def _journal(out: Path, kind: str, columns: list[str]) -> AppendFile:
    return Journal(out) if kind == "jsonl" else CsvJournal(out, columns)


def _check_csv_columns(out: Path, columns: list[str]) -> None:
    """Refuse to resume a CSV whose header lacks columns this run fills (sampling
    columns, when the file was written without ``--samples``): they would be dropped.

    A header with more columns (a file written with sampling, or by a qponder that always
    wrote them) is fine: the new rows leave those cells empty.
    """
    header = CsvJournal(out, columns).header()
    missing = [c for c in columns if header is not None and c not in header]
    if missing:
        raise RunFileError(
            f"{out} has the columns {', '.join(header)}; this run also writes "
            f"{', '.join(missing)} (--samples differs from the run that wrote it). Resume "
            "with the same --samples, or choose another --out"
        )


def _row(path: str, result: Any, kind: str) -> dict[str, Any]:
    d = result.to_dict()
    row = {"path": path, **{k: d[k] for k in ("score", "expected_score", "reasoning", "error")}}
    if d["samples"]:
        row.update(score_mean=d["score_mean"], score_std=d["score_std"])
        if kind == "jsonl":
            row["samples"] = d["samples"]
    if kind == "jsonl":
        row["text"] = d["text"]
        row["expected_score_reason"] = d["expected_score_reason"]
    return row


# One key per run: files are the same when their resolved paths are (``./a.png`` and
# ``/abs/a.png``), for the resume, the merge of the parts and nothing else.
PATH_KEY: RowKey[str] = RowKey(
    of_row=lambda row: os.path.realpath(row.get("path", "")), of_item=os.path.realpath
)


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
    progress_interval: float = DEFAULT_INTERVAL,
) -> dict[str, Any]:
    """Score every image named by ``paths`` and write one row per file to ``out``.

    Args:
        paths: Image files, folders (recursive) and globs.
        model: Checkpoint (``hf``/``vllm``) or served model name (``openai``).
        out: ``FILE.jsonl`` or ``FILE.csv``. Rows: ``path, score, expected_score,
            reasoning, error`` (plus ``score_mean, score_std`` with k > 1 samples, also as
            CSV columns only then: :func:`csv_columns`; JSONL rows also carry the raw
            ``text`` and the ``samples``).
        cfg: Batch size, samples, backend, decoding (``eval`` section of the recipe).
        model_config: Loading options and the image resize policy.
        resume: Skip files already in ``out`` (matched by resolved path, so ``./a.png``
            and ``/abs/a.png`` are the same file) and append the rest. Without it, an
            existing non-empty ``out`` is refused. A second run on the same ``out`` at once
            is refused (the file is locked while a run writes it).
        base_url: Endpoint of the ``openai`` backend (default: ``cfg.base_url``).
        instruction: The student instruction (the training prompt).
        scorer: A ready :class:`~qponder.inference.Scorer` (otherwise built from ``cfg``).
        progress_interval: Seconds between two progress lines on stderr when it is not a
            terminal (a terminal gets tqdm's bar); see :class:`qponder.progress.Progress`.

    Returns:
        ``{images, scored, skipped, parse_failures, bad_images, other_errors, seconds,
        images_per_s, processes, shard_sizes, out}``.

    Under ``accelerate launch`` (e.g. ``--multi_gpu --num_processes 2``, also on CPUs) each
    process scores a disjoint part of the pending files; the main process writes ``out``
    and merges the others' ``OUT.partN`` files into it at the end
    (:func:`qponder.inference.parallel.score_in_shards`).

    Raises:
        QponderError: On an unknown output type, a path that does not exist, an existing
            output without ``resume``, or a CSV resumed with sampling that was written
            without it (on every process).
    """
    cfg = cfg or EvalConfig()
    out = Path(out)
    kind = _output_kind(out)
    columns = csv_columns((scorer.samples if scorer is not None else cfg.samples) > 1)

    def setup() -> list[str]:
        files = expand_image_paths(list(paths))
        if not files:
            raise QponderError("no images found in " + ", ".join(paths))
        has_rows = out.exists() and out.stat().st_size > 0
        check_fresh_or_resume(out, has_rows, resume)
        if kind == "csv" and has_rows:
            _check_csv_columns(out, columns)
        return files

    def shard(journal: AppendFile, files: list[str], main: bool) -> dict[str, int]:
        return _score_shard(journal, files, kind, scorer, model, cfg, model_config, base_url,
                            instruction, progress_interval if main else None)  # fmt: skip

    t0 = time.perf_counter()
    run = score_in_shards(out, setup, lambda path: _journal(path, kind, columns), PATH_KEY, shard)
    seconds = time.perf_counter() - t0
    return {
        "images": len(run.items),
        **run.counts,
        "skipped": len(run.items) - run.pending,
        "seconds": round(seconds, 3),
        "images_per_s": round(run.pending / seconds, 3) if run.pending and seconds > 0 else None,
        "processes": run.processes,
        "shard_sizes": run.shard_sizes,  # images each process scored in this run
        "out": str(out),
    }


def _score_shard(
    journal: AppendFile,
    shard: list[str],
    kind: str,
    scorer: Any,
    model: str,
    cfg: EvalConfig,
    model_config: ModelConfig | None,
    base_url: str | None,
    instruction: str,
    progress_interval: float | None,
) -> dict[str, int]:
    """Score ``shard`` into ``journal``, a batch per write; returns the outcome counts.
    ``progress_interval`` None shows no progress (the processes other than the main one)."""
    from qponder.inference.scorer import Scorer

    stats = dict.fromkeys(("scored", "parse_failures", "bad_images", "other_errors"), 0)
    if not shard:
        return stats
    scorer = scorer or Scorer.from_config(
        model, cfg, model_config, base_url=base_url, instruction=instruction
    )
    shown = progress_interval is not None
    with Progress(len(shard), "scoring", enabled=shown, interval=progress_interval or 0) as bar:
        for batch in scorer.score_items(shard, image_path=lambda p: p):
            journal.append([_row(path, result, kind) for path, result in batch])
            for _, r in batch:
                stats[_outcome(r)] += 1
            bar.update(len(batch))
    return stats


def _outcome(result: Any) -> str:
    """The stats key a result counts under."""
    if result.score is not None:
        return "scored"
    if result.error in PARSE_FAILURES:
        return "parse_failures"
    return "bad_images" if (result.error or "").startswith("bad_image") else "other_errors"
