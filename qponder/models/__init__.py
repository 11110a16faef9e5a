"""Loading chat VLMs and their processors through transformers' Auto classes.

Any chat vision-language model whose processor has a chat template works (Qwen2.5-VL,
Qwen3-VL, ...); a text-only causal LM loads too (for the consistency judge), with its
tokenizer as the processor. A folder with ``adapter_config.json`` is a PEFT LoRA adapter:
its base model is loaded and the adapter applied (merged for inference).

Without torchvision, transformers cannot build the video processor of Qwen2-VL-family
processors, and ``AutoProcessor.from_pretrained`` then silently returns the tokenizer
alone. :func:`load_processor` detects that and builds the model's own processor class
from its image processor, tokenizer and chat template only (images work; videos do not).
The tiny offline model lives in :mod:`qponder.models.tiny`.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

from qponder.config import ModelConfig
from qponder.errors import QponderError
from qponder.prompts import student_messages

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def resolve_dtype(dtype: str = "auto"):
    """Return the torch dtype for a config value.

    Args:
        dtype: ``"auto"`` (bfloat16 on a bf16-capable GPU, float32 otherwise), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.

    Returns:
        A ``torch.dtype``.
    """
    import torch

    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise QponderError(f"model.dtype: {dtype!r} is not auto|float32|bfloat16|float16") from None


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


def _has_processor_files(path: str) -> bool:
    return Path(path).is_dir() and any((Path(path) / f).is_file() for f in _PROCESSOR_FILES)


# --------------------------------------------------------------------------- processor


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


def load_processor(path: str | os.PathLike, config: ModelConfig | None = None):
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
    if base is not None and not _has_processor_files(path):
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


def generation_prompt(processor: Any, instruction: str, with_image: bool = True) -> str:
    """The student prompt as the model's chat template renders it, up to and including the
    generation prompt (the text the model continues). What the template writes there
    beyond the turn header, Qwen3.5's ``<think>``, :func:`qponder.answer_format.opened_by_template`
    reads back."""
    return processor.apply_chat_template(
        student_messages(instruction, with_image=with_image),
        tokenize=False,
        add_generation_prompt=True,
    )


def prompt_inputs(processor: Any, texts: list[str], images: list[Any]) -> Any:
    """Model inputs (``BatchFeature``, PyTorch tensors, padded) for prompts the chat
    template rendered, one image each.

    Images are nested one list per prompt, the form every processor takes (Gemma 3 and
    SmolVLM refuse a flat list); special tokens are not added again when the rendered
    prompts already start with the BOS token (Gemma 3's template writes it, and a second
    one shifts the model off its training distribution).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = tokenizer.bos_token
    add_special = not (bos and all(t.startswith(bos) for t in texts))
    return processor(
        text=texts,
        images=[[image] for image in images],
        padding=True,
        return_tensors="pt",
        add_special_tokens=add_special,
    )


# --------------------------------------------------------------------------- model


def _auto_model_class(path: str, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if type(config) in AutoModelForImageTextToText._model_mapping:
        return AutoModelForImageTextToText
    auto_map = getattr(config, "auto_map", None) or {}
    if "AutoModelForImageTextToText" in auto_map:
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


def _default_device_map(for_training: bool) -> Any:
    import torch

    if for_training or not torch.cuda.is_available():
        return None  # the Trainer / accelerate places training models
    return {"": int(os.environ.get("LOCAL_RANK", 0))}


def load_model(
    path: str | os.PathLike,
    config: ModelConfig | None = None,
    *,
    for_training: bool = False,
) -> tuple[Any, Any]:
    """Load a chat VLM (or text LM) and its processor.

    Args:
        path: A checkpoint folder, hub name, or PEFT adapter folder (base + adapter).
        config: dtype, device map, attention implementation, pixel bounds; defaults when None.
        for_training: Keep the model in train mode and an adapter trainable (not merged),
            and leave device placement to the trainer (``config.device_map`` is ignored).
            For inference the model is put in eval mode, an adapter is merged, and with no
            device map a GPU process uses its local GPU.

    Returns:
        ``(model, processor)``; the processor is the tokenizer for a text-only model.

    Raises:
        QponderError: When the path is not a model, or an adapter has no base model.
    """
    cfg = config or ModelConfig()
    path = str(path)
    base = adapter_base(path)
    model_path = base or path
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(cfg.dtype),
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    device_map = None if for_training else (cfg.device_map or _default_device_map(for_training))
    if device_map is not None:
        kwargs["device_map"] = device_map
    _check_checkpoint_folder(model_path)
    try:
        auto_cls = _auto_model_class(model_path, cfg.trust_remote_code)
        model = auto_cls.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise QponderError(f"{model_path}: cannot load a model ({_first_line(exc)})") from exc
    except Exception as exc:  # safetensors' own error type, for a torn weight file
        if "safetensor" not in type(exc).__module__.lower():
            raise
        raise QponderError(
            f"{model_path}: a weight file is damaged or cut short, as a killed save leaves "
            f"it ({_first_line(exc)}); use a complete checkpoint"
        ) from exc
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, is_trainable=for_training)
        if not for_training:
            model = model.merge_and_unload()
    processor = load_processor(path, cfg)
    _sync_generation_tokens(model, processor)
    model.train(for_training)
    return model, processor


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_checkpoint_folder(path: str) -> None:
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


def _sync_generation_tokens(model: Any, processor: Any) -> None:
    """Give the generation config a pad token (the tokenizer's) when it has none."""
    gen = getattr(model, "generation_config", None)
    tokenizer = getattr(processor, "tokenizer", processor)
    if gen is not None and gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id


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


__all__ = [
    "adapter_base",
    "apply_pixel_limits",
    "freeze_vision_tower",
    "generation_prompt",
    "image_only_processor_class",
    "load_model",
    "load_processor",
    "prompt_inputs",
    "resolve_dtype",
    "vision_parameters",
]
