"""Importing contacts from CSV or XLSX through the same normalization and matching as leads.

Columns are mapped from their headers (Russian or English: «ФИО», «Телефон»,
«E-mail», «Компания», «Город», «Сегмент», «Ответственный», «ID» ...) or by an
explicit ``header=field`` mapping. Each row becomes a contact, merges into one
the store already has (same phone or email, same external id), or is created
and flagged as a possible duplicate; a row that cannot be a contact is rejected
with its row number and reason. Rows are written in batches, each in one
transaction; a batch that fails is retried row by row, so a bad row never
stops the import nor leaves a half-written contact.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.deals import Actor
from hub.domain.lead import Lead
from hub.leads import LeadPipeline
from hub.store import Store
from hub.store.types import utcnow

BATCH = 500
FIELDS = (
    "name",
    "first_name",
    "last_name",
    "middle_name",
    "phone",
    "email",
    "company",
    "tax_id",
    "city",
    "segment",
    "external_id",
    "owner",
    "ignore",
)

# Header words → field; a header is matched whole first, then by the words it contains.
HEADERS = {
    "name": [
        "name",
        "full name",
        "fio",
        "фио",
        "контакт",
        "контактное лицо",
        "клиент",
        "ф.и.о.",
        "полное имя",
    ],
    "first_name": ["first name", "firstname", "имя"],
    "last_name": ["last name", "lastname", "surname", "фамилия"],
    "middle_name": ["middle name", "отчество"],
    "phone": [
        "phone",
        "телефон",
        "тел",
        "тел.",
        "mobile",
        "мобильный",
        "мобильный телефон",
        "рабочий телефон",
        "phone number",
        "номер телефона",
    ],
    "email": ["email", "e-mail", "e mail", "почта", "эл. почта", "электронная почта", "mail"],
    "company": ["company", "компания", "организация", "название компании", "контрагент"],
    "tax_id": ["inn", "инн", "tax id", "tax_id", "инн компании", "инн/кпп"],
    "city": ["city", "город"],
    "segment": ["segment", "сегмент", "тип клиента"],
    "external_id": [
        "id",
        "external id",
        "external_id",
        "код",
        "внешний id",
        "guid",
        "uid",
        "код клиента",
    ],
    "owner": ["owner", "ответственный", "менеджер", "manager"],
}
CONTAINS = [
    ("телефон", "phone"),
    ("phone", "phone"),
    ("почт", "email"),
    ("mail", "email"),
    ("компан", "company"),
    ("организац", "company"),
]


class ImportFailed(ValueError):
    """The file cannot be read as a table, or the mapping is wrong."""


@dataclass
class Report:
    created: int = 0
    merged: int = 0
    flagged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)

    def add(self, decision: str) -> None:
        setattr(self, decision, getattr(self, decision) + 1)


def guess_mapping(headers: Sequence[str]) -> dict[str, str]:
    """header → field for every header that names one; others are ignored."""
    mapping: dict[str, str] = {}
    for header in headers:
        key = header.strip().lower().replace("ё", "е")
        found = next((f for f, names in HEADERS.items() if key in names), None)
        if found is None:
            found = next((f for word, f in CONTAINS if word in key), None)
        if found is not None:
            mapping[header] = found
    return mapping


def parse_mapping(text: str, headers: Sequence[str]) -> dict[str, str]:
    """``"Телефон=phone,ФИО=name"`` → mapping, checked against the file's headers."""
    mapping = {}
    for part in text.split(","):
        if not part.strip():
            continue
        header, _, target = part.partition("=")
        header, target = header.strip(), target.strip()
        if header not in headers:
            raise ImportFailed(f"no column {header!r} in the file (it has: {', '.join(headers)})")
        if target not in FIELDS:
            raise ImportFailed(f"{header}={target}: use one of {', '.join(FIELDS)}")
        mapping[header] = target
    return mapping


def read_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """Headers and rows of a CSV (any common delimiter, UTF-8 or Windows-1251) or XLSX."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(path, read_only=True, data_only=True).active
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
            raise ImportFailed(f"{path}: not a readable Excel workbook ({error})") from None
        if sheet is None:
            raise ImportFailed(f"{path}: the workbook has no sheet")
        rows = sheet.iter_rows(values_only=True)
        headers = [str(h or "").strip() for h in next(rows, ())]
        return headers, ([("" if v is None else str(v)).strip() for v in row] for row in rows)
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1251 decodes any byte
        raise ImportFailed(f"{path}: neither UTF-8 nor Windows-1251")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    headers = [h.strip() for h in next(reader, [])]
    return headers, ([v.strip() for v in row] for row in reader)


def row_to_lead(values: dict[str, list[str]]) -> Lead:
    """One row as a lead; raises ValueError with the reason for a row that is no contact."""
    name = " ".join(values.get("name", []))
    if not name:
        name = " ".join(
            v for f in ("last_name", "first_name", "middle_name") for v in values.get(f, [])
        )
    phones = [
        p for v in values.get("phone", []) for p in v.replace(";", ",").split(",") if p.strip()
    ]
    emails = [
        e for v in values.get("email", []) for e in v.replace(";", ",").split(",") if e.strip()
    ]
    if not phones and not emails:
        raise ValueError("no phone or email")

    def first(name: str) -> str | None:
        found = [v for v in values.get(name, []) if v]
        return found[0] if found else None

    return Lead(
        channel="import",
        name=name or None,
        phones=phones,
        emails=emails,
        company=first("company"),
        tax_id=first("tax_id"),
        city=first("city"),
        segment=first("segment"),
        external_id=first("external_id"),
        owner=first("owner"),
        activity_kind="import",
    )


async def import_contacts(
    store: Store,
    pipeline: LeadPipeline,
    path: Path,
    mapping: dict[str, str] | None = None,
    actor: Actor | None = None,
) -> Report:
    headers, rows = read_rows(path)
    if not any(headers):
        raise ImportFailed(f"{path}: no header row")
    mapping = mapping or guess_mapping(headers)
    if not {"phone", "email"} & set(mapping.values()):
        raise ImportFailed(
            f"{path}: no phone or email column found among {', '.join(headers)}; "
            "map one with --map 'Header=phone'"
        )
    report = Report(mapping=mapping)
    actor = actor or Actor.importer(path.name)
    columns = [
        (i, mapping[h]) for i, h in enumerate(headers) if mapping.get(h, "ignore") != "ignore"
    ]
    batch: list[tuple[int, Lead]] = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if not any(row):
            continue
        values: dict[str, list[str]] = {}
        for index, target in columns:
            if index < len(row) and row[index]:
                values.setdefault(target, []).append(row[index])
        try:
            lead = row_to_lead(values)
            if not pipeline.plan(number, lead, utcnow()).points:
                raise ValueError(
                    f"no valid phone or email in {', '.join(lead.phones + lead.emails)}"
                )
        except ValueError as error:
            report.rejected.append((number, str(error)))
            continue
        batch.append((number, lead))
        if len(batch) >= BATCH:
            await _write(store, pipeline, batch, report, actor)
            batch = []
    if batch:
        await _write(store, pipeline, batch, report, actor)
    return report


async def _write(
    store: Store,
    pipeline: LeadPipeline,
    batch: list[tuple[int, Lead]],
    report: Report,
    actor: Actor,
) -> None:
    try:
        results = await _write_batch(store, pipeline, batch, actor)
    except Exception:
        results = []
        for number, lead in batch:  # find the row that broke the batch; keep the others
            try:
                results += await _write_batch(store, pipeline, [(number, lead)], actor)
            except Exception as error:
                report.rejected.append((number, f"{type(error).__name__}: {error}"[:300]))
    for result in results:
        report.add(result["decision"])


async def _write_batch(
    store: Store, pipeline: LeadPipeline, batch: list[tuple[int, Lead]], actor: Actor
) -> list[dict[str, Any]]:
    now = utcnow()
    plans = [pipeline.plan(number, lead, now) for number, lead in batch]
    async with store.write() as conn:
        return await pipeline.run_contacts(conn, plans, now, actor)
