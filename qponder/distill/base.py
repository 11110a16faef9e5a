"""The interface every teacher implements, and the errors the runner classifies.

A teacher turns one request (an image, the teacher prompt, how many answers) into ``n``
raw text replies. It never parses or filters them: that is the runner's job, so every
teacher is judged by the same parser (:mod:`qponder.parsing`).

Errors are typed so that the runner can tell an image it should give up on
(:class:`TeacherError`, recorded as a ``teacher_error`` reject) from a teacher that cannot
work at all (:class:`TeacherFatalError`, e.g. a wrong API key or model name), which stops
the run before it marks every image as failed.
"""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from qponder.errors import QponderError, RunFailedError


def downscale(image: Any, max_side: int) -> Any:
    """``image`` shrunk so that its longest side is at most ``max_side`` pixels (aspect ratio
    kept, never upscaled): what every teacher is shown (``distill.max_side``).

    Example:
        >>> from PIL import Image
        >>> downscale(Image.new("RGB", (60, 30)), 20).size
        (20, 10)
    """
    from PIL import Image

    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class TeacherRequest:
    """One image to reason about.

    Attributes:
        sample: The dataset sample (``qponder.data.Sample``). Real teachers use only its id
            (for logs); the synthetic teacher, a simulated oracle, also reads its MOS and
            distortion metadata.
        image: The RGB image (PIL), already checked by ``qponder.data.load_image``.
        system: The teacher's system message.
        prompt: The teacher's user text (blind or guided prompt).
        n: How many independent answers to return.
    """

    sample: Any
    image: Any
    system: str
    prompt: str
    n: int = 1


@dataclass(frozen=True)
class TeacherReply:
    """One raw answer of the teacher.

    Attributes:
        text: The generated text, unparsed.
        finish_reason: ``"stop"``, ``"length"`` (cut by the token limit) or ``None`` when
            the backend does not say.
    """

    text: str
    finish_reason: str | None = None


class TeacherError(QponderError):
    """The teacher gave no usable reply for one image (retries exhausted, request refused).

    Attributes:
        kind: A short machine-readable cause (``timeout``, ``rate_limit``, ``server_error``,
            ``malformed``, ``connection``, ``bad_request``).
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


class TeacherFatalError(QponderError):
    """The teacher cannot serve any request (authentication, unknown model, bad endpoint).

    The runner stops at once and records nothing for the images in flight.
    """


class TeacherStoppedError(TeacherFatalError, RunFailedError):
    """The teacher failed on too many images in a row during a run (the endpoint went
    down): the run stops, keeping everything written (exit status 1)."""


@dataclass
class TeacherStats:
    """Counters of one run, reported in ``FILE.report.json``."""

    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": dict(sorted(self.retries.items())),
            "failures": dict(sorted(self.failures.items())),
        }


class Teacher(abc.ABC):
    """A source of multi-aspect quality reasoning.

    Subclasses set :attr:`name` (recorded in every row, e.g. ``"openai:Qwen2.5-VL-72B"``)
    and :attr:`max_in_flight` (how many requests the runner keeps open at once).
    """

    name: str = "teacher"
    max_in_flight: int = 1

    def __init__(self) -> None:
        self.stats = TeacherStats()

    async def start(self) -> None:  # noqa: B027 - an optional hook
        """Prepare inside the running event loop (resolve names, start workers)."""

    def image_problem(self, image: Any) -> str | None:
        """Why this teacher cannot take ``image`` at all (a ``bad_image`` reason, e.g. a local
        model's processor limit), decided before it is asked; None by default."""
        return None

    @abc.abstractmethod
    async def generate(self, request: TeacherRequest) -> list[TeacherReply]:
        """Return ``request.n`` replies (possibly fewer, never zero).

        Raises:
            TeacherError: No reply could be obtained for this image.
            TeacherFatalError: The teacher cannot work at all.
        """

    async def aclose(self) -> None:  # noqa: B027 - an optional hook
        """Release connections, threads or models."""
