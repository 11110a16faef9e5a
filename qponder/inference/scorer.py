"""The scoring engine: images in, parsed scores, reasoning and expected scores out.

Greedy decoding by default (one answer per image, reproducible). With ``samples=k`` the
engine draws k sampled answers per image; the image's ``score`` is then the mean of the
samples that parsed, ``score_std`` their (population) standard deviation, and every sample
is kept. Parsing is :func:`qponder.parsing.parse_completion`, the one training uses: an
answer without a valid score is a parse failure (``score: None`` and the reason), never a
made-up number.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qponder.config import BACKENDS, EvalConfig, ModelConfig
from qponder.errors import BadImageError, QponderError
from qponder.inference.backends import Generation, HFBackend, OpenAIBackend, VLLMBackend
from qponder.parsing import BAD_IMAGE, NO_COMPLETION, NO_LOGPROBS, parse_completion
from qponder.prompts import STUDENT_INSTRUCTION

logger = logging.getLogger(__name__)

# The failures of one generation call that may belong to one of its images (a processor or
# tokenizer that refuses an input, memory for one very large image): the batch is then
# scored image by image. Others (a broken backend, a bug) are raised at once.
ISOLATED_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, IndexError)
GENERATION_FAILED = "generation_failed"  # bad_image reason: the image alone failed the model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


T = TypeVar("T")


@dataclass
class ScoreResult:
    """The scoring of one image.

    Attributes:
        score: Parsed score in [1, 5] (the mean over parsed samples when ``samples > 1``),
            or None.
        expected_score: Probability-weighted score over the digit tokens at the answer
            position (mean over samples), or None when unavailable.
        reasoning: The ``<think>`` text (of the first parsed sample when sampling).
        text: The raw completion.
        error: None when there is a score; else a parse failure reason (``no_answer``,
            ``no_number``, ``out_of_range``), ``bad_image:<reason>`` or ``request_failed: ...``.
        samples: With ``samples > 1``: ``{score, expected_score, reasoning, text, error}``
            per sampled answer; empty for greedy scoring.
        score_mean: Mean of the parsed scores (equal to ``score``).
        score_std: Population std of the parsed sampled scores; None for greedy scoring or
            fewer than two parsed samples.
        expected_score_reason: Why ``expected_score`` is None (``no_logprobs``,
            ``no_answer_position``, ``not_a_digit``, ``digits_split``, ``non_finite``,
            ``no_completion``),
            never silently; None when there is an expected score.
    """

    score: float | None
    expected_score: float | None = None
    reasoning: str = ""
    text: str = ""
    error: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    score_mean: float | None = None
    score_std: float | None = None
    expected_score_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, in the documented field order."""
        return {
            "score": self.score,
            "expected_score": self.expected_score,
            "reasoning": self.reasoning,
            "text": self.text,
            "error": self.error,
            "samples": self.samples,
            "score_mean": self.score_mean,
            "score_std": self.score_std,
            "expected_score_reason": self.expected_score_reason,
        }

    @classmethod
    def failed(cls, error: str) -> ScoreResult:
        """A result with no completion at all (bad image, failed request)."""
        return cls(score=None, error=error, expected_score_reason=NO_COMPLETION)


def _one(gen: Generation) -> dict[str, Any]:
    if gen.error:
        return {
            "score": None,
            "expected_score": None,
            "reasoning": "",
            "text": gen.text,
            "error": gen.error,
            "expected_score_reason": NO_COMPLETION,
        }
    p = parse_completion(gen.text)
    return {
        "score": p.score,
        "expected_score": gen.expected_score,
        "reasoning": p.reasoning,
        "text": gen.text,
        "error": p.error,
        "expected_score_reason": None if gen.expected_score is not None else (
            gen.expected_score_reason or NO_LOGPROBS),
    }  # fmt: skip


def result_from_generations(gens: Sequence[Generation], sampled: bool) -> ScoreResult:
    """Combine an image's completions into a :class:`ScoreResult`.

    Args:
        gens: One greedy completion, or k sampled ones.
        sampled: Whether these are sampled answers (then mean/std and samples are filled).

    Example:
        >>> r = result_from_generations([Generation("<think>ok</think><answer>3</answer>"),
        ...                              Generation("<think>ok</think><answer>4</answer>"),
        ...                              Generation("no idea")], sampled=True)
        >>> r.score, r.score_std is not None, [s["error"] for s in r.samples]
        (3.5, True, [None, None, 'no_answer'])
    """
    parts = [_one(g) for g in gens]
    if not sampled:
        p = parts[0]
        return ScoreResult(
            score=p["score"],
            expected_score=p["expected_score"],
            reasoning=p["reasoning"],
            text=p["text"],
            error=p["error"],
            score_mean=p["score"],
            expected_score_reason=p["expected_score_reason"],
        )
    scores = [p["score"] for p in parts if p["score"] is not None]
    expected = [p["expected_score"] for p in parts if p["expected_score"] is not None]
    first = next((p for p in parts if p["score"] is not None), parts[0])
    mean = statistics.fmean(scores) if scores else None
    error = None if scores else Counter(p["error"] for p in parts).most_common(1)[0][0]
    return ScoreResult(
        score=mean,
        expected_score=statistics.fmean(expected) if expected else None,
        reasoning=first["reasoning"],
        text=first["text"],
        error=error,
        samples=parts,
        score_mean=mean,
        score_std=statistics.pstdev(scores) if len(scores) >= 2 else None,
        expected_score_reason=None if expected else parts[0]["expected_score_reason"],
    )


class Scorer:
    """Score images with a quality-reasoning model through one of three backends.

    Args:
        model: For ``hf``: a checkpoint path or hub name, or a loaded model (then pass
            ``processor``). For ``vllm``: a checkpoint path. For ``openai``: the served model
            name.
        backend: ``"hf"`` (transformers), ``"vllm"`` (optional GPU extra) or ``"openai"``
            (a remote OpenAI-compatible endpoint).
        processor: The processor of an already loaded ``hf`` model.
        model_config: Loading options and the image resize policy (processor min/max pixels,
            shared with training).
        batch_size: Images per generation call.
        max_new_tokens: Completion length limit.
        samples: 1 for greedy scoring; k > 1 for k sampled answers (mean and std).
        temperature: Sampling temperature when ``samples > 1``.
        seed: Seed of the sampling.
        instruction: The student instruction (the training prompt by default).
        base_url: Endpoint of the ``openai`` backend.
        backend_impl: A ready backend object (anything with ``generate(images, n,
            temperature)``); overrides ``backend``.

    Example:
        >>> scorer = Scorer("runs/grpo/final", batch_size=8)  # doctest: +SKIP
        >>> scorer.score([image])[0].score  # doctest: +SKIP
        3.47
    """

    def __init__(
        self,
        model: Any,
        backend: str = "hf",
        *,
        processor: Any = None,
        model_config: ModelConfig | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 512,
        samples: int = 1,
        temperature: float = 1.0,
        seed: int = 0,
        instruction: str = STUDENT_INSTRUCTION,
        base_url: str | None = None,
        backend_impl: Any = None,
    ) -> None:
        if backend not in BACKENDS:
            raise QponderError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if batch_size < 1 or samples < 1:
            raise QponderError("batch_size and samples must be >= 1")
        if samples > 1 and temperature <= 0:
            raise QponderError("samples > 1 needs a temperature > 0")
        self.backend_name = backend
        self.batch_size = batch_size
        self.samples = samples
        self.temperature = temperature
        self.model_config = model_config or ModelConfig()
        self.backend = backend_impl or self._make_backend(
            model, backend, processor, max_new_tokens, seed, instruction, base_url
        )

    def _make_backend(self, model, backend, processor, max_new_tokens, seed, instruction, base_url):
        cfg = self.model_config
        if backend == "openai":
            return OpenAIBackend(
                str(model), base_url, max_new_tokens=max_new_tokens, instruction=instruction,
                max_pixels=cfg.max_pixels, seed=seed,
            )  # fmt: skip
        if backend == "vllm":
            return VLLMBackend(
                str(model), cfg, max_new_tokens=max_new_tokens, instruction=instruction, seed=seed
            )
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from qponder.models import load_model

            model, processor = load_model(model, cfg)
        elif processor is None:
            raise QponderError("a loaded model needs its processor: Scorer(model, processor=...)")
        else:
            from qponder.models import apply_pixel_limits

            apply_pixel_limits(processor, cfg.min_pixels, cfg.max_pixels)
        model.eval()
        return HFBackend(
            model, processor, max_new_tokens=max_new_tokens, instruction=instruction, seed=seed
        )

    @classmethod
    def from_config(
        cls,
        model: Any,
        cfg: EvalConfig,
        model_config: ModelConfig | None = None,
        base_url: str | None = None,
        instruction: str = STUDENT_INSTRUCTION,
    ) -> Scorer:
        """Build a scorer from the recipe's ``eval`` and ``model`` sections."""
        return cls(
            model,
            backend=cfg.backend,
            model_config=model_config,
            batch_size=cfg.batch_size,
            max_new_tokens=cfg.max_new_tokens,
            samples=cfg.samples,
            temperature=cfg.temperature,
            seed=cfg.seed,
            instruction=instruction,
            base_url=base_url or cfg.base_url,
        )

    def score_batch(self, images: list[Any], samples: int | None = None) -> list[ScoreResult]:
        """Score one batch of RGB images with a single generation call.

        Args:
            images: The batch (any size: it is not split).
            samples: Answers per image for this batch (default: the scorer's ``samples``);
                the server lets each request choose it.

        Returns:
            One result per image, in order.

        Raises:
            QponderError: ``samples`` below 1, or above 1 with a temperature of 0.
        """
        samples = self.samples if samples is None else samples
        if samples < 1 or (samples > 1 and self.temperature <= 0):
            raise QponderError(f"samples={samples} needs samples >= 1 (and > 1 a temperature > 0)")
        check = getattr(self.backend, "image_problem", None)
        problems = [check(im) if check else None for im in images]
        good = [im for im, p in zip(images, problems, strict=True) if p is None]
        results = iter(self._generate_isolated(good, samples))
        return [ScoreResult.failed(f"{BAD_IMAGE}:{p}") if p else next(results) for p in problems]

    def _generate_isolated(self, images: list[Any], samples: int) -> list[ScoreResult]:
        """Results for ``images`` from one generation call; when that call fails, from one
        call per image, so that an image the model cannot take (an input its processor or
        tokenizer refuses) gets its error row and the others their scores. A failure of
        every image alone is not the images': it is raised."""
        if not images:
            return []
        try:
            gens = self.backend.generate(images, n=samples, temperature=self.temperature)
        except ISOLATED_ERRORS as exc:
            if len(images) == 1:
                raise
            logger.warning("a batch of %d failed (%s); scoring its images one by one",
                           len(images), _first_line(exc))  # fmt: skip
            alone = [self._generate_alone(im, samples) for im in images]
            if all(r is None for r in alone):
                raise
            return [ScoreResult.failed(f"{BAD_IMAGE}:{GENERATION_FAILED}") if r is None else r
                    for r in alone]  # fmt: skip
        return [result_from_generations(g, sampled=samples > 1) for g in gens]

    def _generate_alone(self, image: Any, samples: int) -> ScoreResult | None:
        try:
            (gens,) = self.backend.generate([image], n=samples, temperature=self.temperature)
        except ISOLATED_ERRORS as exc:
            logger.warning("an image failed on its own: %s", _first_line(exc))
            return None
        return result_from_generations(gens, sampled=samples > 1)

    def score(self, images: Sequence[Any]) -> list[ScoreResult]:
        """Score RGB images, ``batch_size`` at a time."""
        out: list[ScoreResult] = []
        for i in range(0, len(images), self.batch_size):
            out += self.score_batch(list(images[i : i + self.batch_size]))
        return out

    def score_items(
        self,
        items: Sequence[T],
        image_path: Callable[[T], str],
        load: Callable[[str], Any] | None = None,
    ) -> Iterator[list[tuple[T, ScoreResult]]]:
        """Score items that name image files, yielding one list of results per batch.

        Images are loaded with :func:`qponder.data.load_image` in a background thread, one
        batch ahead of generation. A file that cannot be loaded gives a result with
        ``error = "bad_image:<reason>"`` and does not stop the others.

        Args:
            items: Anything (paths, dataset samples).
            image_path: Gives the image file of an item.
            load: Image loader (default :func:`qponder.data.load_image`).

        Yields:
            ``[(item, result), ...]`` for each batch, in order.
        """
        if load is None:
            from qponder.data import load_image as load
        batches = [
            list(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)
        ]

        def load_batch(batch: list[T]) -> list[Any]:
            out = []
            for item in batch:
                try:
                    out.append(load(image_path(item)))
                except BadImageError as exc:
                    out.append(exc)
            return out

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future | None = pool.submit(load_batch, batches[0]) if batches else None
            for k, batch in enumerate(batches):
                loaded = pending.result()
                pending = pool.submit(load_batch, batches[k + 1]) if k + 1 < len(batches) else None
                good = [im for im in loaded if not isinstance(im, BadImageError)]
                results = iter(self.score_batch(good))
                yield [
                    (
                        item,
                        ScoreResult.failed(f"bad_image:{im.reason}")
                        if isinstance(im, BadImageError)
                        else next(results),
                    )
                    for item, im in zip(batch, loaded, strict=True)
                ]
