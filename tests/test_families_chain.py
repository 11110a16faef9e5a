"""The whole chain on Qwen3-VL and on a non-Qwen family (Gemma 3), on every CI run:
``qponder model tiny --family`` -> distill (synthetic and HF teacher) -> SFT (CoT, no-CoT,
LoRA) -> GRPO (format, score, consistency; full and LoRA) -> eval -> score -> serve, each
stage through the real CLI and checked on what it wrote (benchmarks/families.py, which
runs every family and prints the matrix of docs/models.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _families_module():
    spec = importlib.util.spec_from_file_location(
        "families_chain", ROOT / "benchmarks" / "families.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    return _families_module(), tmp_path_factory.mktemp("chains")


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("family", ["qwen3_vl", "gemma3"])
def test_every_stage_works_for_the_family(family, chains):
    module, work = chains
    synth = module.make_synthetic(work / "synth")
    result = module.run_chain(family, work / family, synth)
    failed = [f"{s.stage}: {s.detail}" for s in result.stages if not s.ok]
    assert not failed, "\n".join(failed)
    assert [s.stage for s in result.stages] == list(module.STAGES)
    assert "format reward up to" in result.by_stage()["grpo"].detail
