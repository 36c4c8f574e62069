"""AMI framing (AMI v2 specification): a message is ``Key: Value`` lines ended by a blank line.

Messages are read line by line and decoded once a whole line is in, so a UTF-8 caller name
split across TCP segments arrives whole; bare LF line ends are taken as well as CRLF. A
key may repeat (``ChanVariable``), so a message keeps its pairs in order; lookups are by
key without regard to case, the first occurrence winning. Values keep their spaces
(``AccountCode: `` is an empty value) except the one space after the colon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

BANNER_PREFIX = "Asterisk Call Manager/"
MAX_LINES = 2000  # a block longer than this is not AMI; refuse it rather than grow forever


class Message:
    """One AMI block: an action, a response or an event."""

    __slots__ = ("_index", "pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs: tuple[tuple[str, str], ...] = tuple(pairs)
        self._index: dict[str, str] = {}
        for key, value in self.pairs:
            self._index.setdefault(key.lower(), value)

    def get(self, key: str, default: str = "") -> str:
        return self._index.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def response(self) -> str:
        return self.get("Response")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.pairs == other.pairs

    def __hash__(self) -> int:
        return hash(self.pairs)

    def __repr__(self) -> str:
        shown = dict(self.pairs)
        if "Secret" in shown:
            shown["Secret"] = "***"
        return f"Message({shown!r})"


class ProtocolError(Exception):
    """The other side does not speak AMI."""


def encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A message as it goes on the wire: CRLF lines and a blank line."""
    lines = []
    for key, value in pairs:
        bad_key = not key or ":" in key or key != key.strip()
        if bad_key or any(c in key + value for c in "\r\n"):
            raise ValueError(f"cannot frame {key!r}: {value!r}")
        lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode()


def parse_line(line: str) -> tuple[str, str] | None:
    key, colon, value = line.partition(":")
    if not colon or not key.strip():
        return None  # a Response: Follows body line, or noise
    return key.strip(), value[1:] if value.startswith(" ") else value


async def read_banner(reader: asyncio.StreamReader) -> str:
    """The greeting line ``Asterisk Call Manager/5.0.1``; its version is not relied on."""
    line = (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
    if not line.startswith(BANNER_PREFIX):
        raise ProtocolError(f"not an Asterisk manager interface: greeted with {line[:80]!r}")
    return line


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next non-empty block; ``None`` at the end of the stream."""
    pairs: list[tuple[str, str]] = []
    lines = 0
    while True:
        raw = await reader.readline()
        if not raw:
            return None  # EOF; a half block is dropped, as a cut connection's last bytes
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if pairs:
                return Message(pairs)
            continue
        lines += 1
        if lines > MAX_LINES:
            raise ProtocolError(f"a block of more than {MAX_LINES} lines")
        pair = parse_line(line)
        if pair is not None:
            pairs.append(pair)
