"""Consistency judges: frozen models that read a piece of reasoning alone (no image, no
answer) and state the score it implies.

A judge sees the student instruction of the recipe (the same words the policy was trained
on, prompt overrides included), then an assistant turn made of the reasoning and an open
answer tag (:func:`qponder.answer_format.judge_continuation`); the implied score is the expected score over "1".."5" at the next
position (:func:`qponder.parsing.expected_from_logprobs`). :class:`HFJudge` runs a
transformers model; :class:`OpenAIJudge` asks an OpenAI-compatible endpoint that can
continue a prefilled assistant turn (vLLM's ``continue_final_message``). The reward that
uses them, :class:`qponder.rewards.ConsistencyReward`, only needs ``implied_scores``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qponder.answer_format import after_opened, judge_continuation, opened_by_template
from qponder.endpoints import (
    chat_messages,
    choice_logprobs,
    error_text,
    openai_client,
    reply_choices,
)
from qponder.errors import QponderError
from qponder.models.generation import HFEngine, generation_prompt
from qponder.models.readout import expected_scores, score_token_ids
from qponder.parsing import expected_from_logprobs
from qponder.prompts import STUDENT_INSTRUCTION

logger = logging.getLogger(__name__)


@dataclass
class JudgeStats:
    """Cumulative cost of a judge: calls, texts read and seconds spent."""

    calls: int = 0
    texts: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_text(self) -> float:
        return self.seconds / self.texts if self.texts else float("nan")


class Judge:
    """Reads reasoning alone and states the score it implies (subclasses implement
    :meth:`_implied_scores`).

    Args:
        instruction: The student instruction the judge is shown (the recipe's).
    """

    def __init__(self, instruction: str | None = None) -> None:
        self.instruction = instruction or STUDENT_INSTRUCTION
        self.stats = JudgeStats()

    def implied_scores(self, reasonings: Sequence[str]) -> list[float | None]:
        """Return, for each reasoning text (answer removed), the score it implies on [1, 5],
        or ``None`` where the judge could not say."""
        start = time.perf_counter()
        scores = self._implied_scores(list(reasonings))
        self.stats.calls += 1
        self.stats.texts += len(reasonings)
        self.stats.seconds += time.perf_counter() - start
        return scores

    def _implied_scores(self, reasonings: list[str]) -> list[float | None]:  # pragma: no cover
        raise NotImplementedError

    def check(self) -> None:
        """Read one sentence, so that a judge that cannot work fails before training starts
        (an endpoint without log-probabilities, say) rather than at the first reward step."""
        self.implied_scores(["The image is sharp and clean."])


class HFJudge(Judge):
    """A frozen transformers model as judge, read out in one forward pass per batch.

    Args:
        model: A causal (vision-)language model; kept in eval mode, no gradients.
        processor: Its processor or tokenizer (must carry the chat template).
        instruction: The user text; defaults to the student instruction.
        batch_size: Texts per forward pass.
    """

    def __init__(
        self, model: Any, processor: Any, instruction: str | None = None, batch_size: int = 16
    ) -> None:
        super().__init__(instruction)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.batch_size = batch_size
        self.engine = HFEngine(self.model, processor)
        self.ids = score_token_ids(self.tokenizer)
        self.prefix = generation_prompt(processor, self.instruction, with_image=False)
        self.opened = opened_by_template(self.prefix)  # Qwen3.5's template opens <think>

    @classmethod
    def from_pretrained(cls, path: str, model_config: Any = None, **kwargs: Any) -> HFJudge:
        """Load a judge from a checkpoint through :func:`qponder.models.load_model`."""
        from qponder.models.loading import load_model

        model, processor = load_model(path, model_config)
        return cls(model, processor, **kwargs)

    def prompt_texts(self, reasonings: Sequence[str]) -> list[str]:
        """The texts the judge reads: the generation prompt, then each reasoning continued
        inside what the template opened, then an open answer tag."""
        return [self.prefix + after_opened(self.opened, judge_continuation(r)) for r in reasonings]

    def _implied_scores(self, reasonings: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for start in range(0, len(reasonings), self.batch_size):
            chunk = self.prompt_texts(reasonings[start : start + self.batch_size])
            # left-padded: the read-out position is every row's last one
            out.extend(expected_scores(self.engine.next_token_logits(chunk), self.ids))
        return out


class JudgeEndpointError(QponderError):
    """An endpoint that cannot serve as the ``openai`` consistency judge: it refuses to
    continue a prefilled assistant turn, or returns no log-probabilities. Raised by the
    first call, so that the consistency reward never goes silently to zero."""


class OpenAIJudge(Judge):
    """A judge behind an OpenAI-compatible endpoint that continues a prefilled assistant turn
    (vLLM's ``continue_final_message``) and returns top log-probabilities of one token.

    The implied score is the expectation over "1".."5" among the returned top tokens,
    renormalised; ``None`` when none of them is a digit.

    An endpoint that cannot do this (``transformers serve``, for one) is refused by the
    first call with a :class:`JudgeEndpointError` naming it and what it lacks: an HTTP
    400/422 answer to the request (``continue_final_message`` refused), or an answer without
    log-probabilities.

    Args:
        base_url: The endpoint.
        model: The served model name.
        api_key_env: Environment variable holding the key.
        instruction: The student instruction (the recipe's).
        top_logprobs: How many top tokens to ask for.
        client: A ready ``openai.OpenAI`` client (tests, custom transports).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        instruction: str | None = None,
        top_logprobs: int = 20,
        client: Any = None,
    ) -> None:
        super().__init__(instruction)
        self.client = client or openai_client(
            base_url, api_key_env=api_key_env, what="grpo.consistency.judge=openai"
        )
        self.base_url = base_url or str(getattr(self.client, "base_url", "api.openai.com"))
        self.model = model
        self.top_logprobs = top_logprobs
        self._verified = False  # an answer with log-probabilities has come back

    def _unsupported(self, what: str) -> JudgeEndpointError:
        return JudgeEndpointError(
            f"grpo.consistency.judge=openai: {self.base_url} (model {self.model!r}) {what}; "
            "the openai judge continues a prefilled assistant turn (continue_final_message) "
            "and reads the log-probabilities of the next token, which needs a server such as "
            "vLLM (vllm serve MODEL); or use judge: policy or a local judge path"
        )

    def _one(self, reasoning: str) -> float | None:
        import openai

        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=chat_messages(self.instruction, prefill=judge_continuation(reasoning)),
                max_tokens=1,
                temperature=0.0,
                logprobs=True,
                top_logprobs=self.top_logprobs,
                extra_body={"continue_final_message": True, "add_generation_prompt": False},
            )
        except openai.APIStatusError as exc:
            if self._verified or exc.status_code not in (400, 422):
                raise
            prefix = f"Error code: {exc.status_code}"  # the SDK's; the status is said below
            detail = error_text(exc, limit=200).removeprefix(prefix).lstrip(" -") or "no detail"
            refused = (
                "continue_final_message"
                if "continue_final_message" in detail or "add_generation_prompt" in detail
                else "the judge request"
            )
            raise self._unsupported(
                f"refused {refused} (HTTP {exc.status_code}: {detail})"
            ) from exc
        choices = reply_choices(resp)
        content = choice_logprobs(choices[0]) if choices else None
        if not content:
            if not self._verified:
                raise self._unsupported("returns no log-probabilities")
            logger.warning(
                "the openai judge at %s answered without log-probabilities", self.base_url
            )
            return None
        self._verified = True
        top = content[0].top_logprobs or []
        return expected_from_logprobs({t.token: t.logprob for t in top})

    def _implied_scores(self, reasonings: list[str]) -> list[float | None]:
        return [self._one(r) for r in reasonings]


def build_judge(
    cfg: Any, policy_path: str, model_config: Any = None, instruction: str | None = None
) -> Judge:
    """Build the consistency judge of a :class:`qponder.config.ConsistencyRewardConfig`:
    ``policy`` = a frozen copy of the initial policy, ``openai`` = an endpoint, else a path.

    Args:
        cfg: The ``grpo.consistency`` section (validated: ``openai`` has base_url and model).
        policy_path: The initial policy, for ``judge: policy``.
        model_config: How to load a local judge (dtype, device map, ...).
        instruction: The recipe's student instruction, shown to the judge.
    """
    if cfg.judge == "openai":
        return OpenAIJudge(cfg.base_url, cfg.model, instruction=instruction)
    path = policy_path if cfg.judge == "policy" else cfg.judge
    return HFJudge.from_pretrained(
        path, model_config, instruction=instruction, batch_size=cfg.batch_size
    )
