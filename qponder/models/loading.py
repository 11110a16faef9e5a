"""Loading chat VLMs through transformers' Auto classes.

Any chat vision-language model whose processor has a chat template works (Qwen2.5-VL,
Qwen3-VL, ...); a text-only causal LM loads too (for the consistency judge), with its
tokenizer as the processor. A folder with ``adapter_config.json`` is a PEFT LoRA adapter:
its base model is loaded and the adapter applied (merged for inference). The processor
comes from :func:`qponder.models.processors.load_processor`; the tiny offline model lives
in :mod:`qponder.models.tiny`.
"""

from __future__ import annotations

import os
from typing import Any

from qponder.config import ModelConfig
from qponder.errors import QponderError
from qponder.models.checkpoint import adapter_base, check_checkpoint_folder
from qponder.models.processors import load_processor


def resolve_dtype(dtype: str = "auto") -> Any:
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
    check_checkpoint_folder(model_path)
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


def _sync_generation_tokens(model: Any, processor: Any) -> None:
    """Give the generation config a pad token (the tokenizer's) when it has none."""
    gen = getattr(model, "generation_config", None)
    tokenizer = getattr(processor, "tokenizer", processor)
    if gen is not None and gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
