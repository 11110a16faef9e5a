"""Batched scoring of images with a quality-reasoning model (DESIGN §2, §6).

:class:`Scorer` runs one of three backends behind the same API (``hf`` transformers,
``vllm``, ``openai`` for a remote OpenAI-compatible endpoint) and returns, per image,
``{score, expected_score, reasoning, text, error, samples, score_mean, score_std}``.
:func:`score_paths` is ``qponder score``: files, folders and globs into JSONL or CSV,
resumable.
"""

from __future__ import annotations

from qponder.inference.backends import Generation, HFBackend, OpenAIBackend, VLLMBackend, encode_png
from qponder.inference.files import expand_image_paths, score_paths
from qponder.inference.scorer import BACKENDS, Scorer, ScoreResult, result_from_generations

__all__ = [
    "BACKENDS",
    "Generation",
    "HFBackend",
    "OpenAIBackend",
    "ScoreResult",
    "Scorer",
    "VLLMBackend",
    "encode_png",
    "expand_image_paths",
    "result_from_generations",
    "score_paths",
]
