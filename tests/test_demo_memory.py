"""qponder.demo.memory: peak memory of the demo's process tree."""

from __future__ import annotations

import subprocess
import sys

from qponder.demo.memory import PeakMemory

_CHILD = (
    "import sys; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
    "print('ready', flush=True); sys.stdin.read()"
)


def test_peak_memory_counts_child_processes():
    with PeakMemory(interval_s=60.0) as mem:  # the samples below are taken by hand
        before = mem.sample()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"  # its 300 MiB are touched
            during = mem.sample()
        finally:
            child.communicate("")
    assert during - before > 250 * 2**20
    assert mem.peak_bytes >= during
