"""The one transformers generation engine: chat prompts with images in, completions (and the
logits of chosen tokens) out.

Every part of qponder that runs a local model on prompts goes through here: the ``hf``
scoring backend (:class:`qponder.inference.HFBackend`), the ``hf`` teacher
(:class:`qponder.distill.hf_teacher.HFTeacher`) and the consistency judge
(:class:`qponder.models.judge.HFJudge`). It owns

- rendering a conversation to the text the model continues (:func:`render_prompt`,
  :func:`generation_prompt` for the student's prompt),
- turning rendered prompts and images into model inputs (:func:`prompt_inputs`), padded on
  the left *per call*: the tokenizer shared with training, validation and the caller is
  never changed,
- batched ``generate`` with ``n`` completions per prompt and the decoding settings the
  caller passes (nothing is inherited from a checkpoint's defaults unless the caller asks),
  seeded through a forked RNG when a seed is given (:meth:`HFEngine.generate`),
- where a completion ends (:func:`stop_token_ids`; finish reason ``stop`` or ``length``,
  ids cut at the first stop id),
- the logits of given read-out tokens at every generation step
  (:class:`TokenLogitsRecorder`), whatever those tokens are ("1".."5" for a score, "A"/"B"
  for a preference): reading them is :mod:`qponder.models.readout`'s,
- one forward pass giving the next-token logits of texts (:meth:`HFEngine.next_token_logits`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from qponder.prompts import student_messages

LENGTH = "length"  # the completion ran into max_new_tokens
STOP = "stop"  # the completion ended with a stop token (which is not part of it)


# --------------------------------------------------------------------------- prompts


def template_messages(
    prompt: str, *, system: str | None = None, with_image: bool = True
) -> list[dict[str, Any]]:
    """A conversation in transformers' chat format: an optional system turn, then one user
    turn with an image placeholder (the image itself goes to :func:`prompt_inputs`) and
    ``prompt``.

    Example:
        >>> template_messages("Rate it.", system="You judge images.")[1]["content"]
        [{'type': 'image'}, {'type': 'text', 'text': 'Rate it.'}]
    """
    messages = student_messages(prompt, with_image=with_image)
    if system is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    return messages


def render_prompt(processor: Any, messages: list[dict[str, Any]]) -> str:
    """``messages`` as the model's chat template renders them, up to and including the
    generation prompt (the text the model continues)."""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generation_prompt(processor: Any, instruction: str, with_image: bool = True) -> str:
    """The student prompt as the model's chat template renders it, up to and including the
    generation prompt (the text the model continues). What the template writes there
    beyond the turn header, Qwen3.5's ``<think>``, :func:`qponder.answer_format.opened_by_template`
    reads back."""
    return render_prompt(processor, student_messages(instruction, with_image=with_image))


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def prompt_inputs(processor: Any, texts: list[str], images: list[Any]) -> Any:
    """Model inputs (``BatchFeature``, PyTorch tensors, padded on the left) for prompts the
    chat template rendered, one image each.

    Images are nested one list per prompt, the form every processor takes (Gemma 3 and
    SmolVLM refuse a flat list); special tokens are not added again when the rendered
    prompts already start with the BOS token (Gemma 3's template writes it, and a second
    one shifts the model off its training distribution). The padding side is a call
    argument, which every family's processor hands to its tokenizer: batched generation
    continues every row at its end, and the tokenizer itself is left as it was.
    """
    bos = _tokenizer(processor).bos_token
    add_special = not (bos and all(t.startswith(bos) for t in texts))
    return processor(
        text=texts,
        images=[[image] for image in images],
        padding=True,
        padding_side="left",
        return_tensors="pt",
        add_special_tokens=add_special,
    )


# --------------------------------------------------------------------------- stopping


def stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end a completion: the generation config's end-of-sequence ids (the
    tokenizer's when it has none) and the pad id (what ``generate`` writes after a row that
    ended)."""
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None) if eos is None else eos
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
    ids.add(getattr(tokenizer, "pad_token_id", None))
    return frozenset(i for i in ids if i is not None)


def cut_at_stop(row: Sequence[int], stop_ids: frozenset[int]) -> tuple[list[int], str]:
    """The completion in a row of generated ids, up to its first stop id, and why it ended.

    Example:
        >>> cut_at_stop([5, 6, 2, 0, 0], frozenset({0, 2}))
        ([5, 6], 'stop')
        >>> cut_at_stop([5, 6, 7], frozenset({0, 2}))
        ([5, 6, 7], 'length')
    """
    for i, t in enumerate(row):
        if t in stop_ids:
            return list(row[:i]), STOP
    return list(row), LENGTH


# --------------------------------------------------------------------------- read-out tokens


class TokenLogitsRecorder:
    """A logits processor that keeps the logits of the given token ids at every generation
    step (a few numbers per step, not the vocabulary), and changes nothing.

    Args:
        ids: The token ids to record, in the order their logits are kept.
    """

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores[:, self.ids].float())  # stays on the device: no sync per step
        return scores

    def logits(self) -> Any:
        """``[rows, steps, len(ids)]`` on the CPU, or None when nothing was generated."""
        import torch

        return torch.stack(self.steps, dim=1).cpu() if self.steps else None


@dataclass(frozen=True)
class Completion:
    """One generated completion.

    Attributes:
        ids: The generated token ids, cut before the first stop id.
        text: ``ids`` decoded, special tokens removed (what the template opened itself is
            not in it: see :func:`qponder.answer_format.opened_by_template`).
        finish_reason: ``"stop"`` (a stop token ended it) or ``"length"``.
        logits: ``[steps, len(read_ids)]`` logits of the read-out tokens at every step of
            the batch (steps past the end of this completion included), or None when none
            were asked for.
    """

    ids: list[int]
    text: str
    finish_reason: str
    logits: Any = None


# --------------------------------------------------------------------------- engine


class HFEngine:
    """Generation and next-token logits with a transformers model, for every caller alike.

    The engine never changes the processor or its tokenizer (they are shared with training
    and validation): padding goes left through a call argument.

    Args:
        model: A loaded causal (vision-)language model.
        processor: Its processor, or its tokenizer for a text-only model.
    """

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = _tokenizer(processor)

    @cached_property
    def stop_ids(self) -> frozenset[int]:
        """See :func:`stop_token_ids`."""
        return stop_token_ids(self.model, self.tokenizer)

    @property
    def device(self) -> Any:
        """Where inputs go: the model's device (its first parameter's when it names none)."""
        device = getattr(self.model, "device", None)
        return device if device is not None else next(self.model.parameters()).device

    def render(self, messages: list[dict[str, Any]]) -> str:
        """See :func:`render_prompt`."""
        return render_prompt(self.processor, messages)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens removed."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self,
        texts: Sequence[str],
        images: Sequence[Any],
        *,
        max_new_tokens: int,
        options: Mapping[str, Any],
        n: int = 1,
        seed: int | None = None,
        read_ids: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """Generate ``n`` completions for each rendered prompt and its image, in one batch.

        Args:
            texts: Rendered prompts (:func:`render_prompt`), one per image.
            images: One image per prompt.
            max_new_tokens: Completion length limit.
            options: Decoding settings passed to ``generate`` as they are (``do_sample``,
                ``temperature``, ...); ``num_return_sequences`` is added when ``n > 1``.
            n: Completions per prompt.
            seed: Seeds a forked RNG for this call, so sampling is reproducible and the
                caller's RNG (a training run's) is left as it was; None draws from the
                caller's RNG.
            read_ids: Token ids whose logits are recorded at every step (the read-out).

        Returns:
            For each prompt, its ``n`` completions.
        """
        import torch
        from transformers import LogitsProcessorList

        inputs = prompt_inputs(self.processor, list(texts), list(images)).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, **options}
        if n > 1:
            kwargs["num_return_sequences"] = n
        recorder = TokenLogitsRecorder(read_ids) if read_ids else None
        if recorder is not None:
            kwargs["logits_processor"] = LogitsProcessorList([recorder])
        with self._rng(seed), torch.inference_mode():
            seqs = self.model.generate(**inputs, **kwargs)
        rows = seqs[:, inputs["input_ids"].shape[1] :].tolist()
        cut = [cut_at_stop(row, self.stop_ids) for row in rows]
        decoded = self.tokenizer.batch_decode([ids for ids, _ in cut], skip_special_tokens=True)
        logits = recorder.logits() if recorder is not None else None
        flat = [
            Completion(ids, text, finish, logits[r] if logits is not None else None)
            for r, ((ids, finish), text) in enumerate(zip(cut, decoded, strict=True))
        ]
        return [flat[i * n : (i + 1) * n] for i in range(len(texts))]

    @contextlib.contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        if seed is None:
            yield
            return
        import torch

        devices = [self.device] if getattr(self.device, "type", None) == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def next_token_logits(self, texts: Sequence[str]) -> Any:
        """The logits of the token after each text, from one forward pass over the texts
        padded on the left (so that each row's last position is its own end).

        Args:
            texts: Already rendered texts; no special tokens are added.

        Returns:
            A ``[len(texts), vocab]`` tensor.
        """
        import torch

        enc = self.tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(self.device)
        with torch.no_grad():
            return self.model(**enc).logits[:, -1, :]
