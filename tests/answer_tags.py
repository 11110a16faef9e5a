"""Completions in the tests are written with the tags ``<think>`` and ``<answer>`` for the
reader; :func:`tagged` spells them as :mod:`qponder.answer_format`, the one owner of the
format, spells them now, so that changing the tags is a change to that module alone."""

from __future__ import annotations

import re

from qponder import answer_format as af

_TAG = re.compile(r"<(\s*/?\s*)(think|answer)(\s*)>", re.IGNORECASE)


def _spell(match: re.Match[str]) -> str:
    written = match.group(2)
    name = af.THINK if written.lower() == "think" else af.ANSWER
    if written.isupper():
        name = name.upper()
    return f"<{match.group(1)}{name}{match.group(3)}>"


def tagged(text: str) -> str:
    """``text`` with every ``<think>``/``</think>``/``<answer>``/``</answer>`` tag (spaces
    and case kept) spelled as the answer format spells it.

    Example:
        >>> tagged("<think>ok</think><answer>3</answer>") == af.render("ok", "3").replace("\\n", "")
        True
    """
    return _TAG.sub(_spell, text)
