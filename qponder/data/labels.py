"""Reading label files row by row, with the file and line of every problem.

Adapters turn rows into samples through a :class:`Collector`, which converts the native score
to [1, 5], rejects NaN, out-of-range values and duplicate ids, and either raises a
:class:`~qponder.errors.DatasetError` naming ``file:line`` or, with ``on_error="skip"``,
records the row in ``skipped`` and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qponder.data.catalog import ScoreScale
from qponder.data.samples import SPLITS, Sample
from qponder.errors import DatasetError

ON_ERROR = ("raise", "skip")


def where(file: str | Path, line: int | str | None) -> str:
    """Format a location: ``file:12`` for a line number, ``file (entry 3)`` otherwise."""
    if line is None:
        return str(file)
    if isinstance(line, int):
        return f"{file}:{line}"
    return f"{file} ({line})"


def parse_float(value: Any) -> float | None:
    """Parse a number from a cell; ``None`` for an empty cell; NaN stays NaN.

    Raises:
        ValueError: The cell is not a number.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    return float(text)


def try_float(value: Any) -> float | None:
    """Like :func:`parse_float`, but ``None`` for anything that is not a finite number."""
    try:
        x = parse_float(value)
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


@dataclass
class Collector:
    """Builds samples from rows and applies the ``on_error`` policy.

    Attributes:
        dataset: Adapter name written into every sample.
        scale: Native score range and direction.
        on_error: ``"raise"`` (default) or ``"skip"``.
        samples: Samples accepted so far.
        skipped: Rows left out: ``{"file", "line", "reason"}``.
    """

    dataset: str
    scale: ScoreScale | None
    on_error: str = "raise"
    samples: list[Sample] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}")

    def error(self, file: str | Path, line: int | str | None, reason: str) -> None:
        """Report a bad row: raise, or record it when skipping."""
        if self.on_error == "raise":
            raise DatasetError(f"{where(file, line)}: {reason}")
        self.skipped.append({"file": str(file), "line": line, "reason": reason})

    def add(
        self,
        *,
        file: str | Path,
        line: int | str | None,
        id: str,
        image_path: str | Path,
        raw: Any,
        std_raw: Any = None,
        std: float | None = None,
        split: str | None = None,
        meta: dict | None = None,
        scale: ScoreScale | None = None,
        native: Any = None,
    ) -> Sample | None:
        """Validate one row and keep it as a sample.

        Args:
            file: Label file, for messages.
            line: Line (or row, or entry) of the row, for messages.
            id: Sample id, unique within the dataset.
            image_path: Absolute image path (need not exist).
            raw: The native score as read (string or number).
            std_raw: Native standard deviation, mapped with the scale.
            std: Standard deviation already on the [1, 5] scale (wins over ``std_raw``).
            split: Official split, if any.
            meta: Adapter extras.
            scale: Overrides the collector's scale for this row.
            native: The dataset's own value when ``raw`` is already a normalised score
                (DeQA's ``gt_score``); stored as ``mos_raw``.

        Returns:
            The sample, or ``None`` when the row was skipped.
        """
        scale = scale or self.scale
        assert scale is not None, "an adapter must give a score scale"
        meta = dict(meta or {})
        try:
            value = _mos_value(raw, scale, meta)
            if split is not None and split not in SPLITS:
                raise _BadRow(f"unknown split {split!r} (expected train, val or test)")
            if std is None and std_raw is not None:
                s = _number(std_raw, "standard deviation")
                std = scale.std_to_mos(s) if s is not None and math.isfinite(s) else None
            id = self._new_id(id, file, line)
            mos_raw = value if native is None else _native_value(native)
        except _BadRow as exc:
            self.error(file, line, str(exc))
            return None
        sample = Sample(
            id=id,
            image_path=str(image_path),
            mos=scale.to_mos(value),
            mos_raw=mos_raw,
            dataset=self.dataset,
            split=split,
            std=std,
            meta=meta,
        )
        self.samples.append(sample)
        return sample

    def _new_id(self, id: Any, file: str | Path, line: int | str | None) -> str:
        """The row's id, refused when empty or already taken (the first place is noted)."""
        id = str(id).strip()
        if not id:
            raise _BadRow("empty image name / id")
        first = self._seen.get(id)
        if first is not None:
            raise _BadRow(f"duplicate id {id!r} (first at {first})")
        self._seen[id] = where(file, line)
        return id


class _BadRow(Exception):
    """Why a label row is refused (reported through :meth:`Collector.error`)."""


def _number(raw: Any, what: str) -> float | None:
    try:
        return parse_float(raw)
    except ValueError:
        raise _BadRow(f"{what} {raw!r} is not a number") from None


def _mos_value(raw: Any, scale: ScoreScale, meta: dict) -> float:
    """The native MOS of a row, checked against the scale (``meta["clipped"]`` set where a
    clipping scale lets a value outside its range through)."""
    value = _number(raw, "MOS")
    if value is None:
        raise _BadRow("missing MOS")
    if not math.isfinite(value):
        raise _BadRow(f"MOS is {value} (not a finite number)")
    if not scale.contains(value):
        if not scale.clip:
            raise _BadRow(f"MOS {value:g} is outside the nominal range {scale.describe()}")
        meta["clipped"] = True
    return value


def _native_value(native: Any) -> float:
    try:
        value = parse_float(native)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise _BadRow(f"native score {native!r} is not a number")
    return value


# --------------------------------------------------------------------------- readers


def read_text(path: Path) -> str:
    """Read a text label file (UTF-8 with or without BOM, else Latin-1).

    Raises:
        DatasetError: The file is missing or unreadable.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_csv_rows(
    path: Path,
    required: Sequence[str] = (),
    *,
    lower: bool = False,
    text: str | None = None,
    first_line: int = 1,
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Read a CSV file with a header row.

    Args:
        path: The file (read unless ``text`` is given; named in messages).
        required: Columns that must be present; a missing one raises naming the header line.
        lower: Match and return column names lower-cased.
        text: The file's content, when the caller has already read (part of) it.
        first_line: Line number of the first line of ``text`` in the file.

    Returns:
        The header (stripped; empty names dropped) and an iterator of ``(line, row)``. Rows
        whose cells are all empty are left out.

    Raises:
        DatasetError: Missing file, no header, or a required column is absent.
    """
    if text is None:
        text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty label file") from None
    names = [h.strip().lower() if lower else h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        found = ", ".join(repr(n) for n in names if n) or "none"
        raise DatasetError(
            f"{path}:{first_line}: missing column(s) {', '.join(map(repr, missing))}; found {found}"
        )

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row = {
                n: (cells[i].strip() if i < len(cells) else "") for i, n in enumerate(names) if n
            }
            yield first_line - 1 + reader.line_num, row

    return [n for n in names if n], rows()


def read_xlsx_rows(
    path: Path, required: Sequence[str], sheet: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Read an Excel sheet whose header row contains all ``required`` names.

    Args:
        path: The ``.xlsx`` file.
        required: Column names that identify the header row (matched after stripping).
        sheet: Sheet name; default: the first sheet that has such a header.

    Returns:
        An iterator of ``("sheet!row N", row)``; rows with no value under ``required``
        are left out.

    Raises:
        DatasetError: Missing file, not an Excel file, or no sheet with that header.
    """
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException
        raise DatasetError(f"{path}: not a readable .xlsx file ({exc})") from None
    try:
        names = [sheet] if sheet else book.sheetnames
        for name in names:
            if name not in book.sheetnames:
                raise DatasetError(f"{path}: no sheet {name!r}; sheets: {book.sheetnames}")
            rows = book[name].iter_rows(values_only=True)
            for r, values in enumerate(rows, start=1):
                header = [str(v).strip() if v is not None else "" for v in values]
                if all(c in header for c in required):
                    yield from _xlsx_body(name, r, header, rows, required)
                    return
                if r > 50:
                    break
        raise DatasetError(f"{path}: no sheet with the columns {', '.join(map(repr, required))}")
    finally:
        book.close()


def _xlsx_body(
    sheet: str, header_row: int, header: list[str], rows: Iterator, required: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for r, values in enumerate(rows, start=header_row + 1):
        row = {h: values[i] if i < len(values) else None for i, h in enumerate(header) if h}
        if all(row.get(c) in (None, "") for c in required):
            continue
        yield f"{sheet}!row {r}", row


def read_jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Read a JSON Lines file: ``(line, object)`` for every non-blank line.

    Raises:
        DatasetError: A line is not a JSON object (names the line).
    """
    text = read_text(path)
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj
