"""The tiny models the tests share, each built once per test session (a build takes seconds):
tests that change a model (the pretext trains it in place) copy it first."""

from __future__ import annotations

import shutil
from pathlib import Path

from qponder.answer_format import render
from qponder.prompts import DEFAULT_PROMPTS

# one completion in the output format, and the small tokenizer corpus the training tests use
COMPLETION = render("The image is sharp, with slight noise and good exposure.", "3.47")
SMALL_CORPUS = [DEFAULT_PROMPTS.student_instruction, DEFAULT_PROMPTS.teacher_blind] * 5 + [
    COMPLETION
] * 20


def _built(path: Path, **kwargs) -> Path:
    from qponder.models.tiny import build_tiny_model

    if not (path / "config.json").exists():
        build_tiny_model(path, seed=0, **kwargs)
    return path


def random_tiny_model(base: Path) -> Path:
    """The random tiny Qwen2.5-VL with the default tokenizer corpus, under ``base``."""
    return _built(base / "qponder-tiny-vlm")


def small_tiny_model(base: Path) -> Path:
    """The random tiny Qwen2.5-VL whose tokenizer is trained on :data:`SMALL_CORPUS`."""
    return _built(base / "qponder-tiny-vlm-small", corpus=SMALL_CORPUS)


def copy_of(model: Path, dest: Path) -> Path:
    """A copy of a shared model, for a test that changes it."""
    shutil.copytree(model, dest)
    return dest
