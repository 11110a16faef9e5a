"""The micro-batcher: one worker, batches up to max_batch across requests, a bounded wait, a
bounded queue, per-request results in order, samples kept apart, failures reported.

No test sleeps to let the worker get somewhere: a gated score function says when the worker
is inside it (``entered``), and is held there until the test releases ``gate``, so what is
queued meanwhile waits for the next batch however slow the machine is."""

from __future__ import annotations

import threading

import pytest

from qponder.serve.batcher import BatcherClosed, MicroBatcher, QueueFull


class Recorder:
    """A score function that records its calls; each result names its image and samples.
    ``entered`` is set once the worker is inside a call (it has taken that batch); ``gate``
    (when given) holds every call until it is released."""

    def __init__(self, gate: threading.Event | None = None, fail_on: object = None):
        self.calls: list[tuple[list, int]] = []
        self.threads: set[str] = set()
        self.gate = gate
        self.fail_on = fail_on
        self.entered = threading.Event()

    def __call__(self, images, samples):
        self.calls.append((list(images), samples))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_on in images:
            raise RuntimeError("model exploded")
        return [(im, samples) for im in images]


@pytest.fixture
def make():
    made = []

    def build(score, **kwargs):
        batcher = MicroBatcher(score, **kwargs).start()
        made.append(batcher)
        return batcher

    yield build
    for b in made:
        b.stop(timeout=5)


def test_concurrent_requests_share_batches_and_get_their_own_results_in_order(make):
    gate = threading.Event()
    score = Recorder(gate)
    batcher = make(score, max_batch=8, max_wait_ms=0)
    warm = batcher.submit(["warm"])
    assert score.entered.wait(5)  # the worker holds "warm": the requests below all wait
    futures = [batcher.submit([f"r{r}-{i}" for i in range(3)]) for r in range(4)]
    gate.set()
    assert warm.result(10) == [("warm", 1)]
    results = [f.result(10) for f in futures]
    assert results == [[(f"r{r}-{i}", 1) for i in range(3)] for r in range(4)]
    # 12 images, at most 8 per call, taken together across requests
    assert [len(images) for images, _ in score.calls] == [1, 8, 4]
    assert score.threads == {"qponder-model-worker"}


def test_a_lone_request_waits_at_most_max_wait(make):
    score = Recorder()
    batcher = make(score, max_batch=64, max_wait_ms=50)
    # answered although the batch never fills (a batcher that waited for 64 images would
    # time out here); how long it waits is measured in benchmarks/bench_serve.py
    assert batcher.submit(["a"]).result(5) == [("a", 1)]
    batcher2 = make(Recorder(), max_batch=64, max_wait_ms=0)
    assert batcher2.submit(["b"]).result(5) == [("b", 1)]


def test_a_request_larger_than_max_batch_is_split_and_reassembled(make):
    score = Recorder()
    batcher = make(score, max_batch=4, max_wait_ms=0)
    images = [f"i{k}" for k in range(10)]
    assert [im for im, _ in batcher.submit(images).result(10)] == images
    assert [len(c[0]) for c in score.calls] == [4, 4, 2]


def test_samples_values_are_scored_in_separate_calls(make):
    gate = threading.Event()
    score = Recorder(gate)
    batcher = make(score, max_batch=16, max_wait_ms=0)
    first = batcher.submit(["warm"])  # holds the worker until the others are queued
    assert score.entered.wait(5)
    greedy = batcher.submit(["g1", "g2"], samples=1)
    sampled = batcher.submit(["s1"], samples=4)
    greedy2 = batcher.submit(["g3"], samples=1)
    gate.set()
    assert first.result(5) == [("warm", 1)]
    assert greedy.result(5) == [("g1", 1), ("g2", 1)]
    assert sampled.result(5) == [("s1", 4)]
    assert greedy2.result(5) == [("g3", 1)]
    assert sorted((tuple(c[0]), c[1]) for c in score.calls[1:]) == [
        (("g1", "g2", "g3"), 1),
        (("s1",), 4),
    ]


def test_a_full_queue_refuses_at_once_with_a_retry_after(make):
    gate = threading.Event()
    score = Recorder(gate)
    batcher = make(score, max_batch=1, max_wait_ms=0, max_queue=3)
    busy = batcher.submit(["busy"])
    assert score.entered.wait(5)  # the worker holds "busy"; the queue is empty again
    waiting = batcher.submit(["a", "b"])
    assert batcher.queued == 2
    with pytest.raises(QueueFull) as exc:
        batcher.submit(["c", "d"])
    assert exc.value.retry_after >= 1
    also = batcher.submit(["c"])  # still fits
    gate.set()
    assert [f.result(5) for f in (busy, waiting, also)] == [
        [("busy", 1)],
        [("a", 1), ("b", 1)],
        [("c", 1)],
    ]


def test_a_request_larger_than_the_queue_fits_into_an_empty_one(make):
    batcher = make(Recorder(), max_batch=2, max_wait_ms=0, max_queue=2)
    assert len(batcher.submit(list("abcde")).result(5)) == 5


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on(make):
    gate = threading.Event()
    score = Recorder(gate, fail_on="bad")
    batcher = make(score, max_batch=4, max_wait_ms=0)
    hold = batcher.submit(["hold"])
    assert score.entered.wait(5)
    bad = batcher.submit(["x", "bad"])
    good = batcher.submit(["y"])  # shares the failing batch
    gate.set()
    assert hold.result(5) == [("hold", 1)]
    with pytest.raises(RuntimeError, match="exploded"):
        bad.result(5)
    with pytest.raises(RuntimeError, match="exploded"):
        good.result(5)
    assert batcher.submit(["z"]).result(5) == [("z", 1)]


def test_stop_fails_what_waits_and_refuses_new_requests(make):
    gate = threading.Event()
    score = Recorder(gate)
    batcher = make(score, max_batch=1, max_wait_ms=0)
    running = batcher.submit(["run"])
    assert score.entered.wait(5)
    waiting = batcher.submit(["wait"])
    stopper = threading.Thread(target=batcher.stop, kwargs={"timeout": 5})
    stopper.start()
    # release the worker only once stop() has closed the batcher (it says so under the
    # batcher's condition), so that "wait" can never be taken into a batch
    with batcher._cond:
        assert batcher._cond.wait_for(lambda: batcher._closed, timeout=5)
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert running.result(5) == [("run", 1)]
    with pytest.raises(BatcherClosed):
        waiting.result(5)
    with pytest.raises(BatcherClosed):
        batcher.submit(["late"])


def test_empty_requests_and_bad_settings():
    batcher = MicroBatcher(Recorder())
    assert batcher.submit([]).result(1) == []
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
