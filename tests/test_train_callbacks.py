"""Training callbacks: metrics.jsonl is one record per logging step, validation picks the best."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from scipy import stats
from transformers import TrainerState

from qponder.config import ValidationConfig
from qponder.train.callbacks import (
    MetricsJsonlCallback,
    ValidationCallback,
    read_metrics,
    validation_metrics,
)


def _state(step=0, history=None):
    state = TrainerState()
    state.global_step = step
    state.log_history = list(history or [])
    return state


def test_each_log_becomes_one_json_line_with_its_step(tmp_path):
    cb = MetricsJsonlCallback(tmp_path / "metrics.jsonl")
    cb.on_log(None, _state(1), None, logs={"loss": 2.5, "rewards/score/mean": 0.25})
    cb.on_log(None, _state(2), None, logs={"loss": float("nan"), "grad_norm": torch.tensor(1.5)})
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows == [
        {"step": 1, "loss": 2.5, "rewards/score/mean": 0.25},
        {"step": 2, "loss": None, "grad_norm": 1.5},  # NaN is not JSON: null
    ]
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # strict JSON


def test_resume_drops_records_logged_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4, 5)))
    MetricsJsonlCallback(path).on_train_begin(None, _state(3), None)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_validation_metrics_match_scipy_and_count_parse_failures():
    scores = [1.2, None, 3.1, 4.0, 2.2, None]
    mos = [1.0, 2.0, 3.5, 4.5, 2.0, 5.0]
    m = validation_metrics(scores, mos)
    want = stats.spearmanr([1.2, 3.1, 4.0, 2.2], [1.0, 3.5, 4.5, 2.0])[0]
    assert m["val/srcc"] == pytest.approx(want)
    assert m["val/parse_failure_rate"] == pytest.approx(2 / 6)
    assert m["val/n"] == 6
    assert -1.0 <= m["val/plcc"] <= 1.0


def test_validation_metrics_are_nan_when_too_few_answers_parse():
    m = validation_metrics([None, 3.0, None], [1.0, 2.0, 3.0])
    assert math.isnan(m["val/srcc"]) and math.isnan(m["val/plcc"])
    assert m["val/parse_failure_rate"] == pytest.approx(2 / 3)


class _FakeTrainer:
    """Enough of a Trainer for the callback: model, processor, accelerator, save_model, and
    the real callback handler through which a Trainer's logs reach its callbacks."""

    def __init__(self, metrics_path=None):
        from accelerate import Accelerator
        from transformers.trainer_callback import CallbackHandler, TrainerControl

        self.model = torch.nn.Linear(2, 2)
        self.processing_class = object()
        self.accelerator = Accelerator(cpu=True)
        self.saved = []
        self.callbacks = []
        self.args = SimpleNamespace()
        self.control = TrainerControl()
        self.logged = []
        recorder = SimpleNamespace(on_log=lambda args, state, control, logs=None, **kw: (
            self.logged.append(dict(logs))))  # fmt: skip
        handlers = [MetricsJsonlCallback(metrics_path)] if metrics_path else []
        self.callback_handler = CallbackHandler(handlers, self.model, None, None, None)
        self.callback_handler.callbacks.append(recorder)

    def add_callback(self, cb):
        self.callbacks.append(cb)

    def save_model(self, path):
        self.saved.append(path)


class _ScriptedScorer:
    """Returns scripted scores per validation round (the model is not run)."""

    def __init__(self, rounds):
        self.rounds = list(rounds)
        self.calls = []

    def factory(self, model, processor, cfg, instruction):
        assert not model.training  # validation scores in eval mode
        scorer = self

        class _S:
            def score_items(self, items, image_path):
                scorer.calls.append([image_path(i) for i in items])
                scores = scorer.rounds.pop(0)
                yield [(i, SimpleNamespace(score=s)) for i, s in zip(items, scores, strict=True)]

        return _S()


def test_validation_logs_srcc_and_keeps_only_improving_checkpoints(tmp_path):
    samples = [(f"img{i}.png", float(m)) for i, m in enumerate([1.0, 2.0, 3.0, 4.0])]
    scripted = _ScriptedScorer(
        [
            [1.0, 2.0, 4.0, 3.0],  # srcc 0.8: best so far
            [4.0, 3.0, 2.0, 1.0],  # srcc -1: worse, not saved
            [1.0, 2.0, 3.0, 4.0],  # srcc 1: best
        ]
    )
    cfg = ValidationConfig(dataset="x", every_n_steps=2, keep_best=True)
    trainer = _FakeTrainer(tmp_path / "metrics.jsonl")
    cb = ValidationCallback(cfg, samples, tmp_path, scorer_factory=scripted.factory).attach(trainer)
    assert trainer.callbacks == [cb]
    cb.on_train_begin(None, _state(0), None)
    state = _state(0)
    for step in range(1, 7):
        state.global_step = step
        cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)  # step 6 already validated: no extra round
    assert len(scripted.calls) == 3 and scripted.calls[0] == [p for p, _ in samples]
    assert trainer.model.training  # restored after validation
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert [round(r["val/srcc"], 3) for r in rows] == [0.8, -1.0, 1.0]
    assert trainer.saved == [str(tmp_path / "best")] * 2
    assert json.loads((tmp_path / "best" / "validation.json").read_text())["step"] == 6
    assert any("val/srcc" in r for r in state.log_history)
    # every callback (each report_to tracker) got the metrics through the trainer's on_log
    assert [round(r["val/srcc"], 3) for r in trainer.logged] == [0.8, -1.0, 1.0]


def test_a_resumed_run_remembers_the_best_srcc(tmp_path):
    samples = [(f"img{i}.png", float(i)) for i in range(4)]
    scripted = _ScriptedScorer([[1.0, 2.0, 4.0, 3.0]])  # srcc 0.8 < 0.9 seen before
    cfg = ValidationConfig(dataset="x", every_n_steps=1)
    trainer = _FakeTrainer()
    cb = ValidationCallback(cfg, samples, tmp_path, scorer_factory=scripted.factory).attach(trainer)
    cb.on_train_begin(None, _state(5, history=[{"step": 4, "val/srcc": 0.9}]), None)
    cb.on_step_end(None, _state(6), None)
    assert trainer.saved == []


def test_validation_uses_the_shared_scorer_by_default(tmp_path):
    from qponder import inference
    from qponder.train import callbacks

    made = {}

    class _Spy(inference.Scorer):
        def __init__(self, model, processor, **kwargs):
            made.update(kwargs)
            raise RuntimeError("stop")

    orig = inference.Scorer
    inference.Scorer = _Spy
    try:
        with pytest.raises(RuntimeError, match="stop"):
            callbacks._default_scorer(
                None, None, ValidationConfig(batch_size=3, max_new_tokens=7), None
            )
    finally:
        inference.Scorer = orig
    assert made["batch_size"] == 3 and made["max_new_tokens"] == 7
