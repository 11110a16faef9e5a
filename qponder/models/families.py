"""Tiny, randomly initialised models of every supported VLM family, built offline.

Each family's tiny model uses that family's real model class, processor class, image
processor and chat template, and a tokenizer of the family's kind (Qwen's byte-level BPE,
Gemma's BPE with byte fallback, SmolLM's byte-level BPE) trained here on qponder's text
with the family's special tokens. The checkpoint is a standard ``save_pretrained`` folder,
so every qponder command (and ``from_pretrained``) loads it through the same code path as
the released model; only the sizes and the vocabulary differ.

Chat templates come from TRL's ``trl/chat_templates`` (the exact templates of the released
checkpoints, which TRL uses to recognise models), except LLaVA-OneVision's (the template
of the ``llava-hf`` releases, as transformers' processor tests use it) and InternVL's
(ChatML with the ``<IMG_CONTEXT>`` placeholder of the ``OpenGVLab/InternVL3-*-hf``
releases, without their default system prompt).

What differs between families, and is handled where it matters:

- ``qwen3_5`` opens ``<think>`` in the generation prompt itself: generated text starts
  inside the reasoning (:func:`qponder.answer_format.opened_by_template`).
- ``gemma3`` starts its template with ``<bos>``: prompts are tokenized without adding
  special tokens again.
- ``llava_onevision``'s template renders an assistant turn as ``assistant \\n...`` but its
  generation prompt is ``assistant\\n``; TRL cuts the completion at the common prefix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qponder.answer_format import TAG_TOKENS
from qponder.errors import QponderError

logger = logging.getLogger(__name__)

# The output format's tags are added whole (qponder.answer_format.TAG_TOKENS says why);
# not as special tokens: decoding keeps them.


def mrope_section(head_dim: int) -> list[int]:
    """Split ``head_dim / 2`` rotary frequencies over (time, height, width) as Qwen does
    (16/24/24 of 64 for the 7B model).

    Example:
        >>> mrope_section(16)
        [2, 3, 3]
    """
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


# Qwen2.5-VL's special tokens, in Qwen's order.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_QWEN_VISION_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] }}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Sizes:
    """The tiny model's sizes (the language model's, then the vision encoder's)."""

    hidden_size: int = 64
    intermediate_size: int | None = None
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int | None = None
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_heads: int = 2
    min_pixels: int = 56 * 56  # Qwen2.5-VL's image processor bounds (other families: fixed)
    max_pixels: int = 112 * 112

    @property
    def mlp(self) -> int:
        return self.intermediate_size or 2 * self.hidden_size

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or max(1, self.num_heads // 2)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# builds ``(model, processor)`` from a tokenizer corpus, a seed, the sizes and a vocabulary size
Builder = Callable[[list[str], int, Sizes, int], tuple[Any, Any]]


def trl_template(name: str) -> str:
    """A chat template shipped inside TRL (``trl/chat_templates/NAME.jinja``)."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    return path.read_text(encoding="utf-8")


def _train(
    tokenizer: Any,
    corpus: list[str],
    vocab_size: int,
    specials: list[str],
    split_digits: bool = False,
) -> Any:
    """Train ``tokenizer``'s model type on ``corpus``; the specials come first, then the
    output format's tags as whole (non-special) tokens.

    ``split_digits`` keeps every digit a token of its own, as the released Gemma
    (SentencePiece ``split_digits``) and SmolLM (a ``Digits`` pre-tokenizer) tokenizers do;
    without it, BPE learns merges such as ``"3."`` and the answer's first digit is no
    longer a token (the read-out then refuses, see :mod:`qponder.models.readout`).
    """
    from tokenizers import pre_tokenizers

    if split_digits:
        backend = tokenizer.backend_tokenizer
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer]
        )

    tok = tokenizer.train_new_from_iterator(
        corpus, vocab_size=vocab_size, new_special_tokens=specials
    )
    tok.add_tokens(list(TAG_TOKENS))
    return tok


def _with_named_tokens(tok: Any, named: dict[str, str]) -> Any:
    """The tokenizer with model-specific named special tokens (``tok.boi_token`` and the
    like, which some processors read), set through a save and reload so that they are
    stored in ``tokenizer_config.json`` as a released checkpoint stores them."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        return type(tok).from_pretrained(tmp, extra_special_tokens=named)


def _qwen_tokenizer(
    corpus: list[str], vocab_size: int, extra: tuple[str, ...], cls_name: str = "Qwen2Tokenizer"
) -> Any:
    import transformers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra]
    tok = _train(getattr(transformers, cls_name)(), corpus, vocab_size, specials)
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok


def _finish(model: Any, tok: Any, eos: str, pad: str) -> Any:
    ids = tok.convert_tokens_to_ids
    model.generation_config.eos_token_id = ids(eos)
    model.generation_config.pad_token_id = ids(pad)
    model.generation_config.bos_token_id = tok.bos_token_id
    return model


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _qwen_text(tok: Any, s: Sizes, **extra: Any) -> dict[str, Any]:
    ids = tok.convert_tokens_to_ids
    return {
        "vocab_size": len(tok),
        "hidden_size": s.hidden_size,
        "intermediate_size": s.mlp,
        "num_hidden_layers": s.num_layers,
        "num_attention_heads": s.num_heads,
        "num_key_value_heads": s.kv_heads,
        "head_dim": s.head_dim,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section(s.head_dim),
            "mrope_interleaved": True,
        },
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
        **extra,
    }


def _qwen_vl_processor(tok: Any, template: str, patch: int, pixels: tuple[int, int]) -> Any:
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qponder.models.processors import image_only_processor_class

    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels[0], "longest_edge": pixels[1]},
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return image_only_processor_class(Qwen3VLProcessor)(
        image_processor=image_processor, tokenizer=tok, chat_template=template
    )


def _qwen_vision_ids(tok: Any) -> dict[str, int]:
    ids = tok.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _text_config(tok: Any, s: Sizes, eos: str | list[str], pad: str, **extra: Any) -> dict:
    """The language model's config of a tiny model (LLaMA, Qwen2 and Gemma-style keys)."""
    ids = tok.convert_tokens_to_ids
    return {
        "vocab_size": len(tok),
        "hidden_size": s.hidden_size,
        "intermediate_size": s.mlp,
        "num_hidden_layers": s.num_layers,
        "num_attention_heads": s.num_heads,
        "num_key_value_heads": s.kv_heads,
        "max_position_embeddings": 4096,
        "eos_token_id": ids(eos) if isinstance(eos, str) else [ids(t) for t in eos],
        "pad_token_id": ids(pad),
        **extra,
    }


def _vit_config(s: Sizes, image_size: int, patch: int, **extra: Any) -> dict:
    """The vision encoder's config of a tiny model (SigLIP and InternViT-style keys)."""
    return {
        "hidden_size": s.vision_hidden_size,
        "intermediate_size": 2 * s.vision_hidden_size,
        "num_hidden_layers": s.vision_depth,
        "num_attention_heads": s.vision_heads,
        "image_size": image_size,
        "patch_size": patch,
        **extra,
    }


def _qwen3_vision(s: Sizes) -> dict[str, Any]:
    return {
        "depth": s.vision_depth,
        "hidden_size": s.vision_hidden_size,
        "intermediate_size": 2 * s.vision_hidden_size,
        "num_heads": s.vision_heads,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": s.hidden_size,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }


# 64x64 to 128x128 pixels: 4 to 16 visual tokens of 32x32 pixels (Qwen3-VL, Qwen3.5)
_QWEN3_PIXELS = (64 * 64, 128 * 128)


def _build_qwen3_vl(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = _qwen_tokenizer(corpus, vocab, _QWEN_VISION_TOKENS)
    processor = _qwen_vl_processor(tok, trl_template("qwen3_vl"), 16, _QWEN3_PIXELS)
    config = Qwen3VLConfig(
        text_config=_qwen_text(tok, s),
        vision_config=_qwen3_vision(s),
        tie_word_embeddings=False,
        **_qwen_vision_ids(tok),
    )
    _seeded(seed)
    model = Qwen3VLForConditionalGeneration(config)
    return _finish(model, tok, "<|im_end|>", "<|endoftext|>"), processor


def _build_qwen3_5(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    tok = _qwen_tokenizer(corpus, vocab, _QWEN_VISION_TOKENS, "Qwen3_5Tokenizer")
    processor = _qwen_vl_processor(tok, trl_template("qwen3_5_think"), 16, _QWEN3_PIXELS)
    text = _qwen_text(
        tok,
        s,
        # Qwen3.5's hybrid stack: linear attention (Gated DeltaNet) then full attention
        layer_types=["linear_attention", "full_attention"] * max(1, s.num_layers // 2),
        num_hidden_layers=2 * max(1, s.num_layers // 2),
        linear_num_key_heads=s.kv_heads,
        linear_num_value_heads=s.num_heads,
        linear_key_head_dim=s.head_dim,
        linear_value_head_dim=s.head_dim,
        linear_conv_kernel_dim=4,
        full_attention_interval=2,
    )
    text["rope_parameters"]["partial_rotary_factor"] = 1.0
    config = Qwen3_5Config(
        text_config=text,
        vision_config=_qwen3_vision(s),
        tie_word_embeddings=False,
        **_qwen_vision_ids(tok),
    )
    _seeded(seed)
    model = Qwen3_5ForConditionalGeneration(config)
    return _finish(model, tok, "<|im_end|>", "<|endoftext|>"), processor


def _build_gemma3(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        GemmaTokenizer,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    boi, eoi, soft = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]

    tok = _train(GemmaTokenizer(), corpus, vocab, [*specials, boi, eoi, soft], split_digits=True)
    tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token = "<bos>", "<eos>", "<pad>", "<unk>"
    tok = _with_named_tokens(tok, {"boi_token": boi, "eoi_token": eoi, "image_token": soft})
    image_size, patch, tokens_per_image = 96, 16, 9  # 6x6 patches pooled to 3x3 tokens
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=trl_template("gemma3"),
        image_seq_length=tokens_per_image,
    )
    ids = tok.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=_text_config(
            tok,
            s,
            ["<eos>", "<end_of_turn>"],
            "<pad>",
            head_dim=s.head_dim,
            sliding_window=512,
            bos_token_id=ids("<bos>"),
        ),
        vision_config=_vit_config(s, image_size, patch, vision_use_head=False),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids(boi),
        eoi_token_index=ids(eoi),
        image_token_index=ids(soft),
    )
    _seeded(seed)
    model = Gemma3ForConditionalGeneration(config)
    model = _finish(model, tok, "<end_of_turn>", "<pad>")
    model.generation_config.eos_token_id = [ids("<eos>"), ids("<end_of_turn>")]
    return model, processor


def _build_smolvlm(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import (
        GPT2Tokenizer,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMProcessor,
    )
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from qponder.models.processors import image_only_processor_class

    grid = [f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)]
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<end_of_utterance>",
        "<fake_token_around_image>",
        "<image>",
        "<global-img>",
        *grid,
    ]
    tok = _train(GPT2Tokenizer(), corpus, vocab, specials, split_digits=True)
    tok.bos_token, tok.eos_token, tok.pad_token = (
        "<|im_start|>",
        "<end_of_utterance>",
        "<|endoftext|>",
    )
    image_size, patch, scale = 64, 16, 2  # 4x4 patches shuffled to 2x2 = 4 tokens per tile
    image_processor = SmolVLMImageProcessorPil(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = image_only_processor_class(SmolVLMProcessor)(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=trl_template("smolvlm"),
        image_seq_len=(image_size // patch) ** 2 // scale**2,
    )
    ids = tok.convert_tokens_to_ids
    config = SmolVLMConfig(
        text_config=_text_config(
            tok,
            s,
            "<end_of_utterance>",
            "<|endoftext|>",
            model_type="llama",
            bos_token_id=ids("<|im_start|>"),
        ),
        vision_config=_vit_config(s, image_size, patch),
        scale_factor=scale,
        image_token_id=ids("<image>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    _seeded(seed)
    model = SmolVLMForConditionalGeneration(config)
    return _finish(model, tok, "<end_of_utterance>", "<|endoftext|>"), processor


def _build_llava_onevision(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    from qponder.models.processors import image_only_processor_class

    tok = _qwen_tokenizer(corpus, vocab, ("<image>", "<video>"))
    image_size, patch = 32, 8  # 4x4 patches per tile
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = image_only_processor_class(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=LLAVA_ONEVISION_TEMPLATE,
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    ids = tok.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        text_config=_text_config(tok, s, "<|im_end|>", "<|endoftext|>", model_type="qwen2"),
        vision_config=_vit_config(
            s, image_size, patch, model_type="siglip_vision_model", vision_use_head=False
        ),
        image_token_id=ids("<image>"),
        video_token_id=ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=False,
    )
    _seeded(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    return _finish(model, tok, "<|im_end|>", "<|endoftext|>"), processor


def _build_internvl(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from qponder.models.processors import image_only_processor_class

    start, end, ctx = "<img>", "</img>", "<IMG_CONTEXT>"
    tok = _qwen_tokenizer(corpus, vocab, (start, end, ctx, "<video>"))
    tok = _with_named_tokens(
        tok,
        {
            "start_image_token": start,
            "end_image_token": end,
            "context_image_token": ctx,
            "video_token": "<video>",
        },
    )
    image_size, patch = 64, 16  # 4x4 patches, pixel-shuffled (ratio 0.5) to 2x2 tokens per tile
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=4,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = image_only_processor_class(InternVLProcessor)(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=INTERNVL_TEMPLATE,
        image_seq_length=(image_size // patch) ** 2 // 4,
    )
    ids = tok.convert_tokens_to_ids
    config = InternVLConfig(
        text_config=_text_config(tok, s, "<|im_end|>", "<|endoftext|>", model_type="qwen2"),
        vision_config=_vit_config(s, image_size, patch),
        image_token_id=ids(ctx),
        image_seq_length=(image_size // patch) ** 2 // 4,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    _seeded(seed)
    model = InternVLForConditionalGeneration(config)
    return _finish(model, tok, "<|im_end|>", "<|endoftext|>"), processor


def train_tokenizer(corpus: list[str], vocab_size: int = 1024):
    """Train Qwen's byte-level BPE on ``corpus`` with Qwen2.5-VL's special tokens.

    Args:
        corpus: Training texts.
        vocab_size: Target vocabulary size (bytes + merges + special tokens); the result
            is smaller when the corpus has fewer distinct merges.

    Returns:
        A ``Qwen2Tokenizer`` with eos ``<|im_end|>``, pad ``<|endoftext|>``, and the output
        format's tags as whole tokens.
    """
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer().train_new_from_iterator(
        corpus, vocab_size=vocab_size, new_special_tokens=list(SPECIAL_TOKENS)
    )
    tok.add_tokens(list(TAG_TOKENS))
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok


def qwen2_5_vl_chat_template() -> str:
    """Qwen2.5-VL's chat template, as shipped inside TRL (``trl/chat_templates``)."""
    return trl_template("qwen2_5_vl")


def _build_qwen2_5_vl(corpus: list[str], seed: int, s: Sizes, vocab: int) -> tuple[Any, Any]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qponder.models.processors import image_only_processor_class

    tok = train_tokenizer(corpus, vocab)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=s.min_pixels,
        max_pixels=s.max_pixels,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    processor = image_only_processor_class(Qwen2_5_VLProcessor)(
        image_processor=image_processor, tokenizer=tok, chat_template=qwen2_5_vl_chat_template()
    )
    ids = tok.convert_tokens_to_ids
    text = {
        "vocab_size": len(tok),
        "hidden_size": s.hidden_size,
        "intermediate_size": s.mlp,
        "num_hidden_layers": s.num_layers,
        "num_attention_heads": s.num_heads,
        "num_key_value_heads": s.kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section(s.head_dim),
        },
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    vision = {
        "depth": s.vision_depth,
        "hidden_size": s.vision_hidden_size,
        "intermediate_size": 2 * s.vision_hidden_size,
        "num_heads": s.vision_heads,
        "out_hidden_size": s.hidden_size,
        "fullatt_block_indexes": [s.vision_depth - 1],
    }
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_vision_ids(tok))
    _seeded(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model, processor


# name (the transformers model type, as ``qponder model tiny --family`` takes it) -> builder;
# released checkpoints and template sources of each: docs/models.md
FAMILIES: dict[str, Builder] = {
    "qwen2_5_vl": _build_qwen2_5_vl,
    "qwen3_vl": _build_qwen3_vl,
    "qwen3_5": _build_qwen3_5,
    "gemma3": _build_gemma3,
    "smolvlm": _build_smolvlm,
    "llava_onevision": _build_llava_onevision,
    "internvl": _build_internvl,
}

FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def family_of(name: str) -> Builder:
    """The builder of the family called ``name``.

    Raises:
        QponderError: Naming the known families when ``name`` is not one.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise QponderError(
            f"--family: unknown family {name!r}; choose one of {', '.join(FAMILY_NAMES)}"
        ) from None


def build_family_model(
    name: str,
    out_dir: str | os.PathLike,
    corpus: list[str],
    seed: int,
    sizes: Sizes,
    vocab_size: int,
) -> Path:
    """Build, save and return a tiny model of family ``name``.

    Raises:
        QponderError: ``name`` is not a known family.
    """
    build = family_of(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build(corpus, seed, sizes, vocab_size)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info(
        "tiny %s: %d parameters, vocabulary %d",
        name,
        model.num_parameters(),
        len(processor.tokenizer),
    )
    return out
