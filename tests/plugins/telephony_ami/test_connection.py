"""The AMI session: a refused login, a PBX that is down, a connection dropped mid-call."""

from __future__ import annotations

import asyncio
import socket

import pytest
from structlog.testing import capture_logs

from tests.conftest import wait_for
from tests.plugins.telephony_ami.ami_server import AmiServer
from tests.plugins.telephony_ami.conftest import (
    NAME,
    StartHub,
    adapter,
    final_of,
    keys_of,
    stored_calls,
    transcript,
)

ANSWERED = "ext1986_calls_ext21_answered.ami"  # 1986 calls 21, who answers (real capture)
CALL = "1770888509.40"


def first(blocks: list[str], event: str, after: int = 0) -> int:
    """Index of the first ``event`` block at or after ``after``."""
    return next(
        i for i, block in enumerate(blocks) if i >= after and block.startswith(f"Event: {event}")
    )


async def test_a_wrong_secret_fails_the_plugin_as_auth_failed_without_retrying(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    hub = await start_hub(ami_server, secret="not-the-secret")
    record = hub.plugins.records[NAME]

    async def failed() -> bool:
        return record.state == "auth_failed"

    await wait_for(failed)
    await asyncio.sleep(0.5)  # many reconnect_max (0.2 s) periods: a spinning client would retry

    assert ami_server.logins == 1
    assert "refused the login of 'hub'" in (record.error or "")
    assert "Authentication failed" in (record.error or "")
    assert "not-the-secret" not in (record.error or "")
    assert adapter(hub).state == "auth_failed"
    assert not record.tasks  # no background connection was started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_the_hub_starts_while_the_pbx_is_down_and_connects_when_it_comes_up(
    start_hub: StartHub,
) -> None:
    _banner, blocks = transcript(ANSWERED)
    server = AmiServer()
    server.port = free_port()  # nothing listens there yet
    with capture_logs() as logs:
        hub = await start_hub(server)

        async def running() -> bool:
            return hub.plugins.records[NAME].state == "running"

        await wait_for(running, within=2)
        assert adapter(hub).state == "reconnecting"
        assert "ConnectionRefusedError" in (adapter(hub).reason or "")

        await server.then(blocks).start(server.port)
        try:
            final = await final_of(hub, CALL)
        finally:
            await server.stop()
    assert final["state"] == "ended"
    assert any(e["event"] == "ami_reconnecting" and e.get("retry_in") for e in logs)
    assert any(e["event"] == "ami_connected" for e in logs)


@pytest.mark.parametrize("replay", ["the rest", "everything again"])
async def test_a_connection_dropped_mid_call_loses_and_doubles_nothing(
    replay: str, ami_server: AmiServer, start_hub: StartHub
) -> None:
    _banner, blocks = transcript(ANSWERED)
    cut = first(blocks, "DialBegin") + 1  # 21 is ringing; nobody has answered or hung up
    ami_server.then(blocks[:cut], drop=True)
    ami_server.then(blocks[cut:] if replay == "the rest" else blocks)
    with capture_logs() as logs:
        hub = await start_hub(ami_server)
        final = await final_of(hub, CALL)
    calls = await stored_calls(hub)

    assert ami_server.logins == 2
    assert keys_of(calls, CALL) == ["ringing:21", "answered", "final"]
    assert len(calls) == 3
    assert final["state"] == "ended"
    assert final["answered_by"] == "21"
    assert final["reason"] is None  # its own hangup was seen, not guessed
    dropped = [e for e in logs if e["event"] == "ami_reconnecting"]
    assert dropped
    assert dropped[0]["reason"].startswith("ConnectionLost")


@pytest.mark.parametrize(
    ("transcript_name", "cut_after", "state"),
    [
        (ANSWERED, "BridgeEnter", "ended"),
        ("ext1986_calls_ext21_caller_cancels.ami", "DialBegin", "missed"),
    ],
)
async def test_a_call_whose_hangup_was_lost_is_finished_once_the_pbx_shows_its_channels_gone(
    transcript_name: str, cut_after: str, state: str, ami_server: AmiServer, start_hub: StartHub
) -> None:
    _banner, blocks = transcript(transcript_name)
    cut = first(blocks, cut_after) + 1
    call_id = next(line for line in blocks[cut - 1].split("\r\n") if line.startswith("Linkedid"))
    call_id = call_id.split(": ", 1)[1]
    ami_server.then(blocks[:cut], drop=True, meanwhile=blocks[cut:])  # it ends unseen
    ami_server.then([])
    hub = await start_hub(ami_server)

    final = await final_of(hub, call_id)
    await asyncio.sleep(0.3)  # a further reconnect or catch-up would add nothing
    calls = await stored_calls(hub)

    assert final["state"] == state
    assert final["reason"] == "hangup_not_seen"
    assert keys_of(calls, call_id).count("final") == 1
    assert "CoreShowChannels" in [a.get("action") for a in ami_server.actions]
    if state == "ended":
        assert final["answered_by"] == "21"
    assert adapter(hub).state == "connected"


async def test_a_call_still_up_after_a_reconnect_is_kept_and_finished_by_its_own_hangup(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    _banner, blocks = transcript(ANSWERED)
    cut = first(blocks, "BridgeEnter") + 1
    ami_server.then(blocks[:cut], drop=True)
    ami_server.then([])  # reconnected: the call is still up, nothing new yet
    hub = await start_hub(ami_server)

    async def caught_up() -> bool:
        return ami_server.logins == 2 and adapter(hub).calls.known_channels() != set()

    await wait_for(caught_up)
    await asyncio.sleep(0.2)
    assert keys_of(await stored_calls(hub), CALL) == ["ringing:21", "answered"]

    ami_server.then(blocks[cut:])  # the third session sees the end of the call
    ami_server.drop_connections()
    final = await final_of(hub, CALL)
    assert final["state"] == "ended"
    assert final["reason"] is None


async def test_a_login_refused_on_reconnecting_is_retried_slowly_not_in_a_loop(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    hub = await start_hub(ami_server, reconnect_max="0.25s")

    async def connected() -> bool:
        return adapter(hub).state == "connected"

    await wait_for(connected)
    ami_server.secret = "changed-on-the-pbx"
    ami_server.drop_connections()

    async def refused() -> bool:
        return adapter(hub).state == "auth_failed"

    await wait_for(refused)
    await asyncio.sleep(0.6)
    assert ami_server.logins <= 2 + 3  # one per reconnect_max at most, never a spin
    assert "Authentication failed" in (adapter(hub).reason or "")
