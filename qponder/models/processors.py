"""Loading a model's processor, and the processor settings qponder owns.

Without torchvision, transformers cannot build the video processor of Qwen2-VL-family
processors, and ``AutoProcessor.from_pretrained`` then silently returns the tokenizer
alone. :func:`load_processor` detects that and builds the model's own processor class
from its image processor, tokenizer and chat template only (images work; videos do not):
:func:`image_only_processor_class`. A processor saved that way still names the standard
class and carries a ``video_processor`` entry (:func:`video_processor_entry`), so stock
loaders read it. :func:`apply_pixel_limits` sets the image size budget of the processors
that resize to one.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from functools import cache
from pathlib import Path
from typing import Any

from qponder.config import ModelConfig
from qponder.errors import QponderError
from qponder.models.checkpoint import adapter_base, has_processor_files

logger = logging.getLogger(__name__)


@cache
def image_only_processor_class(cls: type) -> type:
    """A subclass of the processor class ``cls`` whose sub-processors are the image
    processor and tokenizer only.

    ``ProcessorMixin`` derives a processor's parts from its ``__init__`` signature, so a
    signature without ``video_processor`` makes the parent's ``__init__`` ignore the
    missing video processor. The subclass keeps the parent's name, so a saved
    ``processor_config.json`` names the standard class and loads anywhere.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = cls.to_dict(self)
        for name in _own_settings(cls):  # the parent's settings (image_seq_len, ...)
            if hasattr(self, name) and name not in out:
                out[name] = getattr(self, name)
        entry = video_processor_entry(out.get("image_processor"), _video_processor_type(cls))
        if entry is not None:
            out.setdefault("video_processor", entry)
        return out

    namespace = {"__init__": __init__, "to_dict": to_dict, "__module__": cls.__module__}
    if cls.__name__ in _TEMPLATE_NEEDS_VIDEO_PROCESSOR:
        # its apply_chat_template reads the video processor's frame defaults even for
        # image-only conversations; without a video processor, the generic one is used
        from transformers.processing_utils import ProcessorMixin

        namespace["apply_chat_template"] = ProcessorMixin.apply_chat_template
    return type(cls.__name__, (cls,), namespace)


# processors whose apply_chat_template needs the video processor for image-only chats
_TEMPLATE_NEEDS_VIDEO_PROCESSOR = frozenset({"SmolVLMProcessor"})


_SUB_PROCESSORS = frozenset(
    {"self", "image_processor", "tokenizer", "video_processor", "chat_template", "kwargs"}
)


def _own_settings(cls: type) -> list[str]:
    """The names of a processor class's own ``__init__`` settings (not its parts)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name not in _SUB_PROCESSORS and p.kind == p.POSITIONAL_OR_KEYWORD
    ]


def _video_processor_type(cls: type) -> str | None:
    """The video processor class named after the processor class ``cls`` (InternVL,
    SmolVLM, LLaVA-OneVision, Qwen3-VL), when transformers has one; None otherwise (then
    the image processor's name gives it, as for Qwen2.5-VL's ``Qwen2VLVideoProcessor``)."""
    import transformers

    name = cls.__name__.removesuffix("Processor") + "VideoProcessor"
    return name if name in dir(transformers) else None


def video_processor_entry(
    image_processor: dict[str, Any] | None, video_type: str | None = None
) -> dict[str, Any] | None:
    """The ``video_processor`` entry of ``processor_config.json`` for a Qwen-VL-style
    processor saved without its video processor (no torchvision here).

    transformers 5 looks for a video processor's settings in ``processor_config.json``
    (``video_processor``), then ``video_preprocessor_config.json``, then falls back to the
    image processor's ``preprocessor_config.json``, which is what an official Qwen2.5-VL
    release carries. A checkpoint saved by transformers 5 nests the image processor in
    ``processor_config.json`` and has no such fallback file, so stock loaders
    (``AutoProcessor``, ``transformers serve``, vLLM) stop with "Can't load video
    processor". The entry is therefore the image processor's settings under the matching
    video processor type, the same settings the fallback would read.

    Args:
        image_processor: The image processor's saved settings.
        video_type: The video processor class paired with the processor; by default the
            image processor's name with ``VideoProcessor`` in place of ``ImageProcessor``.

    Returns:
        The entry, or None when the image processor has no ``...ImageProcessor`` type.
    """
    if not image_processor:
        return None
    kind = str(image_processor.get("image_processor_type", ""))
    if not kind.endswith(("ImageProcessor", "ImageProcessorFast", "ImageProcessorPil")):
        return None
    base = kind.removesuffix("Fast").removesuffix("Pil").removesuffix("ImageProcessor")
    entry = {k: v for k, v in image_processor.items() if k != "image_processor_type"}
    entry["video_processor_type"] = video_type or f"{base}VideoProcessor"
    return entry


def _build_image_only_processor(path: str, config_path: str, trust_remote_code: bool):
    """Build the model's processor class (named by the model config at ``config_path``) from
    the image processor, tokenizer and template at ``path``."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(
        config_path, trust_remote_code=trust_remote_code
    ).model_type
    cls_name = PROCESSOR_MAPPING_NAMES.get(model_type)
    if not cls_name or not hasattr(transformers, cls_name):
        return None
    image_processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    parent = getattr(transformers, cls_name)
    return image_only_processor_class(parent)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        **_saved_processor_kwargs(path, parent),
    )


def _saved_processor_kwargs(path: str, cls: type) -> dict[str, Any]:
    """The settings of processor class ``cls`` saved in ``processor_config.json``
    (LLaVA-OneVision's ``num_image_tokens``, SmolVLM's ``image_seq_len``, ...)."""
    from transformers.utils import cached_file

    f = cached_file(path, "processor_config.json", _raise_exceptions_for_missing_entries=False)
    if f is None:
        return {}
    saved = json.loads(Path(f).read_text(encoding="utf-8"))
    return {k: saved[k] for k in _own_settings(cls) if k in saved}


def _has_image_processor(path: str) -> bool:
    from transformers.utils import cached_file

    for name in ("preprocessor_config.json", "processor_config.json"):
        f = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if f is None:
            continue
        if name == "preprocessor_config.json" or "image_processor" in json.loads(
            Path(f).read_text()
        ):
            return True
    return False


def takes_pixel_limits(image_processor: Any) -> bool:
    """Whether an image processor resizes to a pixel budget (Qwen-VL style: ``size`` holds
    ``shortest_edge``/``longest_edge`` as pixel counts), so that ``model.min_pixels`` and
    ``model.max_pixels`` mean something to it. Gemma 3 (a fixed size), SmolVLM (a longest
    side), LLaVA-OneVision and InternVL (tiles of a fixed size) do not."""
    size = getattr(image_processor, "size", None)
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if size is None or get("height") or get("width"):
        return False
    return bool(get("shortest_edge") and get("longest_edge"))


def apply_pixel_limits(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set the resize bounds of a Qwen-style image processor (pixels per image).

    Processors that resize otherwise (see :func:`takes_pixel_limits`) are left as they are,
    with a warning naming them: their own settings in the checkpoint decide the image size.

    Args:
        processor: A processor with an ``image_processor``; a tokenizer is left alone.
        min_pixels: Lower bound on height*width after resizing, or None to keep it.
        max_pixels: Upper bound on height*width after resizing, or None to keep it.
    """
    ip = getattr(processor, "image_processor", None)
    if ip is None or (min_pixels is None and max_pixels is None):
        return
    if not takes_pixel_limits(ip):
        _warn_pixel_limits_ignored(type(ip).__name__)
        return
    size = dict(getattr(ip, "size", None) or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
        if hasattr(ip, "min_pixels"):
            ip.min_pixels = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
        if hasattr(ip, "max_pixels"):
            ip.max_pixels = int(max_pixels)
    ip.size = size


@cache
def _warn_pixel_limits_ignored(name: str) -> None:
    logger.warning(
        "model.min_pixels / model.max_pixels: %s does not resize to a pixel budget; "
        "ignored (its own size settings apply)",
        name,
    )


def load_processor(path: str | os.PathLike, config: ModelConfig | None = None) -> Any:
    """Load the processor (image processor + tokenizer + chat template) of a model.

    Args:
        path: A checkpoint folder, hub name, or PEFT adapter folder (its own processor
            files are used when present, else those of its base model).
        config: Pixel bounds and ``trust_remote_code`` come from here.

    Returns:
        A transformers processor; for a text-only model, its tokenizer.
    """
    from transformers import AutoProcessor

    cfg = config or ModelConfig()
    path = str(path)
    base = adapter_base(path)
    config_path = base or path  # an adapter folder has no model config
    if base is not None and not has_processor_files(path):
        path = base
    processor = None
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (ImportError, AttributeError, ValueError, OSError, TypeError) as exc:
        # e.g. a video processor that needs torchvision; the fallback below handles images
        logger.debug("AutoProcessor failed for %s: %s", path, exc)
    if getattr(processor, "image_processor", None) is None and _has_image_processor(path):
        fallback = _build_image_only_processor(path, config_path, cfg.trust_remote_code)
        if fallback is not None:
            processor = fallback
    if processor is None:
        raise QponderError(f"{path}: no processor or tokenizer could be loaded")
    apply_pixel_limits(processor, cfg.min_pixels, cfg.max_pixels)
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


# --------------------------------------------------------------------------- image limits

# image processor -> {(image size, its size settings): why it refuses, or None}
_REFUSALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
ASPECT_RATIO = "aspect_ratio"  # Qwen-style processors refuse sides more than 200x apart
PROCESSOR_REFUSED = "processor_refused"  # any other refusal of the image processor


def image_problem(processor: Any, size: tuple[int, int]) -> str | None:
    """Why the model's own image processor refuses an image of ``size`` (width, height), as
    a ``bad_image`` reason (:data:`ASPECT_RATIO`, :data:`PROCESSOR_REFUSED`); None when it
    takes it.

    Decided by the processor itself, on a blank image of that size (its limits depend on
    the size alone), once per size and settings: a panorama or a scanned strip gets its
    error row before it joins a batch, instead of failing every image batched with it.
    A processor that fails for another reason than the image (a ``TypeError``, say) is not
    taken as a refusal: the batch then fails, and the scorer isolates the image there.

    Example:
        >>> image_problem(object(), (4000, 10)) is None  # no image processor: nothing to ask
        True
    """
    ip = getattr(processor, "image_processor", None)
    if ip is None:
        return None
    try:
        cache = _REFUSALS.setdefault(ip, {})
    except TypeError:  # not weak-referenceable: ask every time
        cache = {}
    key = (tuple(size), repr(getattr(ip, "size", None)))
    if key not in cache:
        cache[key] = _refusal(ip, key[0])
    return cache[key]


def _refusal(image_processor: Any, size: tuple[int, int]) -> str | None:
    from PIL import Image

    try:
        image_processor(images=[Image.new("RGB", size)], return_tensors="np")
    except ValueError as exc:
        reason = ASPECT_RATIO if "aspect ratio" in str(exc).lower() else PROCESSOR_REFUSED
        logger.warning("the image processor refuses %dx%d images: %s", *size, str(exc)[:200])
        return reason
    except Exception as exc:  # noqa: BLE001 - not the image's fault: leave it to the batch
        logger.debug("image processor check of %s failed: %s", size, exc)
    return None
