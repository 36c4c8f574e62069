"""AMI framing: any block of Key: Value lines comes back as it was sent."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.telephony_ami.protocol import (
    Message,
    ProtocolError,
    encode,
    read_banner,
    read_message,
)

KEYS = st.text(
    st.characters(categories=["Lu", "Ll", "Nd"], max_codepoint=0x7F) | st.sampled_from("-_"),
    min_size=1,
    max_size=20,
)
VALUES = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=60)
BLOCKS = st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=12)


def read_back(wire: bytes, cuts: list[int]) -> list[Message]:
    """The messages a reader gets from ``wire`` arriving in pieces cut at ``cuts``."""

    async def run() -> list[Message]:
        reader = asyncio.StreamReader()
        start = 0
        for cut in sorted(cuts):
            reader.feed_data(wire[start:cut])
            start = cut
        reader.feed_data(wire[start:])
        reader.feed_eof()
        messages = []
        while (message := await read_message(reader)) is not None:
            messages.append(message)
        return messages

    return asyncio.run(run())


@given(blocks=st.lists(BLOCKS, min_size=1, max_size=4), data=st.data())
def test_any_key_value_block_round_trips_however_tcp_cuts_it(
    blocks: list[list[tuple[str, str]]], data: st.DataObject
) -> None:
    wire = b"".join(encode(block) for block in blocks)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    assert [m.pairs for m in read_back(wire, cuts)] == [tuple(block) for block in blocks]


def test_a_cyrillic_caller_name_split_inside_a_letter_arrives_whole() -> None:
    wire = encode([("Event", "Newchannel"), ("CallerIDName", "Евгений Р")])
    middle = wire.index("Е".encode()) + 1  # between the two bytes of one letter
    (message,) = read_back(wire, [middle])
    assert message.get("calleridname") == "Евгений Р"


def test_bare_lf_lines_and_trailing_spaces_are_read_as_asterisk_wrote_them() -> None:
    (message,) = read_back(b"Event: Newchannel\nAccountCode: \nExten: 21 \n\n", [])
    assert message.get("AccountCode") == ""
    assert message.get("Exten") == "21 "


def test_a_repeated_key_keeps_every_value_and_lookup_takes_the_first() -> None:
    pairs = [("Event", "VarSet"), ("ChanVariable", "a=1"), ("ChanVariable", "b=2")]
    (message,) = read_back(encode(pairs), [])
    assert message.pairs == tuple(pairs)
    assert message.get("chanvariable") == "a=1"


def test_a_line_break_inside_a_value_is_refused_rather_than_sent_as_two_lines() -> None:
    with pytest.raises(ValueError, match="cannot frame"):
        encode([("Action", "Login"), ("Secret", "x\r\nAction: Logoff")])


async def test_a_greeting_that_is_not_asterisk_is_a_protocol_error() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"SSH-2.0-OpenSSH_9.6\r\n")
    with pytest.raises(ProtocolError, match="not an Asterisk manager interface"):
        await read_banner(reader)
