"""What a model folder is: a PEFT adapter (and its base model), a checkpoint, or neither;
and whether a value that names no folder may still be a hub id (:func:`check_model_path`).

:mod:`qponder.models.processors` and :mod:`qponder.models.loading` both ask; the answers
live here so that neither imports the other for them, and so that a command can ask before
it starts any work (``qponder serve`` before it listens).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qponder.errors import QponderError

ADAPTER_CONFIG = "adapter_config.json"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def adapter_base(path: str | os.PathLike) -> str | None:
    """Return the base model of a PEFT adapter folder, or None when ``path`` is not one.

    Raises:
        QponderError: When ``adapter_config.json`` names no base model.
    """
    cfg_file = Path(path) / ADAPTER_CONFIG
    if not cfg_file.is_file():
        return None
    base = json.loads(cfg_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise QponderError(f"{cfg_file}: no base_model_name_or_path; cannot load the adapter")
    return str(base)


def has_processor_files(path: str) -> bool:
    """Whether the local folder ``path`` carries processor or tokenizer files of its own
    (an adapter folder may, or may rely on its base model's)."""
    return Path(path).is_dir() and any((Path(path) / f).is_file() for f in _PROCESSOR_FILES)


def check_checkpoint_folder(path: str) -> None:
    """Refuse a model that is not there before transformers tries it.

    A local folder must hold ``config.json``. A value that exists nowhere here is left to
    the hub only when it could be a hub id and the hub can be asked; otherwise it fails at
    once (transformers would spend about 25 s retrying the hub first, then report a
    connection error about a folder the user mistyped). It is a path, not a hub id, when it
    starts with ``/``, ``.`` or ``~``, has more than one ``/``, or names a folder that
    exists (``runs/nope`` where ``runs/`` is one). Under ``HF_HUB_OFFLINE=1`` (or
    ``TRANSFORMERS_OFFLINE=1``) any value must be a folder or a model in the local hub cache.

    Args:
        path: A checkpoint folder or a hub id, as the user gave it.

    Raises:
        QponderError: The folder has no ``config.json`` (empty, or not a model), or the
            value is no local folder and cannot be a hub model: "no such model folder",
            with how a hub id is told apart.
    """
    folder = Path(path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise QponderError(
            f"{path}: not a model checkpoint (no config.json); give a folder written by "
            "save_pretrained (e.g. RUN/final) or a hub name"
        )
    if folder.exists():
        return
    why = _why_not_a_hub_id(path)
    if why is not None:
        raise QponderError(f"{path}: no such model folder ({why})")


HUB_ID_HINT = "a hub id such as org/name needs the network and no local folder of that name"


def _why_not_a_hub_id(path: str) -> str | None:
    """Why ``path``, which exists nowhere here, cannot be a hub model; None if it may be."""
    if path.startswith(("/", ".", "~")) or path.count("/") > 1:
        return f"it is written as a path; {HUB_ID_HINT}"
    parent = Path(path).parent
    if parent != Path(".") and parent.is_dir():
        return f"{parent}/ is a local folder, so this is read as a path; {HUB_ID_HINT}"
    if hub_offline():
        if _in_hub_cache(path):
            return None
        return f"HF_HUB_OFFLINE is set and the local hub cache has no such model; {HUB_ID_HINT}"
    return None


def hub_offline() -> bool:
    """Whether the hub may not be asked: ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set
    to a true value, as huggingface_hub reads them (from the environment, at each call, so
    that a process that sets them late is read right)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local hub cache holds the model ``repo_id`` (its ``config.json``)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ValueError, OSError):  # not a valid repo id (HFValidationError is a ValueError)
        return False


def check_model_path(path: str | os.PathLike) -> None:
    """The check a command makes on its ``--model`` before any work: a PEFT adapter folder's
    base model is checked in its place, anything else as :func:`check_checkpoint_folder`.

    Raises:
        QponderError: As :func:`check_checkpoint_folder`, or an adapter names no base model.
    """
    path = str(path)
    check_checkpoint_folder(adapter_base(path) or path)
