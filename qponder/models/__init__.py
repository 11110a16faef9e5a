"""Models: the names users import from ``qponder.models``, re-exported from the modules that
do the work: :mod:`.loading`, :mod:`.processors`, :mod:`.checkpoint`, :mod:`.vision`,
:mod:`.generation` (the one generation engine), :mod:`.readout`, :mod:`.judge`,
:mod:`.tiny`, :mod:`.families`, :mod:`.pretext`."""

from qponder.models.checkpoint import ADAPTER_CONFIG, adapter_base
from qponder.models.generation import HFEngine, generation_prompt, prompt_inputs, render_prompt
from qponder.models.loading import load_model, resolve_dtype
from qponder.models.processors import (
    apply_pixel_limits,
    image_only_processor_class,
    load_processor,
    takes_pixel_limits,
    video_processor_entry,
)
from qponder.models.vision import freeze_vision_tower, vision_parameters

__all__ = [
    "ADAPTER_CONFIG",
    "HFEngine",
    "adapter_base",
    "apply_pixel_limits",
    "freeze_vision_tower",
    "generation_prompt",
    "image_only_processor_class",
    "load_model",
    "load_processor",
    "prompt_inputs",
    "render_prompt",
    "resolve_dtype",
    "takes_pixel_limits",
    "video_processor_entry",
    "vision_parameters",
]
