"""A simulated teacher for the synthetic dataset (``qponder data synth``), so that the demo and
the tests have realistic cold-start data with no model and no network.

It reads what a real teacher would have to see: the distortions applied to the image
(``sample.meta["distortions"] = [{"kind", "level" 1..5, "direction"?}]``) and its content
(``sample.meta["content_desc"]``, else ``["content"]``), and writes multi-aspect reasoning
with :mod:`qponder.data.synthetic_reasoning`.

Most answers score near the MOS (within 0.3). A share ``error_rate`` of the answers is wrong
in the ways real teachers are wrong, and should be filtered out by distillation:
overlooking the defects (score at least 1.0 too high), inventing a severe defect (at least
1.0 too low), or leaving out the ``<answer>`` block. Every answer is deterministic for a
(seed, sample id, answer index), whatever the order or concurrency of the run.
"""

from __future__ import annotations

import hashlib
import logging
import random
from typing import Any

from qponder.data.synthetic_reasoning import plausible_distortions, synthetic_completion
from qponder.distill.base import Teacher, TeacherReply, TeacherRequest

logger = logging.getLogger(__name__)


def _seeded_rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SyntheticTeacher(Teacher):
    """The simulated teacher (see the module docstring).

    Args:
        error_rate: Share of answers that are wrong and should be filtered out.
        seed: Makes every answer reproducible.
    """

    name = "synthetic"
    max_in_flight = 4

    def __init__(self, error_rate: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must lie in [0, 1], got {error_rate}")
        self.error_rate = error_rate
        self.seed = seed
        self._warned = False

    def answer(self, sample: Any, index: int = 0) -> tuple[str, str]:
        """Answer number ``index`` for ``sample``; see :func:`synthetic_completion`."""
        meta = getattr(sample, "meta", None) or {}
        rng = _seeded_rng(self.seed, sample.id, index)
        distortions = meta.get("distortions")
        if distortions is None:
            if not self._warned:
                logger.warning(
                    "synthetic teacher: samples carry no distortion metadata; reasoning is "
                    "invented from the MOS (fine for tests, meaningless as training data)"
                )
                self._warned = True
            distortions = plausible_distortions(
                float(sample.mos), _seeded_rng(self.seed, sample.id)
            )
        content = meta.get("content_desc") or meta.get("content")
        return synthetic_completion(float(sample.mos), distortions, content, rng, self.error_rate)

    async def generate(self, request: TeacherRequest) -> list[TeacherReply]:
        """Return ``request.n`` simulated answers (the image itself is not looked at)."""
        self.stats.requests += 1
        return [TeacherReply(self.answer(request.sample, k)[0], "stop") for k in range(request.n)]
