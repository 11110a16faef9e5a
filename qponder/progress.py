"""Progress of a long run on stderr: tqdm's bar on a terminal, a line now and then elsewhere.

Under a batch scheduler (Slurm, ...) stderr is a file. tqdm then disables itself, and a job
that scores for hours says nothing; forced on, it writes carriage returns that make one
endless line. :class:`Progress` keeps tqdm's bar on a terminal and otherwise writes whole
lines such as::

    2026-05-01 12:03:44 scoring: 120/1000 img (12%), 3.40 img/s, ETA 4m18s

one when the first items are done (the run has started), then at most one every
``interval`` seconds, and a last one when the run ends or stops. Everything goes to stderr,
so the JSON a command prints on stdout stays readable as it is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# Often enough to see that a job moves and when it will end, rare enough that a day-long
# job writes a few thousand lines.
DEFAULT_INTERVAL = 30.0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """A duration as a log reads it best.

    Example:
        >>> format_duration(42), format_duration(258), format_duration(7380)
        ('42s', '4m18s', '2h03m')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts the items of a run and shows how far it is, on stderr.

    Args:
        total: Items of the whole run (those done before included, see ``initial``).
        desc: What is being done (``scoring``, ``eval``, ``distill``): each line starts with it.
        initial: Items already done when this run starts (a resumed run); the rate and the
            ETA count this run's items only.
        unit: What an item is called.
        enabled: False shows nothing (the processes other than the main one, ``--no-progress``).
        interval: Seconds between two lines when stderr is not a terminal; 0 writes a line
            at every update.
        stream: Where to write (default: ``sys.stderr`` as it is when the run starts).
        clock: The time source (seconds, monotonic).

    Example:
        >>> with Progress(len(paths), "scoring") as bar:  # doctest: +SKIP
        ...     for batch in batches:
        ...         bar.update(len(batch))
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        unit: str = "img",
        enabled: bool = True,
        interval: float = DEFAULT_INTERVAL,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = self.initial = initial
        self.interval = interval
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.started = clock()
        self.postfix: dict[str, Any] = {}
        self._last_line: float | None = None  # when the last line was written
        self._last_done = initial  # the count that line showed
        self._bar: Any = None
        self._lines = enabled and not _is_terminal(self.stream)
        if enabled and not self._lines:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc,
                             file=self.stream, mininterval=0.5)  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done; on a log, write a line when one is due."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and (
            self._last_line is None or self.clock() - self._last_line >= self.interval
        ):
            self._write(self._status())

    def set_postfix(self, **counts: Any) -> None:
        """Counts shown after the progress (``kept=10, rejected=2``), from the next line on."""
        self.postfix = counts
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **counts)

    def close(self) -> None:
        """End the bar; on a log, write the last line (when this run did anything)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines and self.done > self.initial and self.done != self._last_done:
            self._write(self._status(final=True))
        self._lines = False  # closing twice writes nothing more

    def _rate(self) -> float | None:
        elapsed = self.clock() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else None

    def _status(self, final: bool = False) -> str:
        """``120/1000 img (12%), 3.40 img/s, ETA 4m18s``, and the postfix counts; the last
        line of a run that ends before its total says ``stopped after ...`` instead."""
        parts = [f"{self.done}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        rate = self._rate()
        if rate is not None:
            parts.append(f"{rate:.2f} {self.unit}/s")
        left = self.total - self.done
        elapsed = format_duration(self.clock() - self.started)
        if left <= 0:
            parts.append(f"finished in {elapsed}")
        elif final:
            parts.append(f"stopped after {elapsed}")
        elif rate:
            parts.append(f"ETA {format_duration(left / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def _write(self, status: str) -> None:
        self._last_line, self._last_done = self.clock(), self.done
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.stream.write(f"{stamp} {self.desc}: {status}\n")
            self.stream.flush()  # a log is read while the job runs
        except (OSError, ValueError):  # a closed or broken stderr must not stop the run
            self._lines = False


__all__ = ["DEFAULT_INTERVAL", "Progress", "format_duration"]
