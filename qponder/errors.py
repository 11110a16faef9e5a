"""Exception types shared by every stage.

The CLI reports any :class:`QponderError` as one line instead of a traceback, so each
message must name the file, line or field at fault: exit status 2 for bad input, 1 for a
:class:`RunFailedError` (a run that started and then failed).
"""

from __future__ import annotations


class QponderError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""


class RunFailedError(QponderError):
    """A run that started went wrong on its own (a training stage crashed, the teacher
    stopped answering); the CLI reports it as one line with exit status 1, not 2."""


class DatasetError(QponderError, ValueError):
    """A label file or dataset folder is invalid; the message names the file and line."""


class BadImageError(QponderError, OSError):
    """An image cannot be used; the message names the path and the reason.

    Attributes:
        path: The offending file.
        reason: A short machine-readable reason (``missing``, ``empty``, ``truncated``,
            ``not_an_image``, ``corrupted``, ``is_directory``, ``too_many_pixels``).
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{path}: {reason}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class MissingDependencyError(QponderError, ImportError):
    """An optional dependency (vLLM, DeepSpeed, ...) is needed but not installed."""
