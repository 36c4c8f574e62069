"""Real AMI captures (the shared corpus, read in place) become the calls they were.

Each transcript is replayed by a local AMI server to the adapter; the inbox must then hold
what expected_outcomes.json says happened: who called whom, who rang, who answered, and
one final event, ended or missed.
"""

from __future__ import annotations

import re

import pytest

from tests.plugins.telephony_ami.ami_server import AmiServer
from tests.plugins.telephony_ami.conftest import (
    StartHub,
    corpus_names,
    expected,
    final_of,
    keys_of,
    stored_calls,
    transcript,
)

# What the README says each capture is: the trunk call in from outside, the rest between
# two phones of the same PBX.
DIRECTION = {
    "inbound_trunk_ivr_queue_answered.ami": "in",
    "ext21_calls_ext1986_answered.ami": "internal",
    "ext1986_calls_ext21_answered.ami": "internal",
    "ext1986_calls_ext21_caller_cancels.ami": "internal",
    "ext1986_calls_ringgroup666_noanswer.ami": "internal",
}
REASON = {"NOANSWER": "no_answer", "CANCEL": "cancel", "BUSY": "busy"}


def device(channel: str) -> str:
    """PJSIP/21-0000001a -> 21: the phone a channel belongs to."""
    match = re.match(r"^[^/]+/(.+)-[0-9a-f]+$", channel)
    assert match, channel
    return match.group(1)


NAMES = corpus_names() or ["(corpus absent)"]


@pytest.mark.parametrize("name", NAMES)
async def test_each_captured_call_is_stored_as_its_expected_outcome(
    name: str, ami_server: AmiServer, start_hub: StartHub
) -> None:
    banner, blocks = transcript(name)
    outcome = expected(name)
    ami_server.banner = banner  # each capture's own greeting: the version is not relied on
    ami_server.then(blocks)
    hub = await start_hub(ami_server)
    call_id = outcome["linkedids"][0]

    final = await final_of(hub, call_id)
    calls = await stored_calls(hub)

    rung = [device(channel) for channel, _status in outcome["dial_end"]]
    answered_by = [device(c) for c, status in outcome["dial_end"] if status == "ANSWER"]
    states = [f"ringing:{ext}" for ext in rung]
    if outcome["answered"]:
        states.append("answered")
    states.append("final")
    assert sorted(keys_of(calls, call_id)) == sorted(states)
    assert {payload["call_id"] for _key, payload in calls} == {call_id}

    for _key, payload in calls:
        assert payload["provider"] == "asterisk"
        assert payload["direction"] == DIRECTION[name]
        assert payload["caller"] == outcome["caller_id_num"]
        assert payload["called"] == outcome["dialed_exten"]
        if DIRECTION[name] == "in":
            assert payload["line"] == outcome["dialed_exten"]  # the DID the caller dialled
    ringing = sorted(p["extension"] for _k, p in calls if p["state"] == "ringing")
    assert ringing == sorted(rung)

    if outcome["answered"]:
        assert final["state"] == "ended"
        assert final["answered_by"] == answered_by[-1]
        answered = next(p for _k, p in calls if p["state"] == "answered")
        assert answered["answered_by"] == answered_by[0]
        assert final["duration"] is not None
        assert final["duration"] >= 0
    else:
        assert final["state"] == "missed"
        assert final["answered_by"] is None
        assert final["reason"] == REASON[outcome["dial_end"][-1][1]]
