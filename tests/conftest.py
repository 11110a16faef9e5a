"""Test-wide settings: nothing a test does may write outside its temporary folders; the
tiny models are built once per session."""

from __future__ import annotations

import pytest
from tiny_models import random_tiny_model, small_tiny_model


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Seeded split files go to ``$XDG_CACHE_HOME``; keep them out of the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The random tiny Qwen2.5-VL (``build_tiny_model(seed=0)``); do not change it."""
    return random_tiny_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def small_tiny(tmp_path_factory):
    """The random tiny Qwen2.5-VL with the small tokenizer corpus; do not change it."""
    return small_tiny_model(tmp_path_factory.getbasetemp())
