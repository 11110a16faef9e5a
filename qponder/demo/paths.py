"""The layout of a demo directory and the names of the stages the demo compares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGES: tuple[str, ...] = ("base", "sft_nocot", "qponder_ci", "qponder")
"""Every evaluated model, in the report's order: the untrained model, then the trained ones."""

TRAINED_STAGES: tuple[str, ...] = ("sft_nocot", "qponder_ci", "qponder")
"""The stages with a training run (``base`` is the tiny model as built)."""

STAGE_TITLES: dict[str, str] = {
    "base": "untrained model",
    "sft_nocot": "SFT without CoT (answers only)",
    "qponder_ci": "Q-Ponder-CI (CoT SFT)",
    "qponder": "Q-Ponder (CoT SFT + GRPO)",
}


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage of a demo directory writes."""

    root: Path

    @property
    def recipe(self) -> Path:
        """The recipe every stage runs with."""
        return self.root / "recipe.yaml"

    @property
    def tiny(self) -> Path:
        """The tiny model (the ``base`` stage)."""
        return self.root / "tiny"

    @property
    def data(self) -> Path:
        """The synthetic dataset."""
        return self.root / "data"

    @property
    def dataset(self) -> str:
        """The synthetic dataset as a ``--dataset`` spec."""
        return f"synthetic:{self.data}"

    @property
    def cold(self) -> Path:
        """The distilled cold-start data."""
        return self.root / "cold_start.jsonl"

    @property
    def logs(self) -> Path:
        """The folder of the training subprocesses' logs and thread files."""
        return self.root / "logs"

    def log(self, stage: str) -> Path:
        """The log of ``stage``'s training subprocess."""
        return self.logs / f"{stage}.log"

    def threads(self, stage: str) -> Path:
        """The file whose thread count ``stage``'s training follows (``--threads-file``)."""
        return self.logs / f"{stage}.threads"

    def run(self, stage: str) -> Path:
        """Training run directory of ``sft_nocot``, ``qponder_ci`` or ``qponder``."""
        return self.root / {"sft_nocot": "sft_nocot", "qponder_ci": "sft", "qponder": "grpo"}[stage]

    def model(self, stage: str) -> Path:
        """The checkpoint evaluated for ``stage``."""
        return self.tiny if stage == "base" else self.run(stage) / "final"

    def eval(self, stage: str) -> Path:
        """The evaluation folder of ``stage``."""
        return self.root / "eval" / stage


__all__ = ["STAGES", "STAGE_TITLES", "TRAINED_STAGES", "DemoPaths"]
