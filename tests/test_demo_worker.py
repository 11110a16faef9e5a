"""qponder.demo.worker: a training stage as its qponder command runs it, plus the CPU thread
count the supervisor writes; the training commands themselves know nothing of thread files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import TrainerState

from qponder.cli import main as cli_main
from qponder.config import recipe_to_dict
from qponder.demo.paths import TRAINED_STAGES, DemoPaths
from qponder.demo.recipe import bind_paths, demo_recipe, write_recipe
from qponder.demo.supervisor import stage_command, worker_command
from qponder.demo.worker import ThreadsFileCallback
from qponder.demo.worker import main as worker_main


def _state(step=0):
    state = TrainerState()
    state.global_step = step
    return state


def _write_threads(path, text, stamp_ns):
    path.write_text(text)
    os.utime(path, ns=(stamp_ns, stamp_ns))  # a distinct mtime even within one clock tick


def test_a_threads_file_resizes_torch_threads_when_it_changes(tmp_path, caplog):
    before = torch.get_num_threads()
    path = tmp_path / "sft.threads"
    cb = ThreadsFileCallback(path)
    try:
        torch.set_num_threads(1)
        cb.on_step_begin(None, _state(), None)  # no file yet: nothing changes
        assert torch.get_num_threads() == 1
        _write_threads(path, "2\n", 10**18)
        cb.on_step_begin(None, _state(5), None)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        cb.on_step_begin(None, _state(6), None)  # the file did not change: not re-applied
        assert torch.get_num_threads() == 1
        _write_threads(path, "two", 10**18 + 1)
        cb.on_step_begin(None, _state(7), None)
        assert torch.get_num_threads() == 1
        assert "positive thread count" in caplog.text and str(path) in caplog.text
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def trained(monkeypatch):
    """Replace the training entry points; record each call's recipe and arguments."""
    calls: list = []

    def fake_run(recipe, **kwargs):
        calls.append((recipe, kwargs))
        return Path(kwargs["out"]) / "final"

    monkeypatch.setattr("qponder.train.sft.run", fake_run)
    monkeypatch.setattr("qponder.train.grpo.run", fake_run)
    return calls


@pytest.mark.parametrize("stage", TRAINED_STAGES)
def test_the_worker_trains_as_the_reported_command_does_and_follows_the_threads_file(
    stage, tmp_path, trained
):
    paths = DemoPaths(tmp_path / "demo")
    write_recipe(bind_paths(demo_recipe(), paths), paths)
    # what report.md shows, run by the CLI
    assert cli_main(stage_command(paths, stage)) == 0
    # what the supervisor runs: the same command line through the worker, plus the file
    cmd = worker_command(paths, stage)
    assert cmd[1:3] == ["-m", "qponder.demo.worker"]
    assert cmd[3:] == [*stage_command(paths, stage), "--threads-file", str(paths.threads(stage))]
    assert worker_main(cmd[3:]) == 0
    (cli_recipe, cli_kwargs), (recipe, kwargs) = trained
    assert recipe_to_dict(recipe) == recipe_to_dict(cli_recipe)  # demo section included
    (callback,) = kwargs.pop("callbacks")
    assert isinstance(callback, ThreadsFileCallback) and callback.path == paths.threads(stage)
    assert kwargs == cli_kwargs
    assert recipe.model.path == str(paths.model("qponder_ci") if stage == "qponder" else paths.tiny)
    assert recipe.sft.no_cot == (stage == "sft_nocot")


def test_a_bad_worker_argument_is_one_line_exit_2(capsys, trained):
    assert worker_main(["sft", "--data", "d", "--config", "c", "--model", "m", "--out", "o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m qponder.demo.worker sft: error:")
    assert "--threads-file" in err[-1] and not trained
