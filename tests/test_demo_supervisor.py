"""qponder.demo.supervisor: the training commands it runs, how it shares CPU threads, and
the progress bars it draws for the stages it supervises.

That its planned step counts match what the trainers take is checked on a real run in
tests/test_demo.py; the known values are doctests of :func:`planned_steps`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from qponder.cli import build_parser
from qponder.demo import supervisor
from qponder.demo.paths import TRAINED_STAGES, DemoPaths
from qponder.demo.recipe import demo_recipe
from qponder.demo.supervisor import (
    STAGE_LABELS,
    StageBars,
    stage_command,
    stage_steps,
    thread_shares,
    train_stages,
    worker_command,
)
from qponder.demo.worker import build_parser as worker_parser


def test_threads_freed_by_a_finished_stage_go_to_the_stages_still_training():
    assert thread_shares(2, {"qponder_ci"}) == {"qponder_ci": 2}
    assert thread_shares(2, {"qponder_ci", "sft_nocot"}) == {"qponder_ci": 1, "sft_nocot": 1}
    assert thread_shares(5, ["b", "a"]) == {"a": 3, "b": 2}
    assert thread_shares(1, ["a", "b"]) == {"a": 1, "b": 1}  # never zero


@pytest.mark.parametrize("stage", TRAINED_STAGES)
def test_each_training_command_is_one_the_cli_accepts_and_its_worker_follows_a_threads_file(stage):
    paths = DemoPaths(Path("/demo"))
    args = build_parser().parse_args(stage_command(paths, stage))
    assert args.command == ("grpo" if stage == "qponder" else "sft")
    assert args.out == str(paths.run(stage))
    if stage != "qponder":  # a recipe flag: None when not given, never overriding the recipe
        assert args.no_cot is (True if stage == "sft_nocot" else None)
    worker = worker_parser().parse_args(worker_command(paths, stage)[3:])
    assert worker.threads_file == str(paths.threads(stage))


# A stage's subprocess as the supervisor sees one: it logs its steps to RUN/metrics.jsonl as
# the trainers' callback does, PAUSE seconds apart, then exits. (Real training takes minutes;
# what is under test is the supervisor's loop, its subprocesses and its bars.)
FAKE_STAGE = """
import json, sys, time
from pathlib import Path
run, steps, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
run.mkdir(parents=True, exist_ok=True)
for step in range(1, steps + 1):
    time.sleep(pause)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step}) + "\\n")
"""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _frames(stderr: str, label: str) -> list[str]:
    """Every drawing of the bar labelled ``label`` in a terminal's stream, in order."""
    return [f for f in re.split(r"[\r\n]", _ANSI.sub("", stderr)) if f.startswith(label)]


def test_a_finished_stage_bar_is_drawn_once_more_and_not_again_while_the_other_trains(
    tmp_path, monkeypatch, capsys
):
    paths = DemoPaths(tmp_path)
    recipe = demo_recipe("tiny-demo")
    paths.cold.write_text("".join(json.dumps({"row": i}) + "\n" for i in range(16)))
    steps = stage_steps(recipe, paths, "sft_nocot")  # 16 rows, batch 8, 3 epochs: 6
    pauses = {"sft_nocot": 0.0, "qponder_ci": 1.0}  # the answer-only run ends ~6 s earlier

    def fake_worker(paths: DemoPaths, stage: str) -> list[str]:
        return [sys.executable, "-c", FAKE_STAGE, str(paths.run(stage)), str(steps),
                str(pauses[stage])]  # fmt: skip

    monkeypatch.setattr(supervisor, "worker_command", fake_worker)
    train_stages(recipe, paths, ["qponder_ci", "sft_nocot"], 1, progress=True)
    err = capsys.readouterr().err
    nocot = _frames(err, "answer-only SFT (sft_nocot)")
    cot = _frames(err, "CoT SFT (qponder_ci)")
    assert cot and nocot, err
    # the answer-only bar: marked done at its last step, then drawn again only when the bars
    # close, unchanged (before: redrawn every second, its clock running on, for as long as
    # the CoT run went on)
    done = nocot.index(next(f for f in nocot if "done" in f))
    assert f"{steps}/{steps}" in nocot[done]
    assert nocot[done + 1 :] == [nocot[done]], nocot
    assert f"{steps}/{steps}" in cot[-1] and "done" in cot[-1]
    assert (paths.threads("qponder_ci")).read_text() == "2\n"  # its core was handed on


def test_every_bar_is_labelled_with_its_stage(capsys):
    bars = StageBars({"qponder": 80})
    bars.show("qponder", 20)
    bars.finish("qponder", 80, ok=False)
    bars.close()
    frames = _frames(capsys.readouterr().err, "GRPO (qponder)")
    assert "20/80" in frames[1] and "80/80" in frames[-1] and "failed" in frames[-1]
    assert set(STAGE_LABELS) == set(TRAINED_STAGES)
    assert all(stage in STAGE_LABELS[stage] for stage in TRAINED_STAGES)
    assert len(set(STAGE_LABELS.values())) == len(TRAINED_STAGES)
