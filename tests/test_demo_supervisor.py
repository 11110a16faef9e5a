"""qponder.demo.supervisor: the training commands it runs and how it shares CPU threads.

That its planned step counts match what the trainers take is checked on a real run in
tests/test_demo.py; the known values are doctests of :func:`planned_steps`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qponder.cli import build_parser
from qponder.demo.paths import TRAINED_STAGES, DemoPaths
from qponder.demo.supervisor import stage_command, thread_shares, worker_command
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
