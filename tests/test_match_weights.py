"""Probabilistic matching: partial weights a person can read, disagreement as evidence
against, frequencies from the store, a model learned from it, clusters checked at their
weakest link."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hub.cli import main
from hub.dedupe import link, scan
from hub.domain.matching import Candidate, Evidence, Incoming, score
from hub.domain.normalize import Point
from hub.domain.weights import MatchModel
from hub.store.models import Contact, ContactPoint
from hub.store.types import utcnow
from tests.conftest import ROOT, seed_contacts
from tests.test_import_report import config, run_import  # noqa: F401 (a fixture)
from tests.test_matching import lead, run_hub, submit

PHONE = ("phone", "+79123456789")


def incoming(name: str | None, *points: tuple[str, str], **extra: str | None) -> Incoming:
    return Incoming(
        name,
        extra.pop("company", None),
        extra.pop("city", None),
        [Point(k, n, n) for k, n in points],
        **extra,
    )


def known(name: str | None, *points: tuple[str, str], **extra: str | None) -> Candidate:
    return Candidate(
        1, name, extra.pop("company", None), extra.pop("city", None), None, set(points), **extra
    )


def test_the_reasons_are_partial_weights_and_the_score_is_a_match_probability():
    result = score(incoming("Ольга Лебедева", PHONE), known("Константин Белов", PHONE))
    assert 0.0 < result.value < 0.5
    assert result.reasons[0].startswith("same phone +")
    assert any(r.startswith("first name differs") and "−" in r for r in result.reasons)
    assert result.describe().startswith(f"{result.value:.2f}: same phone +")


def test_the_same_phone_and_the_same_name_across_alphabets_is_near_certain():
    result = score(incoming("Sokolov Dmitriy", PHONE), known("Дмитрий Соколов", PHONE))
    assert result.value > 0.999
    assert any(r.startswith("last name equal +") for r in result.reasons)


def test_a_surname_of_the_other_gender_on_one_phone_is_not_the_same_person():
    result = score(incoming("Васильева", PHONE), known("Васильев", PHONE))
    assert result.value < 0.9
    assert any(r.startswith("last name of the other gender −") for r in result.reasons)
    assert any(r.startswith("different gender −") for r in result.reasons)


def test_a_city_in_another_alphabet_is_the_same_city_and_another_city_weighs_against():
    same = score(incoming("Иван Петров", city="Samara"), known("Петров Иван", city="Самара"))
    other = score(incoming("Иван Петров", city="Пермь"), known("Петров Иван", city="Самара"))
    assert any(r.startswith("same city +") for r in same.reasons)
    assert any(r.startswith("different city −") for r in other.reasons)
    assert other.value < same.value


def test_a_different_patronymic_and_birth_date_tell_namesakes_apart():
    one = incoming("Петров Иван Сергеевич", birth_date="1985-03-12")
    same = score(one, known("Иван Сергеевич Петров", birth_date="1985-03-12"))
    namesake = score(one, known("Петров Иван Андреевич", birth_date="1990-07-01"))
    assert same.value > 0.99
    assert namesake.value < 0.01
    assert any(r.startswith("different patronymic −") for r in namesake.reasons)
    assert any(r.startswith("different birth date −") for r in namesake.reasons)


def test_a_rare_surname_is_stronger_evidence_than_a_common_one():
    model = MatchModel.default()
    model.frequencies = {"last_name": {"ivanov": 0.05, "shkuropatov": 0.00001, "": 0.00001}}
    common = score(incoming("Иванов Пётр", PHONE), known("Пётр Иванов"), model=model)
    rare = score(incoming("Шкуропатов Пётр", PHONE), known("Пётр Шкуропатов"), model=model)
    assert rare.value > common.value
    assert any("last name equal (rare) +" in r for r in rare.reasons)
    assert any("last name equal (common) +" in r for r in common.reasons)


class CardMatcher:
    name = "card"

    def evidence(self, lead, candidate):
        return [Evidence(0.99, "same loyalty card"), Evidence(0.5, "card expired", doubt=True)]


def test_a_plugin_matchers_evidence_is_shown_as_a_partial_weight():
    result = score(incoming(None, ("phone", "+78172223344")), known(None), [CardMatcher()])
    assert any(r.startswith("same loyalty card +") for r in result.reasons)
    assert any(r.startswith("card expired −") for r in result.reasons)
    assert result.value > 0.5


@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_stronger_support_from_a_plugin_never_lowers_the_score(a, b):
    weak, strong = sorted((a, b))

    class One:
        name = "one"

        def __init__(self, weight: float) -> None:
            self.weight = weight

        def evidence(self, lead, candidate):
            return [Evidence(self.weight, "card")]

    lead_, contact = incoming("Иван", PHONE), known("Иван Петров", PHONE)
    assert score(lead_, contact, [One(strong)]).value >= score(lead_, contact, [One(weak)]).value


async def test_vasiliev_and_vasilieva_sharing_an_office_phone_stay_apart(store_url):
    hub = await run_hub(store_url)
    try:
        office = "+7 (846) 222-33-44"
        him = await submit(hub, lead("Васильев Игорь", office, company="Ромашка"))
        her = await submit(hub, lead("Васильева Марина", office, company="Ромашка"))
        assert her["contact_id"] != him["contact_id"]
        surname_only = await submit(hub, lead("Васильева", office))
        assert surname_only["contact_id"] != him["contact_id"]
    finally:
        await hub.stop()


async def test_a_namesake_at_the_same_company_with_a_different_phone_and_mailbox_stays_apart(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead(
                "Ирина Волкова",
                "+7 912 800-00-01",
                "info@romashka.ru",
                company="Ромашка",
                emails=["info@romashka.ru", "irina.volkova@mail.ru"],
            ),
        )
        other = await submit(
            hub,
            lead(
                "Волкова Ирина",
                "+7 912 800-00-02",
                company="Ромашка",
                emails=["info@romashka.ru", "i.volkova77@gmail.com"],
            ),
        )
        assert other["contact_id"] != first["contact_id"]
        assert "different mobile −" in other.get("match", "different mobile −")
    finally:
        await hub.stop()


def test_a_chain_is_cut_at_its_weakest_link():
    # A~B and B~C are strong; A and C disagree: one merge of all three is never proposed.
    scored = {(1, 2): (0.999, ()), (2, 3): (0.995, ())}
    clusters, apart = link(scored, 0.99, lambda a, b: 0.001 if (a, b) == (1, 3) else None)
    assert clusters == {1: 1, 2: 1}
    assert apart == {(2, 3): ((1, 3), 0.001)}


async def _contacts(hub, people) -> None:
    now = utcnow()
    async with hub.store.write() as conn:
        await conn.execute(
            Contact.__table__.insert(),
            [
                {"id": i, "name": n, "custom": {}, "created_at": now, "updated_at": now}
                for i, n, _ in people
            ],
        )
        await conn.execute(
            ContactPoint.__table__.insert(),
            [
                {"contact_id": i, "kind": "phone", "value": p, "normalized": p, "created_at": now}
                for i, _, phones in people
                for p in phones
            ],
        )


async def test_dedupe_scan_does_not_propose_a_chain_whose_ends_are_different_people(store_url):
    hub = await run_hub(store_url)
    try:
        await _contacts(
            hub,
            [
                (1, "Иван Петров", ["+79120000001"]),
                (2, None, ["+79120000001", "+79120000002"]),  # a record with no name
                (3, "Мария Морозова", ["+79120000002"]),
            ],
        )
        pairs, _ = await scan(hub.store, hub.settings)
        by_pair = {(p.a, p.b): p for p in pairs}
        assert by_pair[(1, 2)].score >= hub.settings.matching.join
        assert by_pair[(2, 3)].score >= hub.settings.matching.join
        clusters = {p.cluster for p in pairs if p.cluster is not None}
        assert len(clusters) == 1
        kept_apart = [p for p in pairs if p.kept_apart]
        assert len(kept_apart) == 1
        assert "kept apart: 1 and 3 differ" in kept_apart[0].reasons[-1]
    finally:
        await hub.stop()


async def test_an_import_without_phone_or_email_finds_duplicates_among_its_rows(
    store_url, tmp_path: Path
):
    path = tmp_path / "legacy.csv"
    path.write_text(
        "Фамилия;Имя;Отчество;Дата рождения;Адрес\n"
        "Васильева;Марина;Петровна;12.03.1985;Самара, ул. Ленина, д. 1, кв. 5\n"
        "Vasileva;Marina;;1985-03-12;Samara, ul. Lenina, d. 1, kv. 5\n"
        "Васильева;Марина;Игоревна;30.07.1990;Пермь, ул. Мира, д. 7, кв. 2\n"
    )
    hub = await run_hub(store_url)
    try:
        report = await run_import(hub, path, system="1c")
        rows = sorted(report.rows, key=lambda r: r.row)
        assert [r.decision for r in rows] == ["created", "merged", "created"]
        ids = [r.contact_id for r in rows]
        assert ids[1] == ids[0] and ids[2] != ids[0]  # the namesake born 1990 stays apart
        assert "same birth date +" in rows[1].reasons
        assert "same address +" in rows[1].reasons
        pairs, _ = await scan(hub.store, hub.settings)
        assert not [p for p in pairs if p.cluster is not None]  # nothing left to merge
    finally:
        await hub.stop()


def test_train_writes_a_versioned_model_that_model_prints_as_a_table(config):  # noqa: F811
    runner = CliRunner()
    base = ["--config", str(config)]
    example = str(ROOT / "examples" / "contacts.csv")
    imported = runner.invoke(main, [*base, "import", "contacts", example])
    assert imported.exit_code == 0, imported.output
    before = runner.invoke(main, [*base, "dedupe", "model"])
    assert "version 0: the built-in defaults" in before.output
    trained = runner.invoke(main, [*base, "dedupe", "train"])
    assert trained.exit_code == 0, trained.output
    assert "model version 1 written to" in trained.output
    assert (config.parent / "var" / "match_model.json").exists()
    shown = runner.invoke(main, [*base, "dedupe", "model"])
    assert "version 1, trained" in shown.output
    assert re.search(r"^phone +equal +same phone ", shown.output, re.M)
    assert "shared home phone" in shown.output
    # The state numbers and source-system ids are fields of the model, too.
    assert re.search(r"^snils +differs +different СНИЛС ", shown.output, re.M)
    assert re.search(r"^personal_tax_id +equal +same personal ИНН ", shown.output, re.M)
    assert re.search(
        r"^external_id +differs +different external id, same system ", shown.output, re.M
    )
    again = runner.invoke(main, [*base, "dedupe", "train"])
    assert "model version 2 written to" in again.output


HOME = ("phone", "+74872220011")  # a landline
OFFICE = ("phone", "+78462223344")


def test_a_couple_on_one_home_landline_stays_apart():
    her = incoming("Коваленко Марина Олеговна", HOME)
    him = known("Коваленко Дмитрий Сергеевич", HOME, ("email", "d.kovalenko@yandex.ru"))
    result = score(her, him)
    assert result.value < 0.5
    assert any(r.startswith("same landline +") for r in result.reasons)


def test_a_couple_on_one_home_landline_at_one_address_is_not_counted_twice():
    home = {"city": "Тула", "address": "Тула, ул. Гагарина, д. 105, кв. 176"}
    her = incoming("Коваленко Марина Олеговна", HOME, birth_date="1976-08-11", **home)
    him = known("Коваленко Дмитрий Сергеевич", HOME, birth_date="1979-02-05", **home)
    result = score(her, him)
    # The phone and the address both say they live together; that is not one person.
    assert result.value < 0.5
    assert not any(r.startswith("same address") for r in result.reasons)
    # Without the home phone, the same address is the evidence that they live together.
    apart = score(incoming("Коваленко Марина Олеговна", **home), known("Коваленко Марина", **home))
    assert any(r.startswith("same address +") for r in apart.reasons)


def test_colleagues_on_one_office_line_with_own_mobiles_differ_by_their_mobiles():
    one = incoming("Иван Белов", OFFICE, ("phone", "+79125550001"), shared={OFFICE})
    other = known("Иван Белов", OFFICE, ("phone", "+79035550002"))
    result = score(one, other)
    assert result.value < 0.5
    assert any(r.startswith("different mobile −") for r in result.reasons)
    assert not any("shared phone" in r for r in result.reasons)


def test_the_same_name_on_a_household_phone_is_one_person_and_another_name_is_not():
    home = {HOME}
    same = score(
        incoming("Тарасева Юлия", HOME, shared=home, household=home),
        known("Тарасева Юлия Константиновна", HOME),
    )
    spouse = score(
        incoming("Тарасев Павел", HOME, shared=home, household=home),
        known("Тарасева Юлия Константиновна", HOME),
    )
    office = score(
        incoming("Тарасева Юлия", HOME, shared=home), known("Тарасева Юлия Константиновна", HOME)
    )
    assert same.value >= 0.99 > office.value  # among a few, the name tells who is who
    assert spouse.value < 0.05
    assert any(r.startswith("shared home phone") for r in same.reasons)


def test_a_swap_typo_in_a_surname_ending_is_close_not_different():
    result = score(incoming("Зоя Нестерниа", PHONE), known("Нестерина Зоя", PHONE))
    assert any(r.startswith("last name close +") for r in result.reasons)
    short = score(incoming("Иван Попво", PHONE), known("Иван Попов", PHONE))
    assert any(r.startswith("last name close +") for r in short.reasons)


def test_an_unknown_first_name_is_matched_in_either_word_order():
    # Снежана is not in the name list: which word is the surname is a guess on each side.
    result = score(incoming("Снежана Прохорнеко"), known("Прохоренко Снежана Дмитриевна"))
    assert any(r.startswith("first name equal") for r in result.reasons)
    assert any(r.startswith("last name close") for r in result.reasons)


async def test_training_learns_names_from_pairs_sharing_a_personal_point_not_an_office_line(
    store_url,
):
    # Colleagues on one office line are most pairs sharing a point; taught as "one
    # person", they would make a different first name weak evidence against.
    from hub.dedupe import train

    firsts = ["Иван", "Мария", "Олег", "Анна", "Павел", "Ольга", "Роман", "Вера"]
    lasts = ["Белов", "Орлов", "Жуков", "Зуев", "Котов", "Лосев"]
    hub = await run_hub(store_url)
    try:
        rows, points = [], []
        for i in range(1, 41):  # colleagues, each once, on the office line
            name = f"{firsts[i % 8]} {lasts[i % 6]}{'а' if i % 8 in (1, 3, 5, 7) else ''}"
            rows.append({"id": i, "name": name, "custom": {}})
            points.append((i, "+78462223344"))
        for j in range(12):  # people on file twice, on their own mobile
            for k in (0, 1):
                cid = 100 + 2 * j + k
                rows.append({"id": cid, "name": f"{firsts[j % 8]} Клим{j}ов", "custom": {}})
                points.append((cid, f"+7912000{j:04d}"))
        await seed_contacts(hub, rows, points)
        trained = await train(hub.store, hub.settings)
        assert "first_name" not in trained.kept  # learned, not the default kept
        bits, _ = trained.model.weight("first_name", "differs")
        assert bits < -4
        assert trained.model.weight("first_name", "equal")[0] > 2
    finally:
        await hub.stop()
