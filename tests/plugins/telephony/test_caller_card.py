"""GET /api/v1/caller-card: who is calling, found by the full number in any local format."""

from __future__ import annotations

from datetime import timedelta

from hub import lights
from hub.store.types import utcnow
from tests.plugins.telephony.conftest import ANNA, HEAD, Phones


async def test_a_contact_entered_as_8_912_is_found_for_plus_7_and_for_ten_digits(phones: Phones):
    contact_id = await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    for asked in ("+79123456789", "9123456789", "+7 912 345 67 89", "8-912-345-67-89"):
        card = await phones.card(asked)
        assert card["known"] is True, asked
        assert card["phone"] == "+79123456789"
        assert card["contact"]["id"] == contact_id
        assert card["contact"]["name"] == "Иван Петров"


async def test_an_unknown_number_answers_known_false_with_the_normalized_number(phones: Phones):
    await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    assert await phones.card("8 912 345-67-80") == {"known": False, "phone": "+79123456780"}


async def test_numbers_sharing_the_last_digits_are_not_taken_for_the_caller(phones: Phones):
    await phones.add_client("Москва", "+7 495 345-67-89")
    await phones.add_client("Екатеринбург", "+7 343 345-67-89")
    assert (await phones.card("+7 912 345-67-89"))["known"] is False
    assert (await phones.card("+7 343 345-67-89"))["contact"]["name"] == "Екатеринбург"


async def test_a_number_stored_with_an_extension_is_found_for_the_line(phones: Phones):
    contact_id = await phones.add_client("Бухгалтерия", "+7 495 123-45-67 доб. 12")
    card = await phones.card("84951234567")
    assert card["contact"]["id"] == contact_id
    assert (await phones.card("+7 495 123-45-68"))["known"] is False


async def test_the_card_shows_contact_company_and_owner_with_extension(phones: Phones):
    await phones.add_client(
        "Иван Петров",
        "+7 912 345-67-89",
        company="ООО «Ромашка»",
        city="Пермь",
        segment="b2b",
    )
    contact = (await phones.card("+79123456789"))["contact"]
    assert contact["company"]["name"] == "ООО «Ромашка»"
    assert (contact["city"], contact["segment"]) == ("Пермь", "b2b")
    assert contact["owner"] == {
        "id": phones.user("anna@example.com"),
        "name": "Анна Смирнова",
        "email": "anna@example.com",
        "extension": "101",
    }


async def test_the_card_lists_open_deals_with_stage_amount_and_light(phones: Phones):
    contact_id = await phones.add_client("Иван Петров", "+7 912 345-67-89")
    first = await phones.add_deal(contact_id, "Поставка", amount="150000.00")
    second = await phones.add_deal(contact_id, "Монтаж", stage="proposal")
    await phones.add_deal(contact_id, "Старая", lost=True)
    await phones.add_task(first, "Позвонить", timedelta(hours=-2))  # overdue: red
    await phones.add_task(second, "Отправить КП", timedelta(days=3))
    deals = (await phones.card("+79123456789"))["deals"]
    assert [d["id"] for d in deals] == [second, first]  # open ones, newest first
    assert deals[1]["stage"] == "new"
    assert deals[1]["stage_name"] == "Новая сделка"
    assert (deals[1]["amount"], deals[1]["currency"]) == ("150000.00", "RUB")
    assert deals[1]["light"]["colour"] == "red"
    assert deals[1]["light"]["reasons"]
    assert deals[0]["stage_name"] == "Направить КП"
    assert deals[0]["light"]["colour"] in ("green", "yellow")


async def test_the_cards_light_is_the_light_of_hub_lights(phones: Phones):
    contact_id = await phones.add_client("Иван Петров", "+7 912 345-67-89")
    deal_ids = [await phones.add_deal(contact_id, f"Сделка {i}") for i in range(4)]
    await phones.add_task(deal_ids[0], "Просрочено", timedelta(hours=-1))
    await phones.add_task(deal_ids[1], "Сегодня", timedelta(minutes=5))
    await phones.add_task(deal_ids[2], "Потом", timedelta(days=5))
    deals = (await phones.card("+79123456789"))["deals"]
    assert phones.hub.catalog is not None
    async with phones.hub.store.read() as conn:
        expected = await lights.lights(
            conn, deal_ids, phones.hub.catalog, utcnow(), phones.hub.settings.hub.timezone
        )
    assert {d["id"]: d["light"] for d in deals} == {
        deal_id: light.as_dict() for deal_id, light in expected.items()
    }


async def test_the_card_lists_open_tasks_soonest_first_without_done_ones(phones: Phones):
    contact_id = await phones.add_client("Иван Петров", "+7 912 345-67-89")
    deal_id = await phones.add_deal(contact_id, "Поставка")
    later = await phones.add_task(deal_id, "Выставить счёт", timedelta(days=2))
    sooner = await phones.add_task(deal_id, "Перезвонить", timedelta(hours=1))
    await phones.add_task(deal_id, "Сделано", timedelta(hours=-1), done=True)
    tasks = (await phones.card("+79123456789"))["tasks"]
    assert [t["id"] for t in tasks] == [sooner, later]
    assert all(t["deal_id"] == deal_id for t in tasks)
    assert "Сделано" not in [t["title"] for t in tasks]


async def test_the_card_shows_the_last_three_activities_newest_first(phones: Phones):
    contact_id = await phones.add_client("Иван Петров", "+7 912 345-67-89")
    now = utcnow()
    ids = [
        await phones.add_activity(contact_id, f"Звонок {i}", now - timedelta(days=10 - i))
        for i in range(5)
    ]
    activities = (await phones.card("+79123456789"))["activities"]
    assert [a["id"] for a in activities] == [ids[4], ids[3], ids[2]]
    assert activities[0]["summary"] == "Звонок 4"


async def test_a_manager_sees_who_calls_but_not_another_managers_deals_tasks_or_activities(
    phones: Phones,
):
    contact_id = await phones.add_client(
        "Клиент Дмитрия", "+7 912 345-67-89", owner="dmitry@example.com", city="Омск"
    )
    deal_id = await phones.add_deal(contact_id, "Сделка Дмитрия", owner="dmitry@example.com")
    await phones.add_task(deal_id, "Позвонить", timedelta(hours=1))
    await phones.add_activity(contact_id, "Звонок", utcnow(), deal_id=deal_id)
    card = await phones.card("+79123456789", ANNA)
    assert card["known"] is True
    assert card["limited"] is True
    assert card["contact"]["name"] == "Клиент Дмитрия"
    assert card["contact"]["owner"]["email"] == "dmitry@example.com"  # whom to transfer to
    assert card["contact"]["city"] is None
    assert (card["deals"], card["tasks"], card["activities"]) == ([], [], [])
    head = await phones.card("+79123456789", HEAD)
    assert head["limited"] is False
    assert [d["id"] for d in head["deals"]] == [deal_id]
    assert head["activities"] and head["tasks"]


async def test_a_manager_sees_their_own_deal_of_another_managers_client(phones: Phones):
    contact_id = await phones.add_client(
        "Общий клиент", "+7 912 345-67-89", owner="dmitry@example.com"
    )
    theirs = await phones.add_deal(contact_id, "Дмитрия", owner="dmitry@example.com")
    mine = await phones.add_deal(contact_id, "Анны", owner="anna@example.com")
    await phones.add_task(theirs, "Дмитрию позвонить", timedelta(hours=1))
    await phones.add_task(mine, "Анне позвонить", timedelta(hours=1))
    await phones.add_activity(contact_id, "По сделке Анны", utcnow(), deal_id=mine)
    await phones.add_activity(contact_id, "По сделке Дмитрия", utcnow(), deal_id=theirs)
    await phones.add_activity(contact_id, "Без сделки", utcnow())
    card = await phones.card("+79123456789", ANNA)
    assert [d["id"] for d in card["deals"]] == [mine]
    assert [t["title"] for t in card["tasks"]] == ["Анне позвонить"]
    assert [a["summary"] for a in card["activities"]] == ["По сделке Анны"]


async def test_a_manager_sees_everything_of_their_own_client(phones: Phones):
    contact_id = await phones.add_client("Клиент Анны", "+7 912 345-67-89", city="Пермь")
    deal_id = await phones.add_deal(contact_id, "Поставка")
    await phones.add_activity(contact_id, "Без сделки", utcnow())
    card = await phones.card("+79123456789", ANNA)
    assert card["limited"] is False
    assert card["contact"]["city"] == "Пермь"
    assert [d["id"] for d in card["deals"]] == [deal_id]
    assert [a["summary"] for a in card["activities"]] == ["Без сделки"]


async def test_of_two_contacts_with_one_number_a_manager_gets_their_own_first(phones: Phones):
    await phones.add_client("Секретарь", "+7 495 111-22-33", owner="dmitry@example.com")
    mine = await phones.add_client("Директор", "+7 495 111-22-33")
    card = await phones.card("+74951112233", ANNA)
    assert card["contact"]["id"] == mine
    assert [c["name"] for c in card["other_contacts"]] == ["Секретарь"]


async def test_a_malformed_number_is_a_400_problem(phones: Phones):
    for bad in ("12", "abc", "+7 912 ABC", "1" * 200):
        response = await phones.client.get(
            "/api/v1/caller-card", params={"phone": bad}, headers=HEAD
        )
        assert response.status == 400, bad
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert problem["status"] == 400
        assert "not a phone number" in problem["detail"]
    missing = await phones.client.get("/api/v1/caller-card", headers=HEAD)
    assert missing.status == 400
    assert "phone is required" in (await missing.json())["detail"]


async def test_the_card_needs_a_bearer_token(phones: Phones):
    await phones.add_client("Иван Петров", "+7 912 345-67-89")
    url = "/api/v1/caller-card?phone=%2B79123456789"
    assert (await phones.client.get(url)).status == 401
    wrong = await phones.client.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert "contact" not in await wrong.json()
