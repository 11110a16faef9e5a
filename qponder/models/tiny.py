"""A tiny, randomly initialised VLM built offline, for the demo and the tests.

The checkpoint is a standard folder of its family (config, safetensors weights, tokenizer,
chat template, image processor; Qwen2.5-VL by default, every family of
:mod:`qponder.models.families` on request), so ``from_pretrained`` and every qponder
command load it and generate with it through exactly the code path of a 7B model: the
processor's chat template, ``pixel_values`` and ``model.generate``. Only the sizes and the
tokenizer differ: the tokenizer, of the family's kind, is trained here on this module's
corpus (qponder's prompts and quality reasoning), with a vocabulary of about a thousand
tokens so that reasoning is short in tokens. Digits stay single tokens, as in the released
tokenizers, so the expected-score read-out of :mod:`qponder.models.readout` works.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

from qponder.answer_format import render

logger = logging.getLogger(__name__)

__all__ = ["build_tiny_model", "default_corpus", "generic_iqa_sentences"]

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
    corpus += [render(s, s[-4:]) for s in generic_iqa_sentences(200, seed)]
    corpus += generic_iqa_sentences(400, seed + 1)
    return corpus


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
    family: str = "qwen2_5_vl",
) -> Path:
    """Build and save a randomly initialised tiny VLM (Qwen2.5-VL by default), offline.

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
        family: The model family (:data:`qponder.models.families.FAMILY_NAMES`); other
            families than qwen2_5_vl use their own image sizes (``min_pixels`` and
            ``max_pixels`` apply to Qwen2.5-VL only).

    Returns:
        The output folder.
    """
    from qponder.models.families import Sizes, build_family_model

    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise ValueError("hidden_size / num_heads must be an integer multiple of 4")
    sizes = Sizes(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        vision_depth=vision_depth,
        vision_hidden_size=vision_hidden_size,
        vision_heads=vision_heads,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )
    corpus = corpus if corpus is not None else default_corpus(seed=seed)
    return build_family_model(family, out_dir, corpus, seed, sizes, vocab_size)
