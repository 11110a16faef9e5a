"""Data-parallel scoring into one output file: the one path of ``qponder score`` and
``qponder eval`` under ``accelerate launch`` (also on CPUs: ``--multi_gpu --num_processes N``).

Every process runs :func:`score_in_shards`, which goes through these steps:

1. The main process alone runs the caller's ``setup`` (checks, locks, the list of items),
   locks the output, cuts a torn last row off the output and the part files, and sends the
   items to every process. An output (or part file) that this run created and that is
   still empty when the run ends, because it failed before its first row, is removed. When ``setup`` fails, every process raises an error with the
   same one-line message, instead of waiting for a main process that has stopped.
2. Every process reads the rows that the output and the part files hold and keeps the items
   whose key is not among them (this is what ``--resume`` skips).
3. The pending items are split into contiguous shards in process order. Process 0 appends
   its rows to the output itself, process k > 0 to ``OUT.partK`` (for example
   ``scores.part3.jsonl``).
4. The outcomes are gathered: the row counts, or an error, which then ends every process.
5. The main process appends the part files' rows that the output lacks, in the order of
   the part numbers (``part10`` after ``part9``), and removes the part files.

One :class:`RowKey` per run says which rows belong to the same item. It decides what a
resumed run skips, which rows the merge drops as duplicates, and which rows
:func:`select_rows` keeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from qponder.errors import QponderError, RunFailedError
from qponder.runfiles import AppendFile

T = TypeVar("T")
R = TypeVar("R")

# Makes the journal of the output or of a part file, of the run's kind (JSONL or CSV).
OpenJournal = Callable[[Path], AppendFile]
# Scores one shard into an open journal; ``main`` says whether this is the main process
# (which shows the progress). Returns its counts ({} is fine), summed over the processes.
ScoreShard = Callable[[AppendFile, list[T], bool], dict[str, int]]


def process_state() -> Any:
    """This process's place among those ``accelerate launch`` started (one alone otherwise).

    Without CUDA the state must be told it runs on the CPU: otherwise each process that
    ``accelerate launch --multi_gpu`` or ``torchrun`` started believes it is alone and
    scores every image.

    Returns:
        accelerate's ``PartialState`` (``process_index``, ``num_processes``,
        ``is_main_process``, ``split_between_processes``, ``wait_for_everyone``).
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


@dataclass(frozen=True)
class RowKey(Generic[T]):
    """What makes two rows the same item. A run declares it once.

    Attributes:
        of_row: The key of a written row (a dict read back from the output).
        of_item: The key of an item to score. It equals ``of_row`` of the row written
            for that item.
    """

    of_row: Callable[[Mapping[str, Any]], Hashable]
    of_item: Callable[[T], Hashable]


@dataclass(frozen=True)
class ShardedRun(Generic[T]):
    """What :func:`score_in_shards` did (the same on every process).

    Attributes:
        items: Every item of the run, in order (as the main process's ``setup`` gave them).
        pending: How many of them were not in the output yet and were scored now.
        processes: The number of processes.
        shard_sizes: How many items each process scored, in process order.
        counts: The counts the shards returned, summed over the processes.
    """

    items: list[T]
    pending: int
    processes: int
    shard_sizes: list[int]
    counts: dict[str, int]


# --------------------------------------------------------------------------- part files


def part_path(out: Path, index: int) -> Path:
    """The part file of process ``index``: ``DIR/NAME.partINDEX.SUFFIX``.

    Example:
        >>> part_path(Path("runs/scores.jsonl"), 3).as_posix()
        'runs/scores.part3.jsonl'
    """
    return out.with_name(f"{out.stem}.part{index}{out.suffix}")


def part_files(out: Path) -> list[Path]:
    """The part files next to ``out``, ordered by their number (``part10`` after ``part9``).

    A file whose name only looks similar (``scores.partial.jsonl``) is not a part file.
    """
    pattern = re.compile(rf"{re.escape(out.stem)}\.part(\d+){re.escape(out.suffix)}")
    numbered = []
    for path in out.parent.glob(f"{out.stem}.part*{out.suffix}"):
        match = pattern.fullmatch(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    return [path for _, path in sorted(numbered)]


def rows_so_far(out: Path, open_journal: OpenJournal) -> list[dict[str, Any]]:
    """The rows of the output, then those of the part files an interrupted run left."""
    rows: list[dict[str, Any]] = []
    for path in [out, *part_files(out)]:
        rows += open_journal(path).read()
    return rows


def merge_parts(journal: AppendFile, out: Path, open_journal: OpenJournal, key: RowKey) -> None:
    """Append the part files' rows that the output lacks, in part order, then remove them.

    Args:
        journal: The output, open for appending.
        out: Its path, next to which the part files lie.
        open_journal: Makes the journal of a part file.
        key: The run's key; of several rows with one key, the first is kept.
    """
    have = {key.of_row(r) for r in journal.read()}
    for part in part_files(out):
        rows = []
        for row in open_journal(part).read():
            k = key.of_row(row)
            if k not in have:
                have.add(k)
                rows.append(row)
        if rows:
            journal.append(rows)
        part.unlink()


def select_rows(
    rows: Iterable[Mapping[str, Any]], items: Iterable[T], key: RowKey[T]
) -> list[Mapping[str, Any]]:
    """The rows of ``items``: the first row of each key, in the order of ``rows``.

    Rows of other items (an earlier run with a larger limit) are left out.
    """
    wanted = {key.of_item(item) for item in items}
    out, seen = [], set()
    for row in rows:
        k = key.of_row(row)
        if k in wanted and k not in seen:
            seen.add(k)
            out.append(row)
    return out


# --------------------------------------------------------------------------- one outcome for all


@dataclass(frozen=True)
class _Failure:
    """An exception of one process, in a form every process can read and raise.

    Only the message and a qponder error class travel: any other class might not be
    importable in the receiving process.
    """

    message: str
    kind: type | None
    run_failed: bool

    @classmethod
    def of(cls, exc: Exception, process: int) -> _Failure:
        kind = type(exc)
        if isinstance(exc, QponderError):
            shared = kind if kind.__module__.startswith("qponder.") else None
            return cls(str(exc), shared, isinstance(exc, RunFailedError))
        if isinstance(exc, OSError):  # the line the command line prints for it
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            return cls(f"{where}{exc.strerror or exc}", None, False)
        return cls(f"process {process} failed: {kind.__name__}: {exc}", None, True)

    def error(self) -> QponderError:
        """The error to raise, with the same message (and class where it can be rebuilt)."""
        if self.kind is not None:
            try:
                rebuilt = self.kind(self.message)
            except Exception:  # a class whose constructor takes other arguments
                rebuilt = None
            if isinstance(rebuilt, QponderError) and str(rebuilt) == self.message:
                return rebuilt
        return (RunFailedError if self.run_failed else QponderError)(self.message)


def _attempt(fn: Callable[[], R]) -> tuple[R | None, Exception | None]:
    try:
        return fn(), None
    except Exception as exc:  # handed to every process; KeyboardInterrupt is not caught
        return None, exc


def on_main_process(state: Any, fn: Callable[[], R]) -> R:
    """Run ``fn`` on the main process alone and give its result to every process.

    Every process waits here until the main process is done (a barrier). When ``fn``
    raises, the main process raises that exception and every other process raises an
    error with the same message, so that none waits for a main process that has stopped.

    Args:
        state: :func:`process_state`.
        fn: The work; its result must pickle (it is broadcast).

    Returns:
        ``fn()``'s result, on every process.
    """
    if state.num_processes == 1:
        return fn()
    from accelerate.utils import broadcast_object_list

    value, error = _attempt(fn) if state.is_main_process else (None, None)
    sent = [_Failure.of(error, 0) if error is not None else value]
    (outcome,) = broadcast_object_list(sent, from_process=0)
    if isinstance(outcome, _Failure):
        state.wait_for_everyone()  # each has the message before the main process exits
        raise error if error is not None else outcome.error()
    return outcome


def on_every_process(state: Any, fn: Callable[[], R]) -> R:
    """Run ``fn`` on every process; when it fails on any, it fails on all.

    A barrier: no process goes on before every one has finished ``fn``.

    Args:
        state: :func:`process_state`.
        fn: The work.

    Returns:
        This process's ``fn()``.

    Raises:
        The exception of this process; or, when this process succeeded, an error with the
        message of the first process (in process order) that failed.
    """
    if state.num_processes == 1:
        return fn()
    from accelerate.utils import gather_object

    value, error = _attempt(fn)
    mine = _Failure.of(error, state.process_index) if error is not None else None
    failures = [f for f in gather_object([mine]) if f is not None]
    if failures:
        state.wait_for_everyone()
        raise error if error is not None else failures[0].error()
    return value


def gather(state: Any, value: R) -> list[R]:
    """Every process's ``value``, in process order (on every process)."""
    if state.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return list(gather_object([value]))


# --------------------------------------------------------------------------- the run


def score_in_shards(
    out: Path,
    setup: Callable[[], Sequence[T]],
    open_journal: OpenJournal,
    key: RowKey[T],
    score_shard: ScoreShard,
    state: Any = None,
) -> ShardedRun[T]:
    """Score the items that ``out`` lacks, split across the processes, into ``out``.

    Args:
        out: The output file (JSONL or CSV); part files lie next to it.
        setup: Run by the main process alone before anything is read: checks that must
            hold (a fresh output, or a resume with the same settings), locks, and the
            items of the run, which every process then gets.
        open_journal: Makes the journal of ``out`` or of a part file.
        key: The run's key (resume, merge, and the caller's :func:`select_rows`).
        score_shard: Scores a shard into the journal it is given.
        state: :func:`process_state` (taken when None).

    Returns:
        What was done; the rows are in ``out`` and no part file is left.

    Raises:
        The first error of ``setup``, of reading the output, or of any process's shard,
        on every process (see :func:`on_main_process`); a second run on the same output
        meets the output's lock.
    """
    state = process_state() if state is None else state
    journal = open_journal(out)
    try:
        items = on_main_process(state, lambda: _open_output(journal, out, open_journal, setup))

        def pending() -> list[T]:
            done = {key.of_row(r) for r in rows_so_far(out, open_journal)}
            return [item for item in items if key.of_item(item) not in done]

        todo = on_every_process(state, pending)  # everyone has read before anyone appends
        with state.split_between_processes(todo) as shard:
            shard = list(shard)
        counts = on_every_process(
            state, lambda: _score_own_shard(journal, out, open_journal, score_shard, shard, state)
        )
        done = gather(state, (len(shard), counts))
        on_main_process(state, lambda: merge_parts(journal, out, open_journal, key))
    finally:
        journal.close()
    total: dict[str, int] = {}
    for _, one in done:
        for name, value in one.items():
            total[name] = total.get(name, 0) + value
    return ShardedRun(list(items), len(todo), state.num_processes, [n for n, _ in done], total)


def _open_output(
    journal: AppendFile, out: Path, open_journal: OpenJournal, setup: Callable[[], Sequence[T]]
) -> list[T]:
    """The main process's setup: the caller's, the output's lock, and torn rows cut off."""
    items = list(setup())
    # before reading: a second run on the same output stops here; a run that fails before
    # its first row (a model that does not load) removes the file it created
    journal.open(lock=True, remove_if_unused=True)
    for path in [out, *part_files(out)]:
        open_journal(path).recover()
    return items


def _score_own_shard(
    journal: AppendFile,
    out: Path,
    open_journal: OpenJournal,
    score_shard: ScoreShard,
    shard: list[Any],
    state: Any,
) -> dict[str, int]:
    """This process's shard: the main process into ``out``, the others into their part."""
    if state.is_main_process:
        return score_shard(journal, shard, True)
    with open_journal(part_path(out, state.process_index)) as part:
        part.open(lock=True, remove_if_unused=True)
        return score_shard(part, shard, False)
