"""Understanding letters: real-world mail from public test corpora, and broken MIME."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.email_inbound.message import read_message
from plugins.email_inbound.skipping import skip_reason

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpora" / "email"
OUTCOMES = {"bounce": "skip_bounce", "auto_reply": "skip_autoreply", "mailing_list": "skip_list"}
OUTCOMES["bulk"] = "skip_list"  # the corpus files Precedence: bulk under lists


def manifest() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"the email corpus is not at {CORPUS}")
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as rows:
        return list(csv.DictReader(rows, delimiter="\t"))


def outcome(raw: bytes) -> str:
    mail = read_message(raw)
    reason = skip_reason(mail, own_addresses=set(), own_domains=set(), blocked=set())
    return "lead" if reason is None else OUTCOMES.get(reason, reason)


def tally() -> tuple[Counter[tuple[str, bool]], list[tuple[str, str, str]]]:
    """Per category, how many letters get the outcome their manifest row expects."""
    counts: Counter[tuple[str, bool]] = Counter()
    wrong = []
    for row in manifest():
        got = outcome((CORPUS / row["file"]).read_bytes())
        ok = row["expected"] == "any" or got == row["expected"]
        counts[(row["category"], ok)] += 1
        if not ok:
            wrong.append((row["file"], row["expected"], got))
    return counts, wrong


def test_every_corpus_letter_is_read_and_gets_the_outcome_its_manifest_expects():
    counts, wrong = tally()

    assert wrong == []
    assert sum(counts.values()) == 199


def test_a_koi8r_letter_without_any_mime_headers_reads_as_russian():
    manifest()
    mail = read_message((CORPUS / "rt__russian-subject-no-content-type.eml").read_bytes())

    assert mail.subject == "тест тест"
    assert mail.text == "ТЕСТ"


def test_windows_1251_encoded_words_give_the_sender_and_attachment_names():
    manifest()
    mail = read_message((CORPUS / "webklex-php-imap__mixed_filename.eml").read_bytes())

    assert mail.subject == "Свежий прайс-лист"
    assert mail.sender == "support@part-kom.ru"
    assert [a.filename for a in mail.attachments] == ["Price4VladDaKar.xlsx"]


def test_encoded_words_in_any_charset_are_decoded_next_to_plain_text():
    raw = (
        "From: =?utf-8?q?=D0=9F=D1=91=D1=82=D1=80?= Волков <p@volkov.ru>\r\n"
        "Subject: =?koi8-r?B?8NLJ18XU?= =?windows-1251?B?LCDs6PA=?= мир\r\n\r\nтекст\r\n"
    ).encode()

    mail = read_message(raw)

    assert mail.sender_name == "Пётр Волков"
    assert mail.subject == "Привет, мир мир"


def test_a_reply_keeps_only_the_new_text_and_the_signature_apart():
    raw = (
        "From: Пётр <p@volkov-trade.ru>\r\nSubject: Re: КП\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Спасибо, берём 200 м².\r\n\r\nС уважением,\r\nПётр Волков\r\nООО «Волков Трейд»\r\n"
        "тел. 8 (912) 345-67-89\r\n\r\n"
        "7 дек. 2026 г., в 10:15, Анна <sales@example.com> написал(а):\r\n> Направляем КП.\r\n"
    ).encode()

    mail = read_message(raw)

    assert mail.text == "Спасибо, берём 200 м²."
    assert "Направляем КП" in mail.quoted
    assert mail.signature.startswith("С уважением")
    assert mail.signature_phones == ("8 (912) 345-67-89",)
    assert mail.signature_company == "ООО «Волков Трейд»"
    assert mail.sender_domain_company == "volkov-trade.ru"


def test_an_html_only_letter_reads_as_text_with_its_links():
    raw = (
        b"From: a@shop.ru\r\nSubject: order\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>Hello <b>team</b>,</p><p>see <a href='https://shop.ru/o/1'>order</a>"
        b"</p></body></html>"
    )

    mail = read_message(raw)

    assert "<" not in mail.text
    assert "Hello team" in mail.text
    assert "https://shop.ru/o/1" in mail.text


def test_a_letter_without_message_id_has_a_stable_content_hash():
    first = b"From: a@b.ru\r\nSubject: x\r\n\r\nbody\r\n"

    assert read_message(first).message_id is None
    assert (
        read_message(first).content_hash == read_message(first.replace(b"\r\n", b"\n")).content_hash
    )
    assert read_message(first).content_hash != read_message(first + b"more\r\n").content_hash


def test_an_attachment_over_the_limit_is_dropped_with_its_reason():
    big = b"A" * 3000
    raw = (
        b"From: a@b.ru\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="X"\r\n\r\n--X\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--X\r\n"
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="small.pdf"\r\n\r\nPDF\r\n--X\r\n'
        b"Content-Type: application/zip\r\n"
        b'Content-Disposition: attachment; filename="big.zip"\r\n\r\n' + big + b"\r\n--X--\r\n"
    )

    mail = read_message(raw, max_attachment=2048)

    assert [a.filename for a in mail.attachments] == ["small.pdf"]
    assert [(s.filename, s.reason) for s in mail.skipped_attachments] == [("big.zip", "too_large")]


def test_a_delivery_report_names_the_address_that_failed_for_good():
    manifest()
    found = {}
    for row in manifest():
        if row["category"] == "bounce":
            mail = read_message((CORPUS / row["file"]).read_bytes())
            if mail.bounce and mail.bounce.recipients:
                found[row["file"]] = mail.bounce.recipients
    assert len(found) >= 20  # most bounces say whom they failed for
    assert any(
        r.permanent and r.status and r.status.startswith("5") for rs in found.values() for r in rs
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_any_bytes_at_all_are_read_without_an_error(raw):
    mail = read_message(raw)

    assert isinstance(mail.text, str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corpus_letters_cut_short_or_with_bytes_changed_are_read_without_an_error(data):
    rows = manifest()
    row = data.draw(st.sampled_from(rows))
    raw = bytearray((CORPUS / row["file"]).read_bytes())
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    raw = raw[:cut] if data.draw(st.booleans()) else raw
    for _ in range(data.draw(st.integers(min_value=0, max_value=20))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))

    mail = read_message(bytes(raw))

    assert skip_reason(mail, own_addresses=set(), own_domains=set(), blocked=set()) in (
        None,
        "bounce",
        "auto_reply",
        "mailing_list",
        "bulk",
    )


if __name__ == "__main__":  # .venv/bin/python -m tests.plugins.email_inbound.test_message
    counts, wrong = tally()
    for (category, ok), n in sorted(counts.items()):
        print(f"{category:12} {'agree' if ok else 'DISAGREE':9} {n}")
    for item in wrong:
        print("disagrees:", *item)
