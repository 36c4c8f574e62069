"""An email campaign the whole way: a segment's contacts with consent get one letter each
through a real SMTP server (aiosmtpd), with the unsubscribe headers of RFC 8058; the
one-click POST records the opt-out, and the next campaign skips that contact."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import build_app
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.domain.normalize import Point
from hub.store.models import CampaignMessage, Consent
from plugins.email_notify import EmailNotifier
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.email_notify.conftest import SENDER

PEOPLE = [
    # name, city, email, consent
    ("Иванов Пётр Сергеевич", "Самара", "petr@zavod.ru", True),
    ("Мария Орлова", "Самара", "maria@torg.ru", True),
    ("Олег Белов", "Самара", "oleg@torg.ru", False),  # never agreed: no advert for him
    ("Анна Белова", "Самара", "maria@torg.ru", True),  # Maria's address too: once only
    ("Сергей Котов", "Казань", "kotov@mail.ru", True),  # not in the segment
    ("Нина Без Почты", "Самара", None, True),
]


def settings(url: str, port: int, **extra: Any) -> Any:
    return make_settings(
        url,
        campaigns={
            "public_url": "https://crm.example.ru",
            "quiet_hours": None,
            "poll_every": "0.05s",
        },
        segments={"samara": {"title": "Клиенты из Самары", "cities": ["самара"]}},
        plugins={
            "email_notify": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "sender": SENDER,
                "campaign_rate": 50,
            }
        },
        **extra,
    )


async def people(hub: Any) -> dict[str, int]:
    ids = {}
    for name, city, address, consent in PEOPLE:
        points = [Point("email", address, address)] if address else []
        create = ch.CreateContact(name=name, city=city, points=points)
        changes: list[ch.Change] = [create]
        if consent:
            changes.append(
                ch.SetConsent(contact=create, channel="email", granted=True, source="form:seminar")
            )
        await hub.deals.apply(changes, SYSTEM)
        ids[name] = create.id
    return ids


async def test_an_email_campaign_reaches_each_consenting_address_of_the_segment_once(
    smtp_server, mailbox, aiohttp_client, store_url
):
    server = smtp_server()
    hub = make_hub(settings(store_url, server.port), {"email_notify": EmailNotifier})
    client: TestClient = await aiohttp_client(build_app(hub))
    ids = await people(hub)
    head = {"Authorization": "Bearer head-token-0123456789"}

    created = await client.post(
        "/api/v1/campaigns",
        headers=head,
        json={
            "name": "Семинар в Самаре",
            "segment": "samara",
            "channel": "email",
            "subject": "{{ contact.first_name or 'Коллеги' }}, приглашаем на семинар",
            "text": "Здравствуйте, {{ contact.first_name or 'коллеги' }}!\n"
            "Ждём вас 12 декабря. Отписаться: {{ unsubscribe_url }}",
        },
    )
    assert created.status == 201, await created.text()
    campaign = (await created.json())["id"]

    dry = await (await client.post(f"/api/v1/campaigns/{campaign}/dry-run", headers=head)).json()
    assert dry["segment_size"] == 5 and dry["would_send"] == 2
    assert dry["skipped"] == {"no_consent": 1, "no_address": 1, "same_address": 1}
    assert mailbox.received == []  # a dry run sends nothing

    started = await (await client.post(f"/api/v1/campaigns/{campaign}/start", headers=head)).json()
    assert started["queued"] == 2

    async def finished() -> bool:
        status = await (await client.get(f"/api/v1/campaigns/{campaign}", headers=head)).json()
        return status["campaign"]["state"] == "finished"

    await wait_for(finished)
    assert sorted(r.rcpt_tos[0] for r in mailbox.received) == [
        "maria@torg.ru",
        "petr@zavod.ru",
    ]
    petr = next(r.message for r in mailbox.received if r.rcpt_tos == ["petr@zavod.ru"])
    assert str(petr["Subject"]) == "Пётр, приглашаем на семинар"
    assert "Здравствуйте, Пётр!" in petr.get_content()
    assert petr["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(petr["List-Unsubscribe"]).strip().strip("<>")
    assert link.startswith("https://crm.example.ru/unsubscribe/")
    assert link in petr.get_content()

    # The mail client's one-click unsubscribe, as RFC 8058 describes it: a POST, no login.
    path = link.removeprefix("https://crm.example.ru")
    answer = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status == 200
    assert "Вы отписались" in await answer.text()
    async with hub.store.read() as conn:
        consent = (
            await conn.execute(
                select(Consent).where(Consent.contact_id == ids["Иванов Пётр Сергеевич"])
            )
        ).one()
    assert consent.granted is False and consent.source == f"unsubscribe:campaign:{campaign}"

    again = await client.post(
        "/api/v1/campaigns",
        headers=head,
        json={
            "name": "Семинар, напоминание",
            "segment": "samara",
            "channel": "email",
            "subject": "Напоминание",
            "text": "Завтра семинар.",
        },
    )
    second = (await again.json())["id"]
    started = await (await client.post(f"/api/v1/campaigns/{second}/start", headers=head)).json()
    assert started["queued"] == 1 and started["skipped"]["opted_out"] == 1
    await wait_for(lambda: _finished(hub, second))
    assert [r.rcpt_tos for r in mailbox.received[2:]] == [["maria@torg.ru"]]


async def _finished(hub: Any, campaign: int) -> bool:
    async with hub.store.read() as conn:
        states = (
            (
                await conn.execute(
                    select(CampaignMessage.state).where(CampaignMessage.campaign_id == campaign)
                )
            )
            .scalars()
            .all()
        )
    return bool(states) and "queued" not in states and "sending" not in states


async def test_a_forged_unsubscribe_link_changes_nothing(smtp_server, aiohttp_client, sqlite_url):
    server = smtp_server()
    hub = make_hub(settings(sqlite_url, server.port), {"email_notify": EmailNotifier})
    client = await aiohttp_client(build_app(hub))
    await people(hub)
    answer = await client.post("/unsubscribe/1.1.email.AAAAAAAAAAAAAAAAAAAAAA")
    assert answer.status == 404
    assert "недействительна" in await answer.text()
    async with hub.store.read() as conn:
        withdrawn = (await conn.execute(select(Consent).where(Consent.granted.is_(False)))).all()
    assert withdrawn == []


def test_a_new_user_creates_previews_starts_and_reports_a_campaign_from_the_cli(
    smtp_server, mailbox, tmp_path
):
    import asyncio

    from click.testing import CliRunner

    from hub.cli import main
    from hub.config import load_settings
    from hub.context import Hub
    from tests.conftest import ROOT

    server = smtp_server()
    config = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace(
        '[plugins.email_notify]\nenabled = false\nhost = "smtp.example.ru"',
        f'[plugins.email_notify]\nenabled = true\nhost = "127.0.0.1"\nport = {server.port}',
    ).replace('security = "starttls"         # starttls', 'security = "none"         # starttls')
    text = text.replace('user = "crm@example.ru"       # set both', '# user = "x"  # set both')
    # The SMTP account's password only (the first): the SMS gateways keep theirs.
    text = text.replace('password = "change-me"        # better', '# password = "x"  # better', 1)
    config.write_text(text)

    async def seed() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        await hub.stop()
        hub = Hub(load_settings(config), start_workers=False)
        await hub.start()
        for name, address in (("Пётр Иванов", "petr@zavod.ru"), ("Мария Орлова", "maria@torg.ru")):
            create = ch.CreateContact(
                name=name, city="Самара", points=[Point("email", address, address)]
            )
            await hub.deals.apply(
                [
                    create,
                    ch.SetConsent(
                        contact=create, channel="email", granted=True, source="import:test"
                    ),
                ],
                SYSTEM,
            )
        await hub.stop()

    asyncio.run(seed())
    runner = CliRunner()
    base = ["--config", str(config)]
    preview = runner.invoke(main, [*base, "segments", "preview", "samara_seminar"])
    assert preview.exit_code == 0, preview.output
    assert "samara_seminar: 2 контактов" in preview.output
    created = runner.invoke(
        main,
        [*base, "campaigns", "create", "seminar", "--segment", "samara_seminar",
         "--channel", "email", "--subject", "Семинар",
         "--text", "Здравствуйте, {{ contact.first_name }}!", "--dry-run", "--quiet-hours", "off"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "будет отправлено: 2" in created.output
    assert "Здравствуйте, Пётр!" in created.output
    assert mailbox.received == []
    started = runner.invoke(main, [*base, "campaigns", "start", "seminar"])
    assert started.exit_code == 0, started.output
    assert "queued: 2" in started.output

    async def daemon() -> None:  # `make run`: the daemon sends what was queued
        hub = Hub(load_settings(config))
        await hub.start()
        deadline = asyncio.get_running_loop().time() + 10
        while len(mailbox.received) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await hub.stop()

    asyncio.run(daemon())
    assert sorted(r.rcpt_tos[0] for r in mailbox.received) == ["maria@torg.ru", "petr@zavod.ru"]
    report = runner.invoke(main, [*base, "campaigns", "report", "seminar"])
    assert report.exit_code == 0, report.output
    assert "sent: 2" in report.output
