"""Rendering the student prompt with a model's chat template, and turning rendered prompts
and images into model inputs."""

from __future__ import annotations

from typing import Any

from qponder.prompts import student_messages


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
