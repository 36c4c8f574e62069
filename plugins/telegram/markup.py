"""Telegram's HTML (https://core.telegram.org/bots/api#html-style): plain text escaped
for it, and a message cut to the length ``sendMessage`` takes without breaking a tag or
an entity.

Telegram counts the 4096 characters of a message after parsing, in UTF-16 code units.
:func:`cut` counts the markup itself in UTF-16 code units, tags and entities included,
which is never less: what it returns fits however Telegram counts it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

LIMIT = 4096
ELLIPSIS = "…"
# Near the end of what fits, cut at a space rather than inside a word.
WORD_SLACK = 80
# Elements whose content cannot be cut: a custom emoji stands for one whole emoji.
WHOLE = frozenset({"tg-emoji"})

_TAG = re.compile(
    r"""<(?P<close>/?)(?P<name>[a-zA-Z][a-zA-Z0-9-]*)(?:\s(?:[^<>"']|"[^"]*"|'[^']*')*)?>"""
)
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);")


def escape(text: str) -> str:
    """Plain text as Telegram HTML: ``<``, ``>`` and ``&`` as entities."""
    return html.escape(text, quote=False)


def size(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _tokens(markup: str) -> Iterator[tuple[str, str, str | None]]:
    """(kind, text, tag name) for every tag, entity and single character, in order."""
    at = 0
    while at < len(markup):
        char = markup[at]
        if char == "<" and (tag := _TAG.match(markup, at)):
            kind = "close" if tag["close"] else "open"
            yield kind, tag.group(), tag["name"].lower()
            at = tag.end()
        elif char == "&" and (entity := _ENTITY.match(markup, at)):
            yield "text", entity.group(), None
            at = entity.end()
        else:
            yield "text", char, None
            at += 1


def cut(markup: str, limit: int = LIMIT) -> str:
    """``markup`` if it fits in ``limit``; else as much of it as fits, at a space where one
    is near, then "…" and the closing tags of the elements still open."""
    if size(markup) <= limit:
        return markup
    budget = limit - size(ELLIPSIS)
    kept: list[str] = []
    open_tags: list[str] = []
    used = 0  # what is kept, plus the closing tags it needs
    # Where the text may be cut: (tokens kept, used, open tags) before a space.
    space: tuple[int, int, tuple[str, ...]] | None = None
    whole: tuple[int, int, tuple[str, ...]] | None = None  # before an element not to cut
    for kind, token, name in _tokens(markup):
        if kind == "open":
            assert name is not None
            cost = size(token) + len(name) + 3  # the tag and its "</name>"
            if used + cost > budget:
                break
            if name in WHOLE and whole is None:
                whole = (len(kept), used, tuple(open_tags))
            open_tags.append(name)
        elif kind == "close":
            if not open_tags or open_tags[-1] != name:
                continue  # a stray closing tag: leaving it out keeps the rest balanced
            open_tags.pop()
            cost = 0  # counted with its opening tag
            if not WHOLE.intersection(open_tags):
                whole = None
        else:
            cost = size(token)
            if used + cost > budget:
                break
            if token.isspace() and whole is None:
                space = (len(kept), used, tuple(open_tags))
        kept.append(token)
        used += cost
    if whole is not None:
        count, used, tags = whole
    elif space is not None and used - space[1] <= WORD_SLACK:
        count, used, tags = space
    else:
        count, tags = len(kept), tuple(open_tags)
    closing = "".join(f"</{name}>" for name in reversed(tags))
    return "".join(kept[:count]) + ELLIPSIS + closing
