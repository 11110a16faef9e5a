"""A teacher behind an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, LMDeploy,
a hosted provider), through the official ``openai`` SDK.

Retries are ours, not the SDK's (the client is built with ``max_retries=0``). The SDK
retries 408/409/429/5xx and connection errors, but not malformed replies: a 200 whose body
is broken JSON raises a bare ``json.JSONDecodeError``, a body without ``choices`` comes back
as a completion with ``choices=None``, and an HTML page comes back as a ``str``. One loop
handles all of these with the same budget (``distill.max_retries``) and counts each kind of
retry for the run report, which the SDK's internal loop would hide. The loop honours
``Retry-After``/``retry-after-ms`` on 429 and 5xx answers (up to :data:`MAX_RETRY_AFTER`
seconds), and otherwise backs off exponentially with jitter from ``distill.retry_backoff``.

Images travel as base64 PNG data URLs, downscaled to ``distill.max_side`` on the longest
side. PNG, because re-encoding as JPEG would add the very compression artefacts the teacher
is asked to judge.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from typing import Any

from qponder import endpoints
from qponder.distill.base import (
    Teacher,
    TeacherError,
    TeacherFatalError,
    TeacherReply,
    TeacherRequest,
    downscale,
)
from qponder.endpoints import (
    choice_text,
    error_text,
    openai_client,
    png_data_url,
    reply_choices,
)

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300.0  # seconds; a longer server-requested wait is cut to this
MAX_BACKOFF = 60.0  # seconds; the exponential backoff never waits longer


def encode_image(image: Any, max_side: int) -> str:
    """Return ``image`` as a PNG data URL, downscaled so that its longest side is at most
    ``max_side`` pixels (aspect ratio kept; never upscaled).

    Example:
        >>> from PIL import Image
        >>> encode_image(Image.new("RGB", (8, 4)), 4)[:22]
        'data:image/png;base64,'
    """
    return png_data_url(downscale(image, max_side))


def retry_after_seconds(headers: Any) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) from headers.

    Example:
        >>> retry_after_seconds({"retry-after": "2"})
        2.0
        >>> retry_after_seconds({"retry-after-ms": "250"})
        0.25
    """
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    return None


class _Malformed(ValueError):
    """A 200 answer that is not a usable chat completion."""


def chat_messages(system: str, prompt: str, image_url: str) -> list[dict[str, Any]]:
    """The teacher's chat: the system message, then the image and the prompt."""
    return endpoints.chat_messages(prompt, image_url, system=system)


def replies_from_response(response: Any) -> list[TeacherReply]:
    """The text replies of a chat completion (its choices).

    Raises:
        ValueError: The response has no choice with text content.
    """
    choices = reply_choices(response)
    if not choices:
        raise _Malformed(f"no choices in the response ({str(response)[:80]!r})")
    replies = []
    for choice in choices:
        text = choice_text(choice)
        if text is not None:
            replies.append(
                TeacherReply(text=text, finish_reason=getattr(choice, "finish_reason", None))
            )
    if not replies:
        raise _Malformed("no choice carries text content")
    return replies


class OpenAITeacher(Teacher):
    """Chat completions with an image, against any OpenAI-compatible server.

    Args:
        model: Served model name; ``None`` asks the server (``/v1/models``) and takes its
            only model.
        base_url: Endpoint such as ``http://localhost:8000/v1``; ``None`` = api.openai.com.
        api_key_env: Environment variable holding the API key. When it is unset and
            ``base_url`` is given, a dummy key is sent (local servers need none).
        concurrency: Requests open at once.
        timeout: Seconds a request may take in total before it is retried.
        max_retries: Retries per request after the first attempt.
        retry_backoff: First backoff delay in seconds; doubles per retry.
        max_side: Longest image side sent, in pixels.
        temperature: Sampling temperature.
        max_tokens: Completion token limit.
    """

    def __init__(
        self,
        model: str | None,
        base_url: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
        max_side: int = 1024,
        temperature: float = 0.7,
        max_tokens: int = 1024,
    ) -> None:
        super().__init__()
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_side = max_side
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_in_flight = 2 * concurrency  # the extra half loads and encodes images
        self._sem = asyncio.Semaphore(concurrency)
        self._client = openai_client(
            base_url,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=0,  # retried here, with backoff and Retry-After
            asynchronous=True,
            what="distill.teacher=openai",
        )
        self._base_url = base_url or "https://api.openai.com/v1"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openai:{self.model}"

    async def start(self) -> None:
        """Resolve the model name when none was given (a server that serves one model)."""
        if self.model:
            return
        import openai

        try:
            models = [m.id async for m in self._client.models.list()]
        except openai.OpenAIError as exc:
            raise TeacherFatalError(
                f"no distill.model given and listing the models of {self._base_url} failed: {exc}"
            ) from exc
        if len(models) != 1:
            raise TeacherFatalError(
                f"no distill.model given and {self._base_url} serves {len(models)} models "
                f"({models[:10]}); pass --model NAME"
            )
        self.model = models[0]
        logger.info("teacher model: %s (the only model served at %s)", self.model, self._base_url)

    async def generate(self, request: TeacherRequest) -> list[TeacherReply]:
        """Return ``request.n`` replies; servers that ignore ``n`` are asked again."""
        url = await asyncio.to_thread(encode_image, request.image, self.max_side)
        messages = chat_messages(request.system, request.prompt, url)
        replies: list[TeacherReply] = []
        for _ in range(request.n):  # at most n calls, even if each returns one choice
            replies += await self._create(messages, request.n - len(replies), request.sample)
            if len(replies) >= request.n:
                break
        return replies[: request.n]

    async def _create(self, messages: list[dict], n: int, sample: Any) -> list[TeacherReply]:
        """One chat completion with retries; see the module docstring for the policy."""
        sample_id = getattr(sample, "id", "?")
        for attempt in range(self.max_retries + 1):
            self.stats.requests += 1
            try:
                async with self._sem:
                    response = await asyncio.wait_for(
                        self._client.chat.completions.create(
                            model=self.model,
                            messages=messages,
                            n=n,
                            temperature=self.temperature,
                            max_tokens=self.max_tokens,
                            timeout=self.timeout,
                        ),
                        timeout=self.timeout,
                    )
                return replies_from_response(response)
            except Exception as exc:  # noqa: BLE001 - classified below; bugs re-raised
                kind, retry_after, message = self._classify(exc)
            if attempt == self.max_retries:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            self.stats.retries[kind] += 1
            logger.debug(
                "image %s: %s (%s); retry %d in %.2fs", sample_id, kind, message, attempt + 1, delay
            )
            await asyncio.sleep(delay)
        self.stats.failures[kind] += 1
        raise TeacherError(kind, f"{message} (after {self.max_retries + 1} attempts)")

    def _backoff(self, attempt: int) -> float:
        delay = min(self.retry_backoff * 2**attempt, MAX_BACKOFF)
        return delay / 2 + random.uniform(0, delay / 2)

    def _classify(self, exc: BaseException) -> tuple[str, float | None, str]:
        """Return (kind, server-requested delay, message) of a retryable failure.

        Raises:
            TeacherFatalError: Authentication, permission or not-found answers.
            TeacherError: Other 4xx answers (the request itself is refused; not retried).
        """
        import openai

        if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
            return "timeout", None, f"no answer within {self.timeout:g}s"
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = f"HTTP {status}: {error_text(exc, limit=200)}"
            if status in (401, 403, 404):
                raise TeacherFatalError(
                    f"teacher endpoint {self._base_url} (model {self.model!r}) answered {detail}"
                ) from exc
            after = retry_after_seconds(exc.response.headers)
            if status == 429:
                return "rate_limit", after, detail
            if status in (408, 409) or status >= 500:
                return "server_error", after, detail
            self.stats.failures["bad_request"] += 1
            raise TeacherError("bad_request", detail) from exc
        if isinstance(exc, openai.APIConnectionError):
            return "connection", None, f"cannot reach {self._base_url}: {exc}"
        if isinstance(exc, (_Malformed, json.JSONDecodeError, openai.APIResponseValidationError)):
            return "malformed", None, f"malformed response: {str(exc)[:200]}"
        raise exc

    async def aclose(self) -> None:
        await self._client.close()
