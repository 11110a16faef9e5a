"""What a model folder is: a PEFT adapter (and its base model), a checkpoint, or neither.

:mod:`qponder.models.processors` and :mod:`qponder.models.loading` both ask; the answers
live here so that neither imports the other for them.
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
    """Refuse a local folder that is not a checkpoint before transformers tries it.

    Raises:
        QponderError: The folder has no ``config.json`` (empty, or not a model), or a
            local path does not exist.
    """
    folder = Path(path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise QponderError(
            f"{path}: not a model checkpoint (no config.json); give a folder written by "
            "save_pretrained (e.g. RUN/final) or a hub name"
        )
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") > 1  # not "org/name"
    if looks_local and not folder.exists():
        raise QponderError(f"{path}: no such model folder")
