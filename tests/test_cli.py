"""The command line: one validated path from flags to recipe (defaults < YAML < --set <
flags), and every user mistake a one-line error naming the key, exit code 2."""

from __future__ import annotations

import argparse
import json

import pytest

from qponder.cli import build_compare_parser, build_parser, main

RECIPE = """
model: {max_pixels: 12544}
sft:
  trl: {max_steps: 80, learning_rate: 1.0e-3}
grpo:
  trl: {max_steps: 80, num_generations: 4, per_device_train_batch_size: 8}
eval:
  batch_size: 2
  max_new_tokens: 8
  limit: 2
"""


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture
def captured(monkeypatch):
    """Replace the training and scoring entry points; record the recipe they receive."""
    seen: dict = {}

    def fake_train(recipe, **kwargs):
        seen["recipe"], seen["kwargs"] = recipe, kwargs
        return "final"

    def fake_score(paths, model, out, cfg, **kwargs):
        seen["eval"], seen["kwargs"] = cfg, kwargs
        return {}

    monkeypatch.setattr("qponder.train.sft.run", fake_train)
    monkeypatch.setattr("qponder.train.grpo.run", fake_train)
    monkeypatch.setattr("qponder.inference.score_paths", fake_score)
    return seen


def test_sft_flags_win_over_set_which_wins_over_yaml(recipe_file, captured):
    argv = ["sft", "--config", str(recipe_file), "--data", "d.jsonl", "--out", "o"]
    assert main([*argv, "--set", "sft.trl.max_steps=5", "--max-steps", "3", "--model", "m"]) == 0
    recipe = captured["recipe"]
    assert recipe.sft.trl["max_steps"] == 3  # flag > --set > YAML (80)
    assert recipe.sft.trl["learning_rate"] == 1e-3  # YAML > TRL's default
    assert recipe.model.path == "m" and recipe.sft.no_cot is False
    assert main([*argv, "--set", "sft.trl.max_steps=5", "--no-cot"]) == 0
    assert captured["recipe"].sft.trl["max_steps"] == 5  # --set > YAML
    assert captured["recipe"].sft.no_cot is True


def test_grpo_flags_reach_the_recipe(recipe_file, captured):
    argv = ["grpo", "--config", str(recipe_file), "--dataset", "synthetic:x", "--out", "o"]
    assert main([*argv, "--max-steps", "7", "--model", "sft/final"]) == 0
    assert captured["recipe"].grpo.trl["max_steps"] == 7
    assert captured["recipe"].model.path == "sft/final"


def test_score_flags_win_and_a_flag_path_is_never_read_as_yaml(recipe_file, captured, tmp_path):
    argv = ["score", "a.png", "--model", "m", "--out", "o.jsonl", "--config", str(recipe_file)]
    argv += ["--set", "eval.batch_size=5", "--batch-size", "3", "--backend", "openai"]
    assert main([*argv, "--base-url", "1e-4"]) == 0  # a string, not the number 0.0001
    cfg = captured["eval"]
    assert cfg.batch_size == 3 and cfg.max_new_tokens == 8 and cfg.backend == "openai"
    assert cfg.base_url == "1e-4"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "prompts.colour=red"], r"prompts: unknown field\(s\) \['colour'\]"),
        (["--set", "grpo.score.sigma=0"], r"grpo\.score\.sigma: must be > 0"),
        (["--set", "grpo.trl.reward_weights=[9,9]"], r"grpo\.trl\.reward_weights: set the weights"),
        (
            ["--set", "sft.trl.learning_rate=fast"],
            r"sft\.trl\.learning_rate: 'fast' is not a number",
        ),
        (["--set", "sft.trl.x=[1"], r"--set sft\.trl\.x: the value '\[1' is not valid YAML"),
        (["--set", "grpo.rewards.speed=1"], r"grpo\.rewards\.speed: unknown reward"),
        (["--set", "grpo.consistency.judge=openai"], r"grpo\.consistency\.base_url: judge openai"),
        (["--set", "eval.backend=onnx"], r"eval\.backend: 'onnx' is not hf\|vllm\|openai"),
        (["--set", "eval.on_error=ignore"], r"eval\.on_error: 'ignore' is not raise\|skip"),
        (["--set", "seed.x=1"], r"\(--set\): seed: must be a whole number, got \{.x.: 1\}"),
        (["--max-steps", "-1"], r"sft\.trl\.max_steps: must be >= 1, got -1"),
        (["--max-steps", "0"], r"sft\.trl\.max_steps: must be >= 1, got 0"),
    ],
)
def test_bad_recipe_values_are_one_line_errors_naming_the_key(argv, message, capsys, captured):
    code = main(["sft", "--data", "d.jsonl", "--out", "o", *argv])
    assert code == 2
    line = _one_line_error(capsys)
    assert line.startswith("qponder sft: error:")
    import re

    assert re.search(message, line), line
    assert "recipe" not in captured  # refused before any training started


def test_eval_limit_and_endpoint_are_checked_before_any_work(capsys, tmp_path):
    base = ["eval", "--model", "m", "--dataset", "synthetic:nowhere", "--out", str(tmp_path / "r")]
    assert main([*base, "--limit", "-1"]) == 2
    assert "eval.limit: must be >= 1" in _one_line_error(capsys)
    assert main([*base, "--backend", "openai"]) == 2
    assert "eval.base_url: the openai backend needs an endpoint" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_an_invalid_yaml_file_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [unclosed\n")
    assert main(["sft", "--config", str(bad), "--data", "d", "--out", "o"]) == 2
    assert str(bad) in _one_line_error(capsys)


def test_verbose_shows_the_traceback_for_bug_reports(capsys):
    assert main(["-v", "sft", "--data", "d", "--out", "o", "--set", "grpo.score.sigma=0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "grpo.score.sigma" in err


@pytest.mark.parametrize("command", [["sft", "--data", "d"], ["grpo", "--dataset", "x:y"]])
def test_training_commands_know_nothing_of_thread_files(command, capsys, captured):
    # the demo's supervisor hands cores on through its own worker (tests/test_demo_worker.py)
    assert main([*command, "--out", "o", "--model", "m", "--threads-file", "t"]) == 2
    assert "unrecognized arguments: --threads-file t" in _one_line_error(capsys)
    assert "recipe" not in captured


def test_env_prints_json(capsys):
    assert main(["env"]) == 0
    assert "packages" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model", "tiny", "--out", "t", "--hidden-size", "0"], "argument --hidden-size: must be >= 1"),
        (["model", "tiny", "--out", "t", "--hidden-size", "30"], "hidden_size / num_heads"),
        (["model", "tiny", "--out", "t", "--family", "llama"],
         "argument --family: invalid choice: 'llama' (choose from 'qwen2_5_vl', 'qwen3_vl'"),
        (["distill", "--dataset", "x:y", "--out", "o.jsonl", "--limit", "-1"], "--limit: must be >= 1"),
        (["eval", "--model", "m", "--dataset", "x:y", "--out", "o", "--batch-size", "0"],
         "eval.batch_size: must be >= 1, got 0"),
        (["score", "a.png", "--model", "m", "--out", "o.jsonl", "--set", "eval.max_new_tokens=0"],
         "eval.max_new_tokens: must be >= 1, got 0"),
        (["sft", "--data", "d", "--out", "o", "--set", "sft.trl.per_device_train_batch_size=0"],
         "sft.trl.per_device_train_batch_size: must be >= 1, got 0"),
        (["grpo", "--dataset", "x:y", "--out", "o", "--set", "grpo.trl.num_generations=1"],
         "grpo.trl.num_generations: must be >= 2, got 1"),
        (["model", "pretrain-vision", "--model", "m", "--dataset", "x:y", "--lr", "fast"],
         "argument --lr: 'fast' is not a number"),
        (["eval", "compare", "a", "b", "--bootstrap", "-5"], "argument --bootstrap: must be >= 0"),
        (["sft", "--data", "d", "--out", "o"], "model.path: no model to train"),
    ],
)  # fmt: skip
def test_numbers_and_required_values_are_checked_where_they_enter(argv, message, capsys, tmp_path):
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_a_run_that_fails_on_its_own_exits_1_on_one_line(monkeypatch, capsys):
    from qponder.errors import RunFailedError

    def failing(*args, **kwargs):
        raise RunFailedError("demo: training of qponder failed; see runs/demo/logs/qponder.log")

    monkeypatch.setattr("qponder.train.sft.run", failing)
    assert main(["sft", "--data", "d", "--out", "o", "--model", "m"]) == 1
    assert "see runs/demo/logs/qponder.log" in _one_line_error(capsys)


# --------------------------------------------------------------------------- no abbreviations


def _parsers(parser):
    """``parser`` and every sub-parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_a_flag_is_never_read_as_the_longer_flag_it_begins(capsys, captured):
    # issue 23: argparse's prefix matching read --mode as --model, so this scored with a
    # model called "fast" (the later value won)
    argv = ["score", "a.png", "--model", "runs/x", "--out", "o.jsonl"]
    assert main([*argv, "--mode", "fast"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("qponder score: error:") and "unrecognized arguments: --mode" in line
    assert main([*argv, "--mod", "x"]) == 2
    assert "unrecognized arguments: --mod x" in _one_line_error(capsys)
    assert main(["score", "a.png", "--mod", "x", "--out", "o.jsonl"]) == 2
    assert "required: --model" in _one_line_error(capsys)  # --mod was not taken for --model
    assert "eval" not in captured  # nothing was scored


def test_no_parser_accepts_abbreviated_flags():
    parsers = [*_parsers(build_parser()), build_compare_parser()]
    assert len(parsers) >= 16  # qponder, 10 commands, data's 3, model's 2, eval compare
    assert [p.prog for p in parsers if p.allow_abbrev] == []


# --------------------------------------------------------------------------- the flag table


def _has_key(recipe, key: str) -> bool:
    node = recipe
    for part in key.split("."):
        if isinstance(node, dict):  # TRL's options: load_recipe checks them against TRL
            return True
        if not hasattr(node, part):
            return False
        node = getattr(node, part)
    return True


def test_every_recipe_flag_sets_a_key_of_the_recipe_and_defaults_to_not_given():
    from qponder.cli.flags import RECIPE_FLAGS
    from qponder.config import Recipe

    assert [f.key for f in RECIPE_FLAGS if not _has_key(Recipe(), f.key)] == []
    for parser in _parsers(build_parser()):
        for f in parser.get_default("recipe_flags") or ():
            assert parser.get_default(f.dest) is None, (parser.prog, f.flag)


def test_flag_choices_are_the_configs_own_lists():
    from qponder import config
    from qponder.cli.flags import recipe_flag
    from qponder.data.labels import ON_ERROR

    assert recipe_flag("eval.backend").choices is config.BACKENDS
    assert recipe_flag("distill.teacher").choices is config.TEACHERS
    assert recipe_flag("distill.mode").choices is config.DISTILL_MODES
    assert recipe_flag("eval.on_error").choices is config.ON_ERROR_POLICIES
    assert config.ON_ERROR_POLICIES == ON_ERROR  # the policies the label reader knows
