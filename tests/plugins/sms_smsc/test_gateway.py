"""What the campaign sender hears back from the SMSC.ru gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hub.campaigns.gateway import NOT_THERE, Accepted, DeliveryReport, Gateway, Permanent, Transient
from hub.plugins import PluginAuthFailed
from plugins.sms_smsc import Smsc
from tests.plugins.sms_smsc.conftest import MakePlugin, corpus, outgoing
from tests.plugins.sms_smsc.fake import LOGIN, PASSWORD, FakeSmsc


async def test_the_plugin_is_one_sms_gateway_named_smsc(plugin: Smsc) -> None:
    (gateway,) = plugin.hub_campaign_gateways()
    assert isinstance(gateway, Gateway)
    assert (gateway.name, gateway.channel) == ("smsc", "sms")


async def test_a_message_goes_under_our_id_as_utf8_json_and_its_parts_and_cost_are_kept(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    accepted = await plugin.send(outgoing(text="Скидка 10% до пятницы 🎉"))

    assert accepted == Accepted(provider_id="41:79161234567", parts=1, cost=Decimal("2.18"))
    script, form = smsc.requests[-1]
    assert script == "send.php"
    assert form == {
        "login": LOGIN,
        "psw": PASSWORD,
        "fmt": "3",
        "charset": "utf-8",
        "phones": "79161234567",
        "mes": "Скидка 10% до пятницы 🎉",
        "cost": "3",
        "id": "41",
        "sender": "ZavodRu",
    }


async def test_the_documented_success_answer_gives_id_parts_and_cost(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.script.append((200, json.loads(corpus("send_fmt3_ok_cost3.json").read_text()), {}))

    accepted = await plugin.send(outgoing())

    assert accepted == Accepted(provider_id="1002:79161234567", parts=1, cost=Decimal("2.18"))


async def test_a_number_the_provider_rejects_is_a_permanent_failure_with_its_reason_in_words(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.refused["79161234567"] = 7

    with pytest.raises(Permanent) as failure:
        await plugin.send(outgoing())

    assert (failure.value.code, failure.value.reason) == ("7", "неверный формат номера телефона")


async def test_the_documented_error_answer_is_a_permanent_failure(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.script.append((200, json.loads(corpus("send_fmt3_error_with_id.json").read_text()), {}))

    with pytest.raises(Permanent) as failure:
        await plugin.send(outgoing())

    assert failure.value.code == "6"
    assert failure.value.reason == "сообщение запрещено (по тексту или по имени отправителя)"


async def test_no_money_on_the_account_is_a_permanent_failure(plugin: Smsc, smsc: FakeSmsc) -> None:
    smsc.refused["79161234567"] = 3

    with pytest.raises(Permanent, match="недостаточно средств"):
        await plugin.send(outgoing())


async def test_an_ip_blocked_for_frequent_errors_is_tried_again_in_a_minute(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.request_error = 4

    with pytest.raises(Transient) as failure:
        await plugin.send(outgoing())

    assert failure.value.after == timedelta(minutes=1)


async def test_a_repeat_after_a_lost_answer_is_taken_as_sent_and_not_sent_twice(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.stall_after_storing = True
    with pytest.raises(Transient):
        await plugin.send(outgoing())

    accepted = await plugin.send(outgoing(attempt=2))  # SMSC answers 9: the same request

    assert accepted.provider_id == "41:79161234567"
    assert len(smsc.messages) == 1


async def test_http_429_is_tried_again_after_its_retry_after(plugin: Smsc, smsc: FakeSmsc) -> None:
    smsc.script.append((429, "Too Many Requests", {"Retry-After": "12"}))

    with pytest.raises(Transient) as failure:
        await plugin.send(outgoing())

    assert failure.value.after == timedelta(seconds=12)


async def test_a_server_error_is_tried_again(plugin: Smsc, smsc: FakeSmsc) -> None:
    smsc.script.append((503, "<html>Service Unavailable</html>", {}))

    with pytest.raises(Transient, match="HTTP 503"):
        await plugin.send(outgoing())


async def test_a_provider_that_stalls_past_the_timeout_is_tried_again(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.delay = 1.0

    with pytest.raises(Transient, match=r"no answer within 0\.2s"):
        await plugin.send(outgoing())


async def test_after_a_crash_a_message_smsc_has_is_found_as_sent(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.stall_after_storing = True
    with pytest.raises(Transient):
        await plugin.send(outgoing())  # the process "died" waiting for this answer

    assert await plugin.find(outgoing()) == Accepted(provider_id="41:79161234567")
    script, form = smsc.requests[-1]
    assert (script, form["id"], form["phone"]) == ("status.php", "41", "79161234567")


async def test_after_a_crash_a_message_smsc_never_got_is_not_there(plugin: Smsc) -> None:
    assert await plugin.find(outgoing()) is NOT_THERE


async def test_a_row_id_beyond_smscs_range_cannot_be_found(plugin: Smsc, smsc: FakeSmsc) -> None:
    assert await plugin.find(outgoing(id=2**31)) is None
    await plugin.send(outgoing(id=2**31))
    assert "id" not in smsc.requests[-1][1]


async def test_polled_statuses_become_delivery_reports_with_the_failure_in_words(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.messages[(1, "79161234567")] = {"status": 1}
    smsc.messages[(2, "79161234568")] = {"status": 22, "err": 1}
    smsc.messages[(3, "79161234569")] = {"status": 0}

    reports = await plugin.status(
        ["1:79161234567", "2:79161234568", "3:79161234569", "4:79161234560"]
    )

    at = datetime.fromtimestamp(1710487331, UTC)
    assert reports == [
        DeliveryReport("1:79161234567", "delivered", at=at),
        DeliveryReport("2:79161234568", "failed", error="неверный номер (код ошибки 1)", at=at),
        DeliveryReport("3:79161234569", "sent"),
    ]


async def test_the_documented_status_answer_is_read_as_delivered(
    plugin: Smsc, smsc: FakeSmsc
) -> None:
    smsc.script.append((200, json.loads(corpus("status_fmt3_delivered.json").read_text()), {}))

    (report,) = await plugin.status(["1001:79161234567"])

    assert report.state == "delivered"


async def test_wrong_credentials_at_start_up_are_an_auth_failure(make_plugin: MakePlugin) -> None:
    with pytest.raises(PluginAuthFailed, match="login and password"):
        await make_plugin(password="wrong")
