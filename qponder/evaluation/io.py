"""Append-only result files that survive being killed: JSONL and CSV, flushed per batch.

A run that is killed loses at most the batch being written. A torn last line (the process
died in the middle of a write) is recognised because it does not end in a new-line: readers
ignore it and :func:`trim_torn_tail` cuts it off before a resumed run appends.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qponder.errors import QponderError


def trim_torn_tail(path: str | os.PathLike) -> int:
    """Cut a partial last line (no trailing new-line) off ``path``; return the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file, ignoring blank lines and a torn last line.

    Raises:
        QponderError: When a complete line is not a JSON object; the message names the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # torn: written partly when the process died
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QponderError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise QponderError(f"{path}:{lineno}: expected a JSON object")
        rows.append(row)
    return rows


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file and flush them to disk (one call per batch)."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)  # one write per batch: a kill leaves whole lines or one torn tail
        fh.flush()
        os.fsync(fh.fileno())


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV file written by :func:`append_csv`, ignoring a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def append_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    """Append rows to a CSV file (header first when the file is new or empty); flush to disk.

    ``None`` is written as an empty cell. Columns not in ``columns`` are dropped.
    """
    path = Path(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
