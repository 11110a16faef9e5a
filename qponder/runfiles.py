"""Run files: the one layer through which every stage writes what it produces.

- Atomic writes (:func:`write_text_atomic`, :func:`write_json_atomic`): a reader never sees
  half a file, whatever kills the writer.
- ``environment.json`` (:func:`environment_info`) and the resolved config
  (:func:`save_run_files`) in every run directory.
- Append-only result files that survive ``kill -9``: :class:`Journal` (JSONL records) and
  :class:`CsvJournal` (CSV rows). Each batch is one ``write`` on an ``O_APPEND`` descriptor,
  made durable with ``fsync`` before it counts as done; an exclusive lock makes a second
  run on the same file fail at once instead of interleaving; :meth:`Journal.recover` cuts off
  the torn last record a crash can leave (and only that: damage anywhere else is reported
  with its file and line).
- The one resume check (:func:`check_resume`): a run may continue into existing files only
  when the settings that decide their content hash the same; otherwise the error lists what
  changed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from qponder.errors import QponderError

logger = logging.getLogger(__name__)

ENVIRONMENT = "environment.json"


class RunFileError(QponderError):
    """A run file cannot be read, written or resumed; the message names the file."""


class LockedError(RunFileError):
    """Another process is writing the same output."""


# --------------------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, durably.

    Raises:
        RunFileError: The file cannot be written (a folder in the way, no permission, a
            full disk); the message names it, the old file is left as it was and no
            temporary file is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise RunFileError(f"{path}: is a directory; a file is wanted here")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that a reader never sees half a file."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` so that a reader never sees half a file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json_atomic`.

    Raises:
        RunFileError: The file is not UTF-8 or not JSON; the message names it.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RunFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


# --------------------------------------------------------------------------- environment


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Versions of Python and the main libraries, the device, and the git commit."""
    from importlib import metadata

    versions = {}
    for pkg in (
        "qponder",
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "vllm",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = False
    return info


def save_run_files(run_dir: str | os.PathLike, config: Any, name: str = "run_config.yaml") -> None:
    """Write the resolved config (YAML or JSON by ``name``'s suffix) and environment.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    target = run_dir / name
    if target.suffix == ".json":
        write_json_atomic(target, data)
    else:
        write_text_atomic(target, yaml.safe_dump(data, sort_keys=False))
    write_json_atomic(run_dir / ENVIRONMENT, environment_info())


# --------------------------------------------------------------------------- resume


def config_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash of plain-data settings (key order does not matter).

    Example:
        >>> config_hash({"a": 1, "b": [2]}) == config_hash({"b": [2], "a": 1})
        True
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs.

    Example:
        >>> settings_diff({"eval": {"split": "test"}}, {"eval": {"split": "val"}})
        ["eval.split: 'test' -> 'val'"]
    """
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += settings_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def check_resume(
    target: str | os.PathLike, previous: Mapping[str, Any] | None, settings: Mapping[str, Any]
) -> None:
    """Refuse to continue ``target`` when it was made with other settings.

    Args:
        target: The output being resumed (named in the message).
        previous: The settings recorded by the run that made it, or None when none were
            recorded (then there is nothing to compare and the check passes).
        settings: This run's settings that decide the output's content.

    Raises:
        RunFileError: Naming every setting that changed.
    """
    if previous is None or config_hash(previous) == config_hash(settings):
        return
    diff = settings_diff(previous, settings)
    raise RunFileError(
        f"{target} was made with other settings ({'; '.join(diff[:8]) or 'unknown difference'})"
        "; resuming would mix them in one output. Use the same settings, or another --out"
    )


def check_fresh_or_resume(target: str | os.PathLike, has_output: bool, resume: bool) -> None:
    """Refuse to write over existing results without ``--resume``.

    Raises:
        RunFileError: ``target`` already holds results and ``resume`` is False.
    """
    if has_output and not resume:
        raise RunFileError(
            f"{target} already holds results; pass --resume to continue it, or choose another --out"
        )


# --------------------------------------------------------------------------- append-only files


def _decode_line(path: Path, number: int, line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(
            f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
        ) from None


class AppendFile:
    """An append-only file, written a batch at a time with one ``write`` and an ``fsync``.

    Args:
        path: The file; created on :meth:`open` with its parent folders.
    """

    what = "line"  # what one appended unit is called in messages

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._remove_if_unused = False

    def __enter__(self) -> AppendFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self, lock: bool = False, remove_if_unused: bool = False) -> None:
        """Open for appending.

        Args:
            lock: Take an exclusive lock, so that a second run on the same file fails at
                once instead of interleaving with this one (released when the process ends,
                even by ``kill -9``).
            remove_if_unused: When this call creates the file and it is still empty at
                :meth:`close`, remove it then: a run that failed before its first row (a
                model that does not load) leaves no empty file that looks like a result.
                Only with ``lock``.

        Raises:
            LockedError: Another process holds the lock.
            RunFileError: The file or its folder cannot be created (named in the message).
        """
        for _ in range(3):  # a file removed by its last run between our open and our lock
            created = self._open_fd()
            if not lock or self._lock():
                break
            self.close()
        else:  # pragma: no cover - removed under us three times in a row
            raise LockedError(f"{self.path}: another run keeps replacing this file")
        self._remove_if_unused = created and remove_if_unused and lock

    def _open_fd(self) -> bool:
        """Open the descriptor (the file and its folders created); True when it created it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunFileError(f"{self.path}: cannot write ({exc.strerror})") from None
        if created:
            _fsync_dir(self.path.parent)
        return created

    def _lock(self) -> bool:
        """Take the exclusive lock; False when the locked file is no longer at ``path``
        (a run that held it removed it, unused, before letting go: open it again)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise LockedError(
                f"{self.path}: another run is writing this file; wait for it or choose "
                "another --out"
            ) from None
        return self._is_at_path()

    def _is_at_path(self) -> bool:
        try:
            here, there = os.fstat(self._fd), os.stat(self.path)
        except OSError:  # FileNotFoundError: removed
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def write(self, data: bytes) -> None:
        """Append ``data`` in one write and wait until it is on disk."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not open")
        view = memoryview(data)
        try:
            while view:  # a regular file takes it in one write; loop for the odd short write
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            raise RunFileError(
                f"{self.path}: write failed ({exc.strerror}); what was written before is kept"
            ) from None

    def close(self) -> None:
        """Close the file (and release its lock); a file opened with ``remove_if_unused``
        that is still empty is removed first."""
        if self._fd is None:
            return
        try:
            if self._remove_if_unused and os.fstat(self._fd).st_size == 0 and self._is_at_path():
                # removed while the lock is still held, so that no other run locks it meanwhile
                self.path.unlink()
                _fsync_dir(self.path.parent)
        except OSError:  # it stays; an empty file is read as no rows
            pass
        finally:
            os.close(self._fd)
            self._fd = None
            self._remove_if_unused = False

    def _truncate(self, size: int, dropped: int) -> None:
        logger.warning(
            "%s: dropped an incomplete last %s (%d bytes) left by an interrupted run; it "
            "will be produced again",
            self.path,
            self.what,
            dropped,
        )
        with open(self.path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())


class Journal(AppendFile):
    """An append-only JSONL file of records (JSON objects), one per line."""

    what = "record"

    def _parse(self, data: bytes) -> tuple[list[dict[str, Any]], int]:
        """Records of complete lines, and the size of the part that holds them."""
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty unless the line was torn
        records, good = [], 0
        for number, line in enumerate(lines, start=1):
            if line.strip():
                text = _decode_line(self.path, number, line)
                try:
                    record = json.loads(text)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    if number == len(lines) and not tail:
                        break  # an unreadable last line (e.g. zero-filled after a crash)
                    raise RunFileError(f"{self.path}:{number}: not a JSON record ({exc})") from None
                records.append(record)
            good += len(line) + 1
        return records, good

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, ignoring a torn last line; the file is not changed.

        Raises:
            RunFileError: A line other than the last is not a JSON object or not UTF-8.
        """
        if not self.path.exists():
            return []
        return self._parse(self.path.read_bytes())[0]

    def recover(self) -> list[dict[str, Any]]:
        """Like :meth:`read`, but first cut off a torn or unreadable last line.

        Returns:
            The records in file order.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records, good = self._parse(data)
        if good < len(data):
            self._truncate(good, len(data) - good)
        return records

    def append(self, records: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Append one record, or a batch of records in one write, durably."""
        if isinstance(records, dict):
            records = [records]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if text:
            self.write(text.encode("utf-8"))

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the whole file with ``records`` atomically (before :meth:`open`)."""
        if self._fd is not None:
            raise RuntimeError("rewrite() before open()")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_text_atomic(self.path, text)


LOCK_FILE = ".qponder.lock"


def lock_run_dir(run_dir: str | os.PathLike) -> AppendFile:
    """Take the lock of a run directory (created if missing) for as long as the returned
    file stays open: a second run on the same directory fails at once with
    :class:`LockedError`. Close it (or use it as a context manager) when the run ends; a
    killed process releases it too.

    Raises:
        LockedError: Another run holds the directory.
        RunFileError: The directory cannot be created (e.g. ``run_dir`` is a file).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFileError(f"{run_dir}: exists and is not a directory; choose another --out")
    lock = AppendFile(run_dir / LOCK_FILE)
    try:
        lock.open(lock=True)
    except LockedError:
        raise LockedError(
            f"{run_dir}: another run is using this directory; wait for it or choose another --out"
        ) from None
    return lock


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file, ignoring blank lines and a torn last line.

    Raises:
        RunFileError: A complete line is not a JSON object or not UTF-8; the message names
            the file and line.
    """
    return Journal(path).read()


class CsvJournal(AppendFile):
    """An append-only CSV file with a header row; ``None`` is written as an empty cell.

    Rows are appended in the columns of the file's own header when it has one (a file
    written by an earlier run, with other columns, stays one table), else in ``columns``.

    Args:
        path: The file.
        columns: The header of a new file; columns of a row that are not in the header
            are dropped.
    """

    what = "row"

    def __init__(self, path: str | os.PathLike, columns: list[str]) -> None:
        super().__init__(path)
        self.columns = list(columns)

    def _parse(self, data: bytes) -> tuple[list[dict[str, str]], int]:
        """Complete rows, and the size of the part that holds them.

        A row is complete when the line that ends it ends in a new-line and no quoted field
        is left open, so a row torn inside a quoted multi-line field is not complete.
        """
        lines = data.split(b"\n")
        tail = lines.pop()
        texts = [_decode_line(self.path, i, line) + "\n" for i, line in enumerate(lines, 1)]
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        reader = csv.reader(iter(texts), strict=True)
        rows: list[list[str]] = []
        good = 0
        try:
            for row in reader:
                rows.append(row)
                good = offsets[reader.line_num]
        except csv.Error:
            if not tail and reader.line_num < len(texts):
                raise RunFileError(f"{self.path}:{reader.line_num}: not a valid CSV row") from None
        if not rows:
            return [], good
        header, body = rows[0], rows[1:]
        return [dict(zip(header, r, strict=False)) for r in body if r], good

    def read(self) -> list[dict[str, str]]:
        """Every complete row as a dict of strings, ignoring a torn last row."""
        if not self.path.exists():
            return []
        return self._parse(self.path.read_bytes())[0]

    def recover(self) -> list[dict[str, str]]:
        """Like :meth:`read`, but first cut off a torn last row (wherever it was torn)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        rows, good = self._parse(data)
        if good < len(data):
            self._truncate(good, len(data) - good)
        return rows

    def header(self) -> list[str] | None:
        """The columns of the file's header row; None when the file is missing, empty, or
        holds only a torn first line (which :meth:`recover` cuts off)."""
        try:
            with open(self.path, "rb") as fh:
                first = fh.readline()
        except FileNotFoundError:
            return None
        if not first.endswith(b"\n"):
            return None
        return next(csv.reader([_decode_line(self.path, 1, first)]), None) or None

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows in one write (the header first when the file is empty), durably."""
        buf = io.StringIO()
        existing = self.header() if self.path.stat().st_size else None
        columns = existing or self.columns
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if existing is None:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
        if buf.getvalue():
            self.write(buf.getvalue().encode("utf-8"))


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV file written by :class:`CsvJournal`, ignoring a torn last row."""
    return CsvJournal(path, []).read()
