"""The vision encoder of a VLM: finding its parameters, and freezing them for training
(``model.freeze_vision``) while the projector into the language model stays trainable."""

from __future__ import annotations

from typing import Any

from qponder.errors import QponderError


def vision_parameters(model: Any) -> list[tuple[str, Any]]:
    """Return the (name, parameter) pairs of the vision encoder, projector excluded.

    The encoder is found by name (``visual``, ``vision_tower``, ``vision_model``); the
    projector into the language model (Qwen's ``merger``, LLaVA's ``multi_modal_projector``)
    stays out, so freezing these keeps the projector trainable.
    """
    keys = (".visual.", "visual.", "vision_tower", "vision_model")
    out = []
    for name, p in model.named_parameters():
        if any(k in name for k in keys) and "merger" not in name and "projector" not in name:
            out.append((name, p))
    return out


def freeze_vision_tower(model: Any) -> int:
    """Freeze the vision encoder (not the projector); return the number of frozen tensors.

    Raises:
        QponderError: When the model has no recognisable vision encoder.
    """
    params = vision_parameters(model)
    if not params:
        raise QponderError("model.freeze_vision: this model has no vision encoder to freeze")
    for _, p in params:
        p.requires_grad_(False)
    return len(params)
