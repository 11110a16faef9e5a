"""Peak resident memory of a process tree: the demo and the training subprocesses it starts."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psutil


class PeakMemory:
    """Sample the resident memory of this process and all its children (summed) in a
    background thread while the context is open; ``peak_bytes`` is the largest sum seen.

    Args:
        interval_s: Seconds between samples.
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        """Current RSS of the process tree, in bytes (also counted towards the peak)."""
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child that just ended
                total += p.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


__all__ = ["PeakMemory"]
