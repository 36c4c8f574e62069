"""What the campaign sender hears back from the SMS.ru gateway."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hub.campaigns.gateway import Accepted, DeliveryReport, Gateway, Permanent, Transient
from hub.plugins import PluginAuthFailed
from plugins.sms_smsru import SmsRu
from tests.plugins.sms_smsru.conftest import MakePlugin, corpus, outgoing
from tests.plugins.sms_smsru.fake import API_ID, FakeSmsRu


async def test_the_plugin_is_one_sms_gateway_named_smsru(plugin: SmsRu) -> None:
    (gateway,) = plugin.hub_campaign_gateways()
    assert isinstance(gateway, Gateway)
    assert (gateway.name, gateway.channel, gateway.rate, gateway.concurrency) == (
        "smsru",
        "sms",
        5.0,
        4,
    )


async def test_a_message_goes_as_a_utf8_form_with_the_number_in_digits_and_its_sms_id_is_kept(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    accepted = await plugin.send(outgoing(text="Скидка 10% до пятницы 🎉"))

    assert accepted == Accepted(provider_id="000000-10000000")
    method, form = smsru.requests[-1]
    assert method == "sms/send"
    assert form == {
        "api_id": API_ID,
        "json": "1",
        "to": "79161234567",
        "msg": "Скидка 10% до пятницы 🎉",
        "from": "ZavodRu",
    }


async def test_the_campaigns_own_sender_name_wins_over_the_configured_one(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    await plugin.send(outgoing(sender="Akcia"))

    assert smsru.requests[-1][1]["from"] == "Akcia"


async def test_the_documented_answer_gives_the_sms_id_of_the_accepted_number(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    answer = json.loads(corpus("send_response_json1.json").read_text())
    smsru.script.append((200, answer, {}))

    accepted = await plugin.send(outgoing("+79255070602"))

    assert accepted.provider_id == "000000-10000000"


async def test_a_number_the_provider_rejects_is_a_permanent_failure_with_its_reason_in_words(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    answer = json.loads(corpus("send_response_json1.json").read_text())
    smsru.script.append((200, answer, {}))

    with pytest.raises(Permanent) as failure:
        await plugin.send(outgoing("+74993221627"))

    assert failure.value.code == "207"
    assert failure.value.reason.startswith("На этот номер (или один из номеров) нельзя отправлять")


async def test_no_money_on_the_account_is_a_permanent_failure(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.script.append((200, {"status": "ERROR", "status_code": 201}, {}))

    with pytest.raises(Permanent) as failure:
        await plugin.send(outgoing())

    assert failure.value.code == "201"
    assert failure.value.reason == "не хватает средств на лицевом счету"


async def test_a_service_that_says_try_later_is_a_transient_failure(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.request_error = 220

    with pytest.raises(Transient) as failure:
        await plugin.send(outgoing())

    assert "220" in failure.value.reason


async def test_a_daily_limit_waits_an_hour_before_trying_again(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.refused["79161234567"] = 230

    with pytest.raises(Transient) as failure:
        await plugin.send(outgoing())

    assert failure.value.after == timedelta(hours=1)


async def test_http_429_is_tried_again_after_its_retry_after(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.script.append((429, "Too Many Requests", {"Retry-After": "7"}))

    with pytest.raises(Transient) as failure:
        await plugin.send(outgoing())

    assert failure.value.after == timedelta(seconds=7)


async def test_a_server_error_is_tried_again(plugin: SmsRu, smsru: FakeSmsRu) -> None:
    smsru.script.append((502, "<html>Bad Gateway</html>", {}))

    with pytest.raises(Transient, match="HTTP 502"):
        await plugin.send(outgoing())


async def test_a_provider_that_stalls_past_the_timeout_is_tried_again(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.delay = 1.0

    with pytest.raises(Transient, match=r"no answer within 0\.2s"):
        await plugin.send(outgoing())


async def test_an_address_that_is_not_a_phone_number_fails_without_asking_smsru(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    before = len(smsru.requests)
    with pytest.raises(Permanent):
        await plugin.send(outgoing("8 916 123-45-67"))
    assert len(smsru.requests) == before


async def test_after_a_crash_smsru_cannot_tell_whether_a_message_went(plugin: SmsRu) -> None:
    assert await plugin.find(outgoing()) is None


async def test_polled_statuses_become_delivery_reports_with_the_failure_in_words(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    smsru.statuses = {"000000-1": 103, "000000-2": 104, "000000-3": 102}

    reports = await plugin.status(["000000-1", "000000-2", "000000-3", "000000-4"])

    assert reports == [
        DeliveryReport("000000-1", "delivered"),
        DeliveryReport("000000-2", "failed", error="не может быть доставлено: время жизни истекло"),
        DeliveryReport("000000-3", "sent"),
    ]
    assert smsru.requests[-1][1]["sms_id"] == "000000-1,000000-2,000000-3,000000-4"


async def test_the_documented_status_answer_is_read_as_delivered(
    plugin: SmsRu, smsru: FakeSmsRu
) -> None:
    answer = json.loads(corpus("status_response_json1_partial.json").read_text())
    smsru.script.append((200, answer, {}))

    assert await plugin.status(["000000-000001"]) == [DeliveryReport("000000-000001", "delivered")]


async def test_a_wrong_api_id_at_start_up_is_an_auth_failure(make_plugin: MakePlugin) -> None:
    with pytest.raises(PluginAuthFailed, match="api_id"):
        await make_plugin(api_id="wrong")


async def test_the_balance_check_can_be_turned_off(
    make_plugin: MakePlugin, smsru: FakeSmsRu
) -> None:
    await make_plugin(check_balance=False)
    assert smsru.requests == []
