"""Kill the daemon with SIGKILL several times while it sends a 10,000-recipient SMS
campaign, start it again each time: every eligible recipient gets exactly one message,
and nobody outside the segment or opted out gets any.

The daemon is ``hub run`` on the example config with the SMSC gateway pointed at a local
server that speaks SMSC's HTTP API (``tests.plugins.sms_smsc.fake``) and counts every
message it takes, repeats included (as SMSC does after a minute). Killed mid-batch, rows
are left claimed ("sending"); the restarted sender waits out their lease, asks SMSC's
``status.php`` about each, and takes a found one as sent and sends a missing one again.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.commands.common import offline_hub
from hub.config import load_settings
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.domain.normalize import phone_point
from tests.e2e.daemon import Daemon, free_port, write_config
from tests.plugins.sms_smsc.fake import LOGIN, PASSWORD, FakeSmsc

pytestmark = pytest.mark.slow

ELIGIBLE = 10_000
RETAIL = 300  # outside the segment
OPTED_OUT = 200  # in the segment, consent withdrawn
NO_CONSENT = 200  # in the segment, never asked
# Messages taken by the gateway when the daemon is killed: not on a batch's edge (a batch
# is a quarter second at the rate), so the kill cuts one in the middle.
KILLS_AT = (1_610, 4_777, 7_333)


def phone(i: int) -> str:
    return f"+7916{i:07d}"


def config_with_smsc(folder: Path, store_url: str, port: int, smsc_port: int) -> Path:
    path = write_config(folder, store_url, port)
    text = path.read_text()
    text = text.replace('lease = "60s"', 'lease = "2s"')
    text = text.replace('poll_every = "1s" ', 'poll_every = "0.2s" ')
    # The plugin's own section in the example is disabled; the test's replaces it.
    start = text.index("[plugins.sms_smsc]")
    end = text.index("\n[", start + 1)
    text = (
        text[:start]
        + f"""[plugins.sms_smsc]
login = "{LOGIN}"
password = "{PASSWORD}"
base_url = "http://127.0.0.1:{smsc_port}"
rate = 1000
concurrency = 32
timeout = "5s"
"""
        + text[end:]
    )
    path.write_text(text)
    return path


async def seed(hub: Any) -> None:
    """The contacts, through the writer as an import would write them."""
    people: list[tuple[str, str, bool | None]] = (
        [("Опт", phone(i), True) for i in range(ELIGIBLE)]
        + [("Розница", phone(ELIGIBLE + i), True) for i in range(RETAIL)]
        + [("Опт", phone(20_000 + i), False) for i in range(OPTED_OUT)]
        + [("Опт", phone(30_000 + i), None) for i in range(NO_CONSENT)]
    )
    for start in range(0, len(people), 500):
        creates: list[ch.Change] = []
        consents: list[ch.Change] = []
        for n, (segment, number, consent) in enumerate(people[start : start + 500], start):
            create = ch.CreateContact(
                name=f"Клиент {n}", segment=segment, points=[phone_point(number, "RU")]
            )
            creates.append(create)
            if consent is not None:
                consents.append(
                    ch.SetConsent(
                        contact=create, channel="sms", granted=consent, source="import:test"
                    )
                )
        # Runs of one kind are written as one statement each: creates first, then consents.
        changes = creates + consents
        await hub.deals.apply(changes, SYSTEM)


async def test_a_campaign_killed_mid_send_and_restarted_reaches_everyone_exactly_once(
    tmp_path: Path,
) -> None:
    smsc = FakeSmsc(refuse_repeats=False)
    runner = web.AppRunner(smsc.app())
    await runner.setup()
    smsc_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", smsc_port).start()
    port = free_port()
    config = config_with_smsc(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", port, smsc_port
    )
    settings = load_settings(config)
    async with offline_hub(settings) as hub:
        await seed(hub)
        campaign = await hub.campaigns.create(
            name="Новые оптовые цены",
            segment="wholesale",
            channel="sms",
            gateway="smsc",
            text="{{ contact.name }}, с 1 января новые оптовые цены. Керамика",
            actor=SYSTEM,
            quiet_hours="",  # the test may run at night
        )
        started = await hub.campaigns.start(campaign, SYSTEM)
    assert started["queued"] == ELIGIBLE

    daemon = Daemon(config, port)
    try:
        for kill_at in KILLS_AT:
            daemon.start()
            await daemon.ready()
            deadline = asyncio.get_running_loop().time() + 120
            while sum(smsc.sends.values()) < kill_at:
                assert asyncio.get_running_loop().time() < deadline, daemon.log()
                assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
                await asyncio.sleep(0.01)
            daemon.kill()
        daemon.start()
        await daemon.ready()
        async with offline_hub(settings) as hub:
            deadline = asyncio.get_running_loop().time() + 180
            while (status := await hub.campaigns.status(campaign))["campaign"]["state"] != (
                "finished"
            ):
                assert asyncio.get_running_loop().time() < deadline, (status, daemon.log())
                await asyncio.sleep(0.2)
        assert daemon.terminate() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
        await runner.cleanup()

    assert status["states"] == {"sent": ELIGIBLE, "skipped": OPTED_OUT + NO_CONSENT}
    assert status["skipped"] == {"opted_out": OPTED_OUT, "no_consent": NO_CONSENT}
    wanted = {phone(i)[1:] for i in range(ELIGIBLE)}
    twice = {number: n for number, n in smsc.sends.items() if n > 1}
    assert not twice, f"{len(twice)} recipients got the message more than once"
    assert set(smsc.sends) == wanted, (
        f"{len(wanted - set(smsc.sends))} recipients missed, "
        f"{len(set(smsc.sends) - wanted)} outside the campaign reached"
    )
    # Both kinds of interrupted send were met: taken by SMSC before the kill (found by
    # status.php, recorded as sent) and never sent (not found, sent now).
    settled = Counter(
        line["now"]
        for line in map(json.loads, _json_lines(tmp_path / "hub.log"))
        if line.get("event") == "campaign_message_interrupted"
    )
    assert settled["sent"] > 0 and settled["queued"] > 0, settled
    texts = {form["mes"] for form in smsc.messages.values()}
    assert "Клиент 0, с 1 января новые оптовые цены. Керамика" in texts


def _json_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("{")]
