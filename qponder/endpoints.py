"""Talking to OpenAI-compatible endpoints (vLLM, SGLang, ``transformers serve``, hosted
APIs), the same way for every caller: the teacher, the ``openai`` scoring backend, the
``openai`` consistency judge and the description judge.

- :func:`openai_client` builds the client;
- :func:`chat_messages` builds a chat with an image (a lossless PNG data URL from
  :func:`encode_png` or :func:`png_data_url`), a system turn or a prefilled assistant turn;
- :func:`reply_choices`, :func:`choice_text` (:func:`message_text`) and
  :func:`choice_logprobs` read the reply, whatever form the server gave it.

What differs between callers stays with them: the teacher's asynchronous client and its
retries, the backend's repeated requests for servers that ignore ``n``, the judge's
``continue_final_message``.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
from typing import Any

from qponder.answer_format import with_reasoning
from qponder.errors import QponderError

DUMMY_API_KEY = "EMPTY"  # local servers accept any key; the SDK refuses none


def api_key(api_key_env: str, base_url: str | None, what: str) -> str:
    """The key in ``$api_key_env``; a dummy key for a local endpoint that needs none.

    Raises:
        QponderError: No key is set and no ``base_url`` is given (that means the hosted
            OpenAI API, which needs one); ``what`` names the setting in the message.
    """
    key = os.environ.get(api_key_env)
    if key:
        return key
    if base_url is None:
        raise QponderError(
            f"{what} without a base_url talks to api.openai.com and needs an API key in "
            f"${api_key_env}; set a base_url for a local server"
        )
    return DUMMY_API_KEY


def openai_client(
    base_url: str | None,
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_retries: int = 5,
    asynchronous: bool = False,
    what: str = "the openai endpoint",
) -> Any:
    """Build an ``openai.OpenAI`` (or ``AsyncOpenAI``) client for ``base_url``.

    Args:
        base_url: The endpoint, e.g. ``http://localhost:8000/v1``; None = api.openai.com.
        api_key_env: Environment variable holding the key (see :func:`api_key`).
        timeout: Seconds a request may take.
        max_retries: The SDK's own retries on connection errors, 429 and 5xx.
        asynchronous: Return an ``AsyncOpenAI`` client.
        what: The setting that asked for the client, for error messages.
    """
    import openai

    for name in ("httpx", "httpx2"):  # one INFO line per request would bury a progress bar
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    key = api_key(api_key_env, base_url, what)
    return cls(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)


def message_text(message: Any) -> str | None:
    """The text of a chat-completion message in the answer format, whether the server sent
    the reasoning inside ``content`` or split it off into ``reasoning_content`` (vLLM and
    SGLang with ``--reasoning-parser``, ``transformers serve``; ``reasoning`` on some): a
    split-off reasoning is put back in a ``<think>`` block before the content.

    Returns:
        The text, or None when ``content`` is neither text nor absent.

    Example:
        >>> from types import SimpleNamespace as M
        >>> message_text(M(content="<answer>3</answer>", reasoning_content="sharp"))
        '<think>\\nsharp\\n</think>\\n<answer>3</answer>'
    """
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        return None
    thought = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    if content is None and not (isinstance(thought, str) and thought.strip()):
        return None
    return with_reasoning(content or "", thought)


def error_text(exc: BaseException, limit: int = 300) -> str:
    """One line saying why a request failed, with the server's own reason.

    The openai SDK puts only an OpenAI-style ``{"error": {"message": ...}}`` into the text
    of an ``APIStatusError``; the ``{"detail": ...}`` of a FastAPI server such as
    ``transformers serve`` is kept in ``exc.body`` only, and the text reads ``Error code:
    400`` alone. This adds that detail (cut to ``limit`` characters).

    Example:
        >>> class Refused(Exception):
        ...     body = {"detail": "Server is pinned to 'a'; requested 'b'."}
        >>> error_text(Refused("Error code: 400"))
        "Error code: 400 - Server is pinned to 'a'; requested 'b'."
    """
    text = str(exc)
    body = getattr(exc, "body", None)
    detail = body.get("detail", body.get("message")) if isinstance(body, dict) else body
    if detail is not None and not isinstance(detail, str):
        detail = str(detail)
    if detail and detail.strip() and detail.strip() not in text:
        text = f"{text} - {detail.strip()}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def png_data_url(image: Any) -> str:
    """``image`` as a PNG data URL, as it is (lossless: JPEG would add artefacts to an image
    whose quality is being judged).

    Example:
        >>> from PIL import Image
        >>> png_data_url(Image.new("RGB", (8, 4)))[:22]
        'data:image/png;base64,'
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def encode_png(image: Any, max_pixels: int | None = None) -> str:
    """Return a PNG data URL of ``image`` (lossless: JPEG would add artefacts to an image
    whose quality is being judged), shrunk to at most ``max_pixels`` pixels when given.

    Example:
        >>> from PIL import Image
        >>> encode_png(Image.new("RGB", (8, 4)))[:22]
        'data:image/png;base64,'
    """
    from PIL import Image

    w, h = image.size
    if max_pixels and w * h > max_pixels:
        s = math.sqrt(max_pixels / (w * h))
        image = image.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BICUBIC)
    return png_data_url(image)


def chat_messages(
    prompt: str,
    image_url: str | None = None,
    *,
    system: str | None = None,
    prefill: str | None = None,
) -> list[dict[str, Any]]:
    """A chat-completions conversation: an optional system turn, the user turn (the image,
    then ``prompt``; ``prompt`` alone, as a plain string, without an image) and an optional
    assistant turn for the server to continue.

    Args:
        prompt: The user text.
        image_url: A data URL (:func:`encode_png`) or URL of the image, or None.
        system: The system text, or None for no system turn.
        prefill: The start of the assistant's answer (a server continues it with
            ``continue_final_message``), or None.

    Example:
        >>> chat_messages("Rate it.", "data:image/png;base64,AA")[0]["content"][0]["type"]
        'image_url'
        >>> chat_messages("Rate it.", prefill="Sharp.")
        [{'role': 'user', 'content': 'Rate it.'}, {'role': 'assistant', 'content': 'Sharp.'}]
    """
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    content: str | list[dict[str, Any]] = prompt
    if image_url is not None:
        content = [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": prompt},
        ]
    messages.append({"role": "user", "content": content})
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    return messages


def reply_choices(response: Any) -> list[Any]:
    """The choices of a chat completion; ``[]`` when it has none (a body without
    ``choices``, or not a completion at all, as a server's HTML error page comes back)."""
    choices = getattr(response, "choices", None)
    return choices if isinstance(choices, list) else []


def choice_text(choice: Any) -> str | None:
    """The text of a choice in the answer format (see :func:`message_text`), or None."""
    return message_text(getattr(choice, "message", None))


def choice_logprobs(choice: Any) -> list[Any] | None:
    """The per-token log-probabilities of a choice (``logprobs.content``: each with
    ``token``, ``logprob`` and ``top_logprobs``), or None when the server sent none."""
    return getattr(getattr(choice, "logprobs", None), "content", None) or None
