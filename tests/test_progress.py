"""What a long run shows of itself: tqdm's bar on a terminal; on a scheduler's log, a line
when the first items are done, then one every interval, and a last one."""

from __future__ import annotations

import io
import re

import pytest

from qponder.progress import Progress, format_duration

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+): (.*)$")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(stream: io.StringIO) -> list[str]:
    out = []
    for line in stream.getvalue().splitlines():
        match = LINE.match(line)
        assert match, line  # every line is a whole, timestamped line
        out.append(f"{match.group(1)}: {match.group(2)}")
    return out


def test_a_log_gets_a_line_at_the_start_then_every_interval_then_at_the_end():
    clock, log = Clock(), io.StringIO()
    bar = Progress(1000, "scoring", interval=30, stream=log, clock=clock)
    clock.now += 10
    bar.update(40)  # the first items: the run has started
    clock.now += 10
    bar.update(40)  # 10 s after the last line: none
    clock.now += 25
    bar.update(40)  # 35 s after it: one
    clock.now += 5
    bar.update(80)
    bar.close()  # stopped early: the last line says so
    bar.close()  # once
    assert _lines(log) == [
        "scoring: 40/1000 img (4%), 4.00 img/s, ETA 4m00s",
        "scoring: 120/1000 img (12%), 2.67 img/s, ETA 5m30s",
        "scoring: 200/1000 img (20%), 4.00 img/s, stopped after 50s",
    ]
    assert "\r" not in log.getvalue()


def test_a_resumed_run_counts_its_own_rate_and_shows_its_counts():
    clock, log = Clock(), io.StringIO()
    with Progress(10, "distill", initial=6, interval=0, stream=log, clock=clock) as bar:
        for kept in (1, 2):
            clock.now += 2
            bar.set_postfix(kept=kept, rejected=0)
            bar.update(2)
    assert _lines(log) == [
        "distill: 8/10 img (80%), 1.00 img/s, ETA 2s, kept=1, rejected=0",
        "distill: 10/10 img (100%), 1.00 img/s, finished in 4s, kept=2, rejected=0",
    ]  # interval 0: a line at every update, and no second line for the same count


def test_nothing_is_shown_when_disabled_or_when_nothing_was_done():
    log = io.StringIO()
    with Progress(5, "eval", enabled=False, interval=0, stream=log) as bar:
        bar.update(5)
    with Progress(5, "distill", initial=5, stream=log):
        pass  # a resumed run with nothing left
    assert log.getvalue() == ""


def test_a_terminal_gets_tqdms_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    with Progress(4, "scoring", stream=term) as bar:
        bar.update(4)
    assert "\r" in term.getvalue() and "4/4" in term.getvalue()
    assert not any(LINE.match(line) for line in term.getvalue().splitlines())


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (258, "4m18s"), (7380, "2h03m")]
)
def test_durations_read_as_a_log_reads_them(seconds, text):
    assert format_duration(seconds) == text
