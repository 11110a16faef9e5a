"""A tiny, randomly initialised Qwen2.5-VL built offline, for the demo and the tests.

The checkpoint is a standard Qwen2.5-VL folder (config, safetensors weights, tokenizer,
chat template, image processor), so ``from_pretrained`` and every qponder command load it
and generate with it through exactly the code path of a 7B model: the processor's chat
template, ``pixel_values`` and ``model.generate``. Only the sizes and the tokenizer differ:
the tokenizer is Qwen's byte-level BPE trained here on qponder's prompts and quality
reasoning, with a vocabulary of about a thousand tokens so that reasoning is short in
tokens. Digits stay single tokens (Qwen's pre-tokenizer splits numbers into digits), so
the expected-score read-out of :mod:`qponder.models.readout` works.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

logger = logging.getLogger(__name__)

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

# The output format's tags, added whole: Qwen's pre-tokenizer splits "<answer>" into
# "<answer" + ">", and then ">" is followed by a digit in "<answer>3" but by the end of the
# turn in "</answer>"; a model as small as this one confuses the two and ends its answer
# before the score. (Not special tokens: decoding keeps them.)
TAG_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

_IQA_WORDS = (
    "sharp blurry blur focus focused out-of-focus motion shake soft crisp detail details "
    "texture edges fine noise noisy grain grainy speckle clean smooth exposure exposed "
    "underexposed overexposed dark bright dim highlights shadows clipped blown crushed "
    "contrast flat harsh washed faded vivid saturated oversaturated colour colours color "
    "natural cast tint shifted balanced compression jpeg blocking blocky ringing banding "
    "pixelation pixelated aliasing artefacts artifacts halo content subject background "
    "composition scene overall quality excellent good fair poor bad score rating slight "
    "slightly moderate moderately severe severely strong strongly visible barely little "
    "some no none heavy light mild obvious noticeable the a an is are of and with but in "
    "image picture photo photograph viewer viewers perceptual defects defect strengths "
    "therefore so which this that it its looks appears seems clear clearly high low very"
)

_SAMPLE_TEMPLATES = (
    "The image is {a} with {b} noise and {c} exposure.",
    "Sharpness: the subject looks {a}. Noise: {b}. Exposure: {c}.",
    "Colour looks {c} and contrast is {a}; compression artefacts are {b}.",
    "Overall the quality is {a}, so the score is {s}.",
)


def generic_iqa_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Short sentences over a generic image-quality vocabulary (tokenizer training text)."""
    rng = random.Random(seed)
    words = _IQA_WORDS.split()
    out = []
    for _ in range(n):
        a, b, c = (rng.choice(words) for _ in range(3))
        s = f"{rng.uniform(1, 5):.2f}"
        out.append(rng.choice(_SAMPLE_TEMPLATES).format(a=a, b=b, c=c, s=s))
    out.append(_IQA_WORDS)
    return out


def default_corpus(n_completions: int = 2000, seed: int = 0) -> list[str]:
    """The tokenizer's training text: qponder's prompts, synthetic teacher reasoning, IQA words.

    Args:
        n_completions: Number of synthetic-teacher completions to include.
        seed: Seed of the synthetic completions and generic sentences.

    Returns:
        A list of texts.
    """
    from qponder.data.synthetic_reasoning import example_completions
    from qponder.prompts import DEFAULT_PROMPTS

    p = DEFAULT_PROMPTS
    corpus = [p.student_instruction, p.teacher_system, p.teacher_blind, p.teacher_guided] * 20
    corpus += example_completions(n_completions, seed=seed)
    corpus += [
        f"<think>\n{s}\n</think>\n<answer>{s[-4:]}</answer>"
        for s in generic_iqa_sentences(200, seed)
    ]
    corpus += generic_iqa_sentences(400, seed + 1)
    return corpus


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
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()


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


def build_tiny_model(
    out_dir: str | os.PathLike,
    seed: int = 0,
    corpus: list[str] | None = None,
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    vision_depth: int = 2,
    vision_hidden_size: int = 32,
    vision_heads: int = 2,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
) -> Path:
    """Build and save a randomly initialised tiny Qwen2.5-VL, offline.

    Args:
        out_dir: Output folder; receives a standard checkpoint (model, tokenizer, chat
            template, image processor).
        seed: Seed of the weights and of the tokenizer corpus.
        corpus: Tokenizer training texts; :func:`default_corpus` when None.
        vocab_size: Target vocabulary size of the tokenizer.
        hidden_size: Hidden size of the language model.
        intermediate_size: MLP size of the language model (default ``2 * hidden_size``).
        num_layers: Language-model layers.
        num_heads: Attention heads (``hidden_size / num_heads`` must be a multiple of 4).
        num_kv_heads: Key/value heads (grouped-query attention); ``num_heads // 2``
            (at least 1) when None.
        vision_depth: Vision-encoder blocks.
        vision_hidden_size: Vision-encoder width.
        vision_heads: Vision-encoder heads.
        min_pixels: The image processor's lower bound on pixels per image.
        max_pixels: The image processor's upper bound; an image gives about
            ``pixels / 784`` tokens (28x28 pixels per token).

    Returns:
        The output folder.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qponder.models import image_only_processor_class

    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise ValueError("hidden_size / num_heads must be an integer multiple of 4")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus if corpus is not None else default_corpus(seed=seed), vocab_size)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
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
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads or max(1, num_heads // 2),
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section(hidden_size // num_heads),
        },
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden_size,
        "intermediate_size": 2 * vision_hidden_size,
        "num_heads": vision_heads,
        "out_hidden_size": hidden_size,
        "fullatt_block_indexes": [vision_depth - 1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("tiny Qwen2.5-VL: %d parameters, vocabulary %d", model.num_parameters(), len(tok))
    return out
