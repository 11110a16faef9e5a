"""Generation backends behind :class:`qponder.inference.Scorer`: transformers, vLLM, and a
remote OpenAI-compatible endpoint.

Each backend turns a batch of RGB images into ``n`` completions per image, each with the
expected score read at the answer position when the backend can see the logits:

- ``hf``: the shared transformers engine (:class:`qponder.models.generation.HFEngine`, also
  the ``hf`` teacher's and the judge's): ``model.generate`` on batches padded on the left;
  the logits of the digit tokens are recorded at every step by a logits processor (five
  numbers per step, not the vocabulary), before any sampling warper touches them.
- ``vllm``: ``vllm.LLM`` (optional GPU extra); the read-out uses the top log-probabilities
  vLLM returns for each generated token.
- ``openai``: chat completions with ``logprobs``/``top_logprobs`` against e.g. ``vllm serve``
  of a trained checkpoint; images travel as lossless PNG data URLs.

Decoding is fully specified here rather than inherited from a checkpoint's
``generation_config``: greedy when one answer is asked for (reproducible scores), else
plain temperature sampling (no top-k/top-p), and never a repetition penalty. The ``hf``
and ``vllm`` backends render the student prompt with
:func:`qponder.models.generation_prompt` (an ``openai`` endpoint applies its own template
to the chat of :func:`qponder.endpoints.chat_messages`); all three read the expected score
with :func:`qponder.models.readout.read_out`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qponder.answer_format import opened_by_template
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
from qponder.models import HFEngine, generation_prompt
from qponder.models.processors import image_problem
from qponder.models.readout import read_out, read_out_logits, read_out_pieces, readout_ids
from qponder.parsing import DIGITS, REQUEST_FAILED
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
            ``no_answer_position``, ``not_a_digit``, ``digits_split``, ``non_finite``; see
            :mod:`qponder.parsing`); None when there is one.
    """

    text: str
    expected_score: float | None = None
    error: str | None = None
    expected_score_reason: str | None = None


# --------------------------------------------------------------------------- transformers


def hf_decoding(n: int, temperature: float) -> dict[str, Any]:
    """The ``hf`` backend's decoding settings, all of them explicit (none inherited from the
    checkpoint's generation config): greedy for one answer, else plain temperature sampling;
    never a repetition penalty."""
    if n == 1:
        # greedy; top_k=50 is transformers' neutral default (no warning about unused flags)
        return {
            "do_sample": False,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 50,
            "repetition_penalty": 1.0,
        }
    return {
        "do_sample": True,
        "temperature": temperature,
        "top_p": 1.0,
        "top_k": 0,
        "repetition_penalty": 1.0,
    }


class HFBackend:
    """Batched ``generate`` with a transformers model, through the shared engine.

    Args:
        model: A loaded chat VLM (see :func:`qponder.models.load_model`).
        processor: Its processor (left as it is: padding goes left per call).
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
        self.engine = HFEngine(model, processor)
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self._calls = 0
        self.prompt = generation_prompt(processor, instruction)
        self.opened = opened_by_template(self.prompt)  # e.g. Qwen3.5 opens <think> itself
        self.digit_ids = readout_ids(self.tokenizer)

    def image_problem(self, image: Any) -> str | None:
        """Why the model's processor refuses ``image`` (a ``bad_image`` reason), or None."""
        return image_problem(self.processor, image.size)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self, images: list[Any], n: int = 1, temperature: float = 1.0
    ) -> list[list[Generation]]:
        """Generate ``n`` completions for each image (greedy when ``n == 1``)."""
        out = self.engine.generate(
            [self.prompt] * len(images),
            images,
            max_new_tokens=self.max_new_tokens,
            options=hf_decoding(n, temperature),
            n=n,
            seed=self.seed + self._calls,
            read_ids=self.digit_ids,
        )
        self._calls += 1
        return [[self._generation(c.ids, c.logits, c.text) for c in per] for per in out]

    def _generation(self, ids: list[int], digit_logits: Any, text: str | None = None) -> Generation:
        """The completion ``ids`` (decoded as ``text`` when given) with its read-out from
        ``[steps, 5]`` digit logits (None: the tokenizer splits the digits)."""
        text = self.opened + (self._decode(ids) if text is None else text)
        expected, reason = read_out_logits(ids, self._decode, self.digit_ids, digit_logits)
        return Generation(text=text, expected_score=expected, expected_score_reason=reason)


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
            from qponder.models.checkpoint import check_model_path

            check_model_path(model_path)  # vLLM would try a mistyped folder on the hub
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
        self.processor = load_processor(model_path, cfg)  # vLLM runs the same processor
        self.prompt = generation_prompt(self.processor, instruction)
        self.opened = opened_by_template(self.prompt)
        self.digit_ids = readout_ids(self.tokenizer)
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    def image_problem(self, image: Any) -> str | None:
        """Why the model's processor refuses ``image`` (a ``bad_image`` reason), or None."""
        return image_problem(self.processor, image.size)

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
        digits = self.digit_ids or []
        label_of = dict(zip(digits, DIGITS, strict=True)) if digits else {}
        top = completion.logprobs  # per step: token id -> Logprob(logprob, rank, decoded_token)

        def label_at(j: int) -> str | None:
            return label_of.get(ids[j])

        def scores_at(j: int) -> dict[str, float]:  # a digit outside the top list: p = 0
            return {label_of[i]: top[j][i].logprob for i in digits if i in top[j]}

        expected, reason = read_out(
            ids, self._decode, label_at if digits else None, scores_at if top else None
        )
        return Generation(text=text, expected_score=expected, expected_score_reason=reason)


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

        def top_at(j: int) -> dict[str, float]:
            cands = {t.token: t.logprob for t in (tokens[j].top_logprobs or [])}
            cands.setdefault(tokens[j].token, tokens[j].logprob)
            return cands

        pieces = [t.token for t in tokens] if tokens else None
        expected, reason = read_out_pieces(pieces, top_at)
        return Generation(text=text, expected_score=expected, expected_score_reason=reason)
