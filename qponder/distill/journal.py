"""Append-only JSONL files that survive being killed at any moment.

Each record is one line, appended with a single ``write`` on an ``O_APPEND`` descriptor and
made durable with ``fsync`` before the next image is counted as done. A run killed with
``kill -9`` (or a power cut) leaves at worst a torn last line; :meth:`Journal.recover` drops
it, so its image is simply processed again. A corrupt line anywhere else is not something a
crash produces, and is reported rather than dropped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from qponder.errors import DatasetError, QponderError

logger = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class Journal:
    """One append-only JSONL file.

    Args:
        path: The file; created on :meth:`open` if missing, with its parent folders.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def recover(self) -> list[dict[str, Any]]:
        """Read every record, first cutting off a torn or unreadable last line.

        Returns:
            The records in file order.

        Raises:
            DatasetError: A line other than the last is not valid JSON.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty unless the line was torn
        records, good_bytes = [], 0
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                if number == len(lines) and not tail:
                    tail = line  # an unreadable last line (e.g. zero-filled after a crash)
                    break
                raise DatasetError(f"{self.path}:{number}: not a JSON record ({exc})") from exc
            records.append(record)
            good_bytes += len(line) + 1
        if tail:
            logger.warning(
                "%s: dropped an incomplete last line (%d bytes) left by an interrupted run; "
                "its image will be processed again",
                self.path,
                len(data) - good_bytes,
            )
            with open(self.path, "r+b") as fh:
                fh.truncate(good_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def open(self, lock: bool = False) -> None:
        """Open for appending.

        Args:
            lock: Take an exclusive lock, so that a second run on the same file fails
                instead of interleaving with this one (released when the process ends,
                even by ``kill -9``).

        Raises:
            QponderError: Another process holds the lock.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            _fsync_dir(self.path.parent)
        if lock:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks
                return
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self.close()
                raise QponderError(
                    f"{self.path}: another distillation is writing this file; wait for it "
                    "or choose another --out"
                ) from exc

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one line and wait until it is on disk."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not open")
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop for the odd short write
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the whole file with ``records`` atomically (temporary file + rename)."""
        if self._fd is not None:
            raise RuntimeError("rewrite() before open()")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for record in records:
                fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        """Close the file (and release its lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
