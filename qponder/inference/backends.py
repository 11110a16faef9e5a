"""Generation backends behind :class:`qponder.inference.Scorer`: transformers, vLLM, and a
remote OpenAI-compatible endpoint.

Each backend turns a batch of RGB images into ``n`` completions per image, each with the
expected score read at the answer position when the backend can see the logits:

- ``hf``: ``model.generate`` on left-padded batches; the logits of the digit tokens are
  recorded at every step by a logits processor (five numbers per step, not the vocabulary),
  before any sampling warper touches them.
- ``vllm``: ``vllm.LLM`` (optional GPU extra); the read-out uses the top log-probabilities
  vLLM returns for each generated token.
- ``openai``: chat completions with ``logprobs``/``top_logprobs`` against e.g. ``vllm serve``
  of a trained checkpoint; images travel as lossless PNG data URLs.

Decoding is fully specified here rather than inherited from a checkpoint's
``generation_config``: greedy when one answer is asked for (reproducible scores), else
plain temperature sampling (no top-k/top-p), and never a repetition penalty.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qponder.answer_format import answer_piece_index, answer_token_index, opened_by_template
from qponder.endpoints import (
    chat_messages,
    choice_logprobs,
    choice_text,
    encode_png,
    error_text,
    openai_client,
    reply_choices,
)
from qponder.errors import MissingDependencyError, QponderError
from qponder.models import generation_prompt, prompt_inputs
from qponder.parsing import (
    DIGITS,
    DIGITS_SPLIT,
    NO_ANSWER_POSITION,
    NO_LOGPROBS,
    NOT_A_DIGIT,
    REQUEST_FAILED,
    expected_from_logprobs,
)
from qponder.prompts import STUDENT_INSTRUCTION

logger = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # OpenAI's maximum; enough to hold every plausible digit


@dataclass(frozen=True)
class Generation:
    """One completion.

    Attributes:
        text: The generated text (special tokens removed).
        expected_score: Read-out at the answer position, or None (no tag, no digit token,
            or a backend without logits).
        error: A failure that produced no text (e.g. ``request_failed: ...``); None on
            success. Parse failures are not errors here: they are found by parsing ``text``.
        expected_score_reason: Why ``expected_score`` is None (``no_logprobs``,
            ``no_answer_position``, ``not_a_digit``, ``digits_split``; see
            :mod:`qponder.parsing`); None when there is one.
    """

    text: str
    expected_score: float | None = None
    error: str | None = None
    expected_score_reason: str | None = None


def _digit_ids(tokenizer: Any) -> list[int] | None:
    from qponder.models.readout import score_token_ids

    try:
        return score_token_ids(tokenizer)
    except ValueError as exc:
        logger.warning("no expected-score read-out: %s", exc)
        return None


# --------------------------------------------------------------------------- transformers


class _DigitLogitsRecorder:
    """A logits processor that keeps the logits of "1".."5" at every generation step."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores[:, self.ids].float())  # stays on the device: no sync per step
        return scores


class HFBackend:
    """Batched ``generate`` with a transformers model.

    Args:
        model: A loaded chat VLM (see :func:`qponder.models.load_model`).
        processor: Its processor; its tokenizer is switched to left padding.
        max_new_tokens: Completion length limit.
        instruction: The student instruction (the training prompt).
        seed: Seed of sampled answers; call ``i`` samples with seed ``seed + i``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        max_new_tokens: int = 512,
        instruction: str = STUDENT_INSTRUCTION,
        seed: int = 0,
    ) -> None:
        if getattr(processor, "image_processor", None) is None:
            raise QponderError(
                "the model's processor has no image processor: not a vision-language model"
            )
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues every row at the end
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self._calls = 0
        self.prompt = generation_prompt(processor, instruction)
        self.opened = opened_by_template(self.prompt)  # e.g. Qwen3.5 opens <think> itself
        self.digit_ids = _digit_ids(self.tokenizer)
        self._stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> set[int]:
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos = self.tokenizer.eos_token_id if eos is None else eos
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        if self.tokenizer.pad_token_id is not None:
            ids.add(self.tokenizer.pad_token_id)
        return {i for i in ids if i is not None}

    def _decoding(self, n: int, temperature: float) -> dict[str, Any]:
        if n == 1:
            # greedy; top_k=50 is transformers' neutral default (no warning about unused flags)
            return {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
        return {
            "do_sample": True,
            "temperature": temperature,
            "top_p": 1.0,
            "top_k": 0,
            "num_return_sequences": n,
        }

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _completion_ids(self, row: list[int]) -> list[int]:
        for i, t in enumerate(row):
            if t in self._stop_ids:
                return row[:i]
        return row

    def generate(
        self, images: list[Any], n: int = 1, temperature: float = 1.0
    ) -> list[list[Generation]]:
        """Generate ``n`` completions for each image (greedy when ``n == 1``)."""
        import torch
        from transformers import LogitsProcessorList

        inputs = prompt_inputs(self.processor, [self.prompt] * len(images), images).to(
            self.model.device
        )
        recorder = _DigitLogitsRecorder(self.digit_ids) if self.digit_ids else None
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        # sampling draws from a forked RNG seeded per call: reproducible, and the caller's
        # RNG (a training run's, for validation) is left as it was
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed + self._calls)
            seqs = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                repetition_penalty=1.0,
                logits_processor=LogitsProcessorList([recorder] if recorder else []),
                **self._decoding(n, temperature),
            )
        self._calls += 1
        new = seqs[:, inputs["input_ids"].shape[1] :].tolist()
        digits = torch.stack(recorder.steps, dim=1).cpu() if recorder and recorder.steps else None
        flat = [
            self._generation(self._completion_ids(row), digits[r] if digits is not None else None)
            for r, row in enumerate(new)
        ]
        return [flat[i * n : (i + 1) * n] for i in range(len(images))]

    def _generation(self, ids: list[int], digit_logits: Any) -> Generation:
        from qponder.models.readout import expected_scores

        text = self.opened + self._decode(ids)
        if digit_logits is None:
            return Generation(text=text, expected_score_reason=DIGITS_SPLIT)
        j = answer_token_index(ids, self._decode)
        if j is None:
            return Generation(text=text, expected_score_reason=NO_ANSWER_POSITION)
        if ids[j] not in self.digit_ids:
            return Generation(text=text, expected_score_reason=NOT_A_DIGIT)
        expected = expected_scores(digit_logits[j], list(range(len(self.digit_ids))))[0]
        return Generation(text=text, expected_score=expected)


# --------------------------------------------------------------------------- vLLM


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            "the vllm backend needs vLLM, which is not installed: pip install 'qponder[vllm]' "
            "(CUDA GPUs only); or use --backend hf"
        ) from exc
    return vllm


class VLLMBackend:
    """Offline batched generation with ``vllm.LLM``.

    Args:
        model_path: Checkpoint folder or hub name.
        model_config: Pixel bounds (passed to vLLM's multimodal processor), dtype and
            ``trust_remote_code``.
        max_new_tokens: Completion length limit.
        instruction: The student instruction.
        seed: Sampling seed.
        llm: An already built ``vllm.LLM`` (tests, or reuse across calls).
    """

    def __init__(
        self,
        model_path: str,
        model_config: Any = None,
        max_new_tokens: int = 512,
        instruction: str = STUDENT_INSTRUCTION,
        seed: int = 0,
        llm: Any = None,
    ) -> None:
        self.vllm = _require_vllm()
        from qponder.config import ModelConfig
        from qponder.models import load_processor

        cfg = model_config or ModelConfig()
        if llm is None:
            mm = {
                k: getattr(cfg, k)
                for k in ("min_pixels", "max_pixels")
                if getattr(cfg, k) is not None
            }
            llm = self.vllm.LLM(
                model=model_path,
                dtype=cfg.dtype,
                trust_remote_code=cfg.trust_remote_code,
                limit_mm_per_prompt={"image": 1},
                mm_processor_kwargs=mm or None,
                seed=seed,
            )
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.prompt = generation_prompt(load_processor(model_path, cfg), instruction)
        self.opened = opened_by_template(self.prompt)
        self.digit_ids = _digit_ids(self.tokenizer)
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self, images: list[Any], n: int = 1, temperature: float = 1.0
    ) -> list[list[Generation]]:
        """Generate ``n`` completions for each image (greedy when ``n == 1``)."""
        params = self.vllm.SamplingParams(
            n=n,
            temperature=0.0 if n == 1 else temperature,
            top_p=1.0,
            max_tokens=self.max_new_tokens,
            logprobs=TOP_LOGPROBS if self.digit_ids else None,
            seed=self.seed,
        )
        prompts = [{"prompt": self.prompt, "multi_modal_data": {"image": im}} for im in images]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[self._generation(c) for c in out.outputs] for out in outputs]

    def _generation(self, completion: Any) -> Generation:
        ids = list(completion.token_ids)
        text = self.opened + completion.text
        if not self.digit_ids:
            return Generation(text=text, expected_score_reason=DIGITS_SPLIT)
        if not completion.logprobs:
            return Generation(text=text, expected_score_reason=NO_LOGPROBS)
        j = answer_token_index(ids, self._decode)
        if j is None:
            return Generation(text=text, expected_score_reason=NO_ANSWER_POSITION)
        if ids[j] not in self.digit_ids:
            return Generation(text=text, expected_score_reason=NOT_A_DIGIT)
        top = completion.logprobs[j]  # token id -> Logprob(logprob, rank, decoded_token)
        by_digit = {str(k + 1): top[i].logprob for k, i in enumerate(self.digit_ids) if i in top}
        return Generation(text=text, expected_score=expected_from_logprobs(by_digit))


# --------------------------------------------------------------------------- OpenAI-compatible


class OpenAIBackend:
    """Chat completions against an OpenAI-compatible endpoint (e.g. ``vllm serve CKPT``).

    Args:
        model: The served model name.
        base_url: The endpoint, e.g. ``http://host:8000/v1``.
        max_new_tokens: Completion length limit (``max_tokens``).
        instruction: The student instruction.
        api_key_env: Environment variable holding the key (``EMPTY`` when unset, which
            local servers accept).
        max_pixels: Images larger than this are shrunk before sending (the server's
            processor resizes them anyway); None sends them at full size.
        concurrency: Requests in flight.
        timeout: Seconds per request.
        max_retries: Retries of the SDK on connection errors, 429 and 5xx.
        seed: Passed to the server for sampled answers.
        client: An ``openai.OpenAI`` client to use instead (tests, custom transports).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        max_new_tokens: int = 512,
        instruction: str = STUDENT_INSTRUCTION,
        api_key_env: str = "OPENAI_API_KEY",
        max_pixels: int | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        seed: int = 0,
        client: Any = None,
    ) -> None:
        if client is None:
            if not base_url:
                raise QponderError(
                    "the openai backend needs --base-url, e.g. http://localhost:8000/v1"
                )
            client = openai_client(
                base_url,
                api_key_env=api_key_env,
                timeout=timeout,
                max_retries=max_retries,
                what="--backend openai",
            )
        self.client = client
        self.model = model
        self.instruction = instruction
        self.max_new_tokens = max_new_tokens
        self.max_pixels = max_pixels
        self.concurrency = concurrency
        self.seed = seed

    def generate(
        self, images: list[Any], n: int = 1, temperature: float = 1.0
    ) -> list[list[Generation]]:
        """Generate ``n`` completions for each image, one request per image, concurrently."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(images)))) as pool:
            return list(pool.map(lambda im: self._one(im, n, temperature), images))

    def _one(self, image: Any, n: int, temperature: float) -> list[Generation]:
        """``n`` completions for one image. A server that ignores ``n`` (answers with one
        choice) is asked again, with another seed, until there are ``n`` (at most ``n``
        requests)."""
        import openai

        messages = chat_messages(self.instruction, encode_png(image, self.max_pixels))
        gens: list[Generation] = []
        for _ in range(n):
            missing = n - len(gens)
            try:
                resp = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=self.max_new_tokens,
                    temperature=0.0 if n == 1 else temperature,
                    top_p=1.0,
                    n=missing,
                    seed=self.seed + len(gens),  # a repeated request must not repeat samples
                    logprobs=True,
                    top_logprobs=TOP_LOGPROBS,
                )
            except openai.OpenAIError as exc:
                failed = f"{REQUEST_FAILED}: {type(exc).__name__}: {error_text(exc)}"
                return gens + [Generation(text="", error=failed)] * missing
            got = [self._generation(c) for c in reply_choices(resp)[:missing]]
            if not got:
                failed = f"{REQUEST_FAILED}: the server answered with no choices"
                return gens + [Generation(text="", error=failed)] * missing
            gens += got
            if len(gens) == n:
                break
        return gens

    @staticmethod
    def _generation(choice: Any) -> Generation:
        text = choice_text(choice) or ""
        tokens = choice_logprobs(choice)
        if not tokens:
            return Generation(text=text, expected_score_reason=NO_LOGPROBS)
        j = answer_piece_index([t.token for t in tokens])
        if j is None:
            return Generation(text=text, expected_score_reason=NO_ANSWER_POSITION)
        if tokens[j].token.strip() not in DIGITS:
            return Generation(text=text, expected_score_reason=NOT_A_DIGIT)
        cands = {t.token: t.logprob for t in (tokens[j].top_logprobs or [])}
        cands.setdefault(tokens[j].token, tokens[j].logprob)
        return Generation(text=text, expected_score=expected_from_logprobs(cands))
