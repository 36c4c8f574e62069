"""An imported contact base brings each contact's consent to advertising: a consent column
per channel ("Согласие на SMS": да / нет), recorded with the file as its source; an
explicit "нет" is an opt-out; a re-import changes nothing; a cell that is neither yes nor
no is left out with a note."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from hub.deals import SYSTEM
from hub.importer import YES, guess_mapping, parse_consent
from hub.store.models import Consent, DomainEvent
from tests.campaigns.conftest import started_hub
from tests.test_import_report import run_import

BASE = """ФИО;Телефон;E-mail;Сегмент;Согласие на SMS;Подписан на e-mail рассылку
Иван Петров;+7 912 345-67-89;ivan@petrov.ru;Опт;да;нет
Ольга Смирнова;+7 912 345-67-90;olga@smirnova.ru;Опт;нет;Да
Пётр Молчун;+7 912 345-67-91;;Опт;;
Анна Белова;+7 912 345-67-92;;Опт;может быть;
"""


def test_consent_columns_are_recognised_by_channel_before_the_email_column():
    mapping = guess_mapping(["ФИО", "E-mail", "Согласие на SMS", "Подписан на e-mail рассылку",
                             "Согласие на рассылку"])  # fmt: skip
    assert mapping == {
        "ФИО": "name",
        "E-mail": "email",
        "Согласие на SMS": "consent_sms",
        "Подписан на e-mail рассылку": "consent_email",
    }  # a consent naming no channel is left for --map


@given(st.sampled_from(sorted(YES)), st.sampled_from(["", " ", "."]), st.booleans())
def test_any_yes_word_in_any_case_reads_as_consent(word, tail, upper):
    assert parse_consent((word.upper() if upper else word) + tail) is True


async def consents(hub):
    async with hub.store.read() as conn:
        rows = (await conn.execute(select(Consent))).all()
    return {(r.contact_id, r.channel): (r.granted, r.source) for r in rows}


async def test_an_import_records_each_contacts_consent_per_channel_with_the_file_as_source(
    store_url, gateway, tmp_path: Path
):
    path = tmp_path / "база 1С.csv"
    path.write_text(BASE)
    hub = await started_hub(store_url)
    try:
        report = await run_import(hub, path)
        ids = {r.row: r.contact_id for r in report.rows}
        source = "import:база 1С.csv"
        assert await consents(hub) == {
            (ids[2], "sms"): (True, source),
            (ids[2], "email"): (False, source),
            (ids[3], "sms"): (False, source),
            (ids[3], "email"): (True, source),
        }
        note = next(r.note for r in report.rows if r.row == 5)
        assert "'может быть' is neither yes (да) nor no (нет)" in note

        # The campaign reaches the one who agreed to SMS, and skips the one who refused.
        campaign = await hub.campaigns.create(
            name="Цены", segment="wholesale", channel="sms", text="Цены", actor=SYSTEM
        )
        started = await hub.campaigns.start(campaign, SYSTEM)
        assert started == {"queued": 1, "skipped": {"opted_out": 1, "no_consent": 2}}

        async with hub.store.read() as conn:
            events = (
                await conn.execute(select(func.count()).where(DomainEvent.type.like("consent.%")))
            ).scalar_one()
        again = await run_import(hub, path)
        assert {r.decision for r in again.rows if r.row != 5} == {"unchanged"}
        async with hub.store.read() as conn:
            assert (
                await conn.execute(select(func.count()).where(DomainEvent.type.like("consent.%")))
            ).scalar_one() == events
    finally:
        await hub.stop()
