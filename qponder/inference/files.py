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
        row["expected_score_reason"] = d["expected_score_reason"]
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
        images_per_s, processes, shard_sizes, out}``.

    Under ``accelerate launch`` (e.g. ``--multi_gpu --num_processes 2``, also on CPUs) each
    process scores a disjoint part of the pending files; the main process writes ``out``
    and merges the others' ``OUT.partN`` files into it at the end.

    Raises:
        QponderError: On an unknown output type, a path that does not exist, or an
            existing output without ``resume``.
    """
    cfg = cfg or EvalConfig()
    out = Path(out)
    kind = _output_kind(out)
    files = expand_image_paths(list(paths))
    if not files:
        raise QponderError("no images found in " + ", ".join(paths))
    state = process_state()
    t0 = time.perf_counter()
    journal = _journal(out, kind)
    try:
        if state.is_main_process:
            check_fresh_or_resume(out, out.exists() and out.stat().st_size > 0, resume)
            journal.open(lock=True)  # before reading: a second run on the same file stops here
            journal.recover()
        state.wait_for_everyone()
        done = {os.path.realpath(r.get("path", "")) for r in _rows_so_far(out, kind)}
        todo = [f for f in files if os.path.realpath(f) not in done]
        state.wait_for_everyone()  # every process has read what exists before anyone appends
        with state.split_between_processes(todo) as shard:
            shard_sizes = _gather_sizes(state, len(shard))
            if state.is_main_process:
                stats = _score_shard(journal, shard, kind, scorer, model, cfg, model_config,
                                     base_url, instruction, progress=True)  # fmt: skip
            else:
                with _journal(_part_path(out, state.process_index), kind) as part:
                    part.open(lock=True)
                    stats = _score_shard(part, shard, kind, scorer, model, cfg, model_config,
                                         base_url, instruction, progress=False)  # fmt: skip
        state.wait_for_everyone()
        counts = _gather_counts(state, stats)
        if state.is_main_process and state.num_processes > 1:
            _merge_parts(journal, out, kind)
        state.wait_for_everyone()
    finally:
        journal.close()
    seconds = time.perf_counter() - t0
    return {
        "images": len(files),
        **counts,
        "skipped": len(files) - len(todo),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        "processes": state.num_processes,
        "shard_sizes": shard_sizes,  # images each process scored in this run
        "out": str(out),
    }


def process_state() -> Any:
    """This process's place among those ``accelerate launch`` started (one alone otherwise).

    Without CUDA the state must be told it runs on the CPU: otherwise each process that
    ``accelerate launch --multi_gpu`` or ``torchrun`` started believes it is alone and
    scores every image.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _part_path(out: Path, index: int) -> Path:
    return out.with_name(f"{out.stem}.part{index}{out.suffix}")


def _parts(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.stem}.part*{out.suffix}"))


def _rows_so_far(out: Path, kind: str) -> list[dict[str, Any]]:
    """Rows of the output and of part files an interrupted data-parallel run left."""
    rows: list[dict[str, Any]] = []
    for path in [out, *_parts(out)]:
        rows += _journal(path, kind).read()
    return rows


def _merge_parts(journal: AppendFile, out: Path, kind: str) -> None:
    """Append the part files' rows (those not in the output yet) and remove the parts."""
    have = {os.path.realpath(r.get("path", "")) for r in journal.read()}
    for part in _parts(out):
        rows = [r for r in _journal(part, kind).read() if os.path.realpath(r["path"]) not in have]
        if rows:
            journal.append(rows)
        have |= {os.path.realpath(r["path"]) for r in rows}
        part.unlink()


def _gather_counts(state: Any, stats: dict[str, int]) -> dict[str, int]:
    """The outcome counts of every process, summed."""
    if state.num_processes == 1:
        return stats
    from accelerate.utils import gather_object

    total: dict[str, int] = dict.fromkeys(stats, 0)
    for one in gather_object([stats]):
        for key, value in one.items():
            total[key] += value
    return total


def _gather_sizes(state: Any, size: int) -> list[int]:
    """How many images each process got, in process order."""
    if state.num_processes == 1:
        return [size]
    from accelerate.utils import gather_object

    return [int(n) for n in gather_object([size])]


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
    progress: bool,
) -> dict[str, int]:
    """Score ``shard`` into ``journal``, a batch per write; returns the outcome counts."""
    from tqdm.auto import tqdm

    from qponder.inference.scorer import Scorer

    stats = dict.fromkeys(("scored", "parse_failures", "bad_images", "other_errors"), 0)
    if not shard:
        return stats
    scorer = scorer or Scorer.from_config(
        model, cfg, model_config, base_url=base_url, instruction=instruction
    )
    with tqdm(
        total=len(shard), unit="img", desc="scoring", disable=None if progress else True
    ) as bar:
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
