"""The answer format: the one place that knows how a completion is laid out.

A completion is a reasoning block, then an answer block (DESIGN §2)::

    <think>
    ...reasoning...
    </think>
    <answer>...</answer>

This module spells the tags, and everything else reads them through it: the instruction
fragments that ask a model for this layout (:mod:`qponder.prompts` builds its texts from
them), splitting a completion into its blocks, rendering one, the text a consistency judge
continues, the tags that tokenizers add whole, where a read-out sits, and what a chat
template that opens the reasoning block itself has already written.

What the answer *says* is not decided here: an :class:`AnswerKind` reads and writes it (a
score on [1, 5] in :mod:`qponder.parsing`; a choice between two images, a list of kinds).
:func:`parse` combines the two. Changing the tags is a change to this module alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

THINK = "think"  # the reasoning block's tag name
ANSWER = "answer"  # the answer block's tag name

THINK_OPEN = f"<{THINK}>"
THINK_CLOSE = f"</{THINK}>"
ANSWER_OPEN = f"<{ANSWER}>"
ANSWER_CLOSE = f"</{ANSWER}>"

# The tags as whole tokens, for tokenizers that add them (the tiny models): Qwen's
# pre-tokenizer splits "<answer>" into "<answer" + ">", and a model as small as the tiny one
# then confuses the ">" before a digit with the one that ends the turn.
TAG_TOKENS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# Where the instructions say each part goes ("... inside <think> </think>").
REASONING_SPAN = f"inside {THINK_OPEN} {THINK_CLOSE}"
ANSWER_SPAN = f"inside {ANSWER_OPEN} {ANSWER_CLOSE}"

NO_ANSWER = "no_answer"  # no complete answer block: the one failure this module decides


def _block_re(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<\s*{tag}\s*>(.*?)<\s*/\s*{tag}\s*>", re.IGNORECASE | re.DOTALL)


def _open_re(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<\s*{tag}\s*>", re.IGNORECASE)


_THINK_RE = _block_re(THINK)
_ANSWER_RE = _block_re(ANSWER)
_THINK_OPEN_RE = _open_re(THINK)
_ANSWER_OPEN_RE = _open_re(ANSWER)
_ANY_TAG_RE = re.compile(rf"<\s*/?\s*(?:{THINK}|{ANSWER})\s*>", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t]+")


# --------------------------------------------------------------------------- completions


def with_reasoning(content: str, reasoning: object) -> str:
    """``content`` with a reasoning that a response parser split off (a server's
    ``--reasoning-parser``, TRL's ``parse_response``) put back in a reasoning block before
    it; ``content`` as it is when there is none or it already has its block.

    Example:
        >>> with_reasoning("<answer>3</answer>", "sharp")
        '<think>\\nsharp\\n</think>\\n<answer>3</answer>'
    """
    if isinstance(reasoning, str) and reasoning.strip() and not _THINK_OPEN_RE.search(content):
        return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n{content.lstrip()}"
    return content


def completion_text(completion: str | list | dict) -> str:
    """Return the text of a completion given as a string or in TRL's conversational form.

    Args:
        completion: A string, a message dict ``{"role", "content"}``, or a list of such
            messages (the assistant turn TRL passes to reward functions). Content may be a
            string or a list of ``{"type": "text", "text": ...}`` parts; a message's
            ``reasoning_content`` (or ``reasoning``), set by a response parser, is put
            back in the reasoning block before the content.

    Returns:
        The concatenated text.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content") or ""
        if not isinstance(content, str):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        # a response parser (TRL's parse_response, a server's reasoning parser) may have
        # moved the reasoning out of the text: put it back where the format has it
        return with_reasoning(
            content, completion.get("reasoning_content") or completion.get("reasoning")
        )
    if isinstance(completion, list):
        return "".join(completion_text(m) for m in completion)
    raise TypeError(f"unsupported completion type: {type(completion).__name__}")


@dataclass(frozen=True)
class Blocks:
    """The layout of a completion, whatever its answer says.

    Attributes:
        reasoning: Text of the reasoning block(s); without one, the text before the first
            answer tag. Never contains an answer: an answer block written inside the
            reasoning (and anything after an answer tag that never closes there) is taken
            out, and so are stray tags.
        answer: Raw text inside the last complete answer block, or ``None``.
        n_think: Number of complete reasoning blocks.
        n_answer: Number of complete answer blocks.
        think_before_answer: Whether the last reasoning block closes before the last
            answer block opens.
    """

    reasoning: str
    answer: str | None
    n_think: int
    n_answer: int
    think_before_answer: bool

    @property
    def well_formed(self) -> bool:
        """Exactly one reasoning block, then exactly one answer block (its content unread)."""
        return self.n_think == 1 and self.n_answer == 1 and self.think_before_answer


def split_blocks(text: str | list | dict) -> Blocks:
    """Split a completion into its reasoning and its last answer.

    Example:
        >>> b = split_blocks("<think>sharp</think>\\n<answer>4.2</answer>")
        >>> b.reasoning, b.answer, b.well_formed
        ('sharp', '4.2', True)
        >>> split_blocks("blurry <answer>2").answer is None
        True
    """
    text = completion_text(text)
    answers = list(_ANSWER_RE.finditer(text))
    thinks = list(_THINK_RE.finditer(text))
    last_answer = answers[-1] if answers else None
    if thinks:
        reasoning = "\n".join(reasoning_text(m.group(1)) for m in thinks)
    else:
        cut = _ANSWER_OPEN_RE.search(text)
        reasoning = reasoning_text(text[: cut.start()] if cut else text)
    return Blocks(
        reasoning=reasoning,
        answer=last_answer.group(1) if last_answer else None,
        n_think=len(thinks),
        n_answer=len(answers),
        think_before_answer=bool(
            thinks and last_answer and thinks[-1].end() <= last_answer.start()
        ),
    )


def render_answer(answer: str) -> str:
    """The answer block around ``answer`` (already written by its :class:`AnswerKind`).

    Example:
        >>> render_answer("3.47")
        '<answer>3.47</answer>'
    """
    return f"{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def render(reasoning: str, answer: str) -> str:
    """A whole completion in the format, the exact layout training data uses.

    Example:
        >>> render(" Sharp. ", "4.00")
        '<think>\\nSharp.\\n</think>\\n<answer>4.00</answer>'
    """
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n{render_answer(answer)}"


def render_unanswered(reasoning: str, ending: str) -> str:
    """A completion whose reasoning is followed by ``ending`` instead of an answer block
    (a teacher's malformed answer, for tests and synthetic data)."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{ending}"


def strip_tags(text: str) -> str:
    """``text`` with every reasoning or answer tag replaced by a space (a reasoning that
    quotes the tags is kept, the tags are not).

    Example:
        >>> strip_tags("fine <answer> detail")
        'fine   detail'
    """
    return _ANY_TAG_RE.sub(" ", text)


def reasoning_text(text: str) -> str:
    """The words of a reasoning without any answer in it: answer blocks are taken out, and
    so is everything after an answer tag that never closes; remaining tags become spaces.
    What a consistency judge may read (an answer left in would show it the score).

    Example:
        >>> reasoning_text("Sharp. <answer>5</answer> Clean.")
        'Sharp. Clean.'
        >>> reasoning_text("Sharp. <answer>5 so")
        'Sharp.'
    """
    cleaned = _ANSWER_RE.sub(" ", text)
    cut = _ANSWER_OPEN_RE.search(cleaned)
    cleaned = _ANY_TAG_RE.sub(" ", cleaned[: cut.start()] if cut else cleaned)
    if cleaned != text:  # only where something was taken out: keep the writer's spacing
        cleaned = _SPACES_RE.sub(" ", cleaned)
    return cleaned.strip()


def judge_continuation(reasoning: str) -> str:
    """The assistant text a consistency judge continues: the reasoning in its block (any
    answer in it taken out, see :func:`reasoning_text`), then an open answer tag, so that
    the next token is the first of the answer.

    Example:
        >>> judge_continuation("Sharp, clean. <answer>5</answer>")
        '<think>\\nSharp, clean.\\n</think>\\n<answer>'
    """
    return f"{THINK_OPEN}\n{reasoning_text(reasoning)}\n{THINK_CLOSE}\n{ANSWER_OPEN}"


def answer_tag_end(text: str) -> int | None:
    """Character offset just after the last answer block's opening tag, or None."""
    matches = list(_ANSWER_OPEN_RE.finditer(text))
    return matches[-1].end() if matches else None


# --------------------------------------------------------------------------- chat templates


def opened_by_template(generation_prompt: str) -> str:
    """The start of the format that a chat template's generation prompt already wrote:
    ``"<think>\\n"`` when the prompt ends inside an open reasoning block (Qwen3.5 and other
    thinking templates open it themselves), else ``""``.

    What a model generates after such a prompt starts inside its reasoning; prepending
    this text gives the whole completion that parsing and rewards read. A block the
    template opens and closes again (a "no thinking" prompt ending in
    ``<think>\\n\\n</think>``) is not open.

    Example:
        >>> opened_by_template("<|im_start|>assistant\\n<think>\\n")
        '<think>\\n'
        >>> opened_by_template("<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n")
        ''
    """
    tail = generation_prompt.rstrip()
    return f"{THINK_OPEN}\n" if tail.endswith(THINK_OPEN) else ""


def after_opened(opened: str, text: str) -> str:
    """``text`` (a whole completion) without the part the template already ``opened``: what
    follows the generation prompt when the completion is written out after it.

    Example:
        >>> after_opened("<think>\\n", "<think>\\nSharp.\\n</think>")
        'Sharp.\\n</think>'
    """
    if opened and text.lstrip().startswith(THINK_OPEN):
        return text.lstrip()[len(THINK_OPEN) :].lstrip("\n")
    return text


# --------------------------------------------------------------------------- answers

V = TypeVar("V")


class AnswerKind(Protocol[V]):
    """What an answer block holds: how to read it (a value, or ``None`` and a failure
    reason; never a guess) and how to write a value into it."""

    def read(self, answer: str) -> tuple[V | None, str | None]: ...

    def write(self, value: V) -> str: ...


@dataclass(frozen=True)
class Parsed(Generic[V]):
    """A completion read with an :class:`AnswerKind`.

    Attributes:
        value: What the answer says, or ``None`` when it could not be read.
        blocks: The completion's layout.
        error: ``None`` on success; :data:`NO_ANSWER` or the answer kind's reason.
    """

    value: V | None
    blocks: Blocks
    error: str | None

    @property
    def ok(self) -> bool:
        """True when the answer was read."""
        return self.value is not None


def parse(text: str | list | dict, kind: AnswerKind[V]) -> Parsed[V]:
    """Split a completion and read its last answer block with ``kind``."""
    blocks = split_blocks(text)
    if blocks.answer is None:
        return Parsed(None, blocks, NO_ANSWER)
    value, error = kind.read(blocks.answer)
    return Parsed(value, blocks, error)


def well_formed(text: str | list | dict, kind: AnswerKind[Any]) -> bool:
    """One reasoning block, then one answer block that ``kind`` can read: the format
    reward's condition."""
    p = parse(text, kind)
    return p.ok and p.blocks.well_formed


def answer_token_index(ids: Sequence[int], decode: Callable[[Sequence[int]], str]) -> int | None:
    """Index of the first non-white-space token after the last answer tag: where a read-out
    over the answer's first token is taken.

    Args:
        ids: Generated token ids (the completion only, no prompt).
        decode: Turns ids into text, e.g. ``lambda t: tok.decode(t, skip_special_tokens=True)``.

    Returns:
        The index into ``ids``, or None when there is no tag, nothing follows it, or the
        token that completes the tag also carries text after it (the answer's first token
        is not a token of its own, so no read-out is possible).

    Example:
        >>> pieces = ["<think>", "ok", "</think>", "<answer", ">", " ", "3", ".", "5"]
        >>> answer_token_index(range(len(pieces)), lambda t: "".join(pieces[i] for i in t))
        6
    """
    ids = list(ids)
    text = decode(ids)
    end = answer_tag_end(text)
    if end is None:
        return None
    target = text[:end]
    lo, hi = 0, len(ids)  # smallest j whose prefix contains the whole tag (monotone in j)
    while lo < hi:
        mid = (lo + hi) // 2
        if decode(ids[:mid]).startswith(target):
            hi = mid
        else:
            lo = mid + 1
    if decode(ids[:lo])[end:].strip():
        return None
    j = lo
    while j < len(ids) and not decode(ids[j : j + 1]).strip():
        j += 1
    return j if j < len(ids) else None


def answer_piece_index(pieces: Sequence[str]) -> int | None:
    """:func:`answer_token_index` for token strings (as OpenAI-compatible logprobs give them).

    Example:
        >>> answer_piece_index(["<answer", ">\\n", "4", ".", "2"])
        2
    """
    return answer_token_index(range(len(pieces)), lambda idx: "".join(pieces[i] for i in idx))
