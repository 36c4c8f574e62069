"""Importing contacts from CSV or XLSX through the same normalization and matching as leads.

Columns are mapped from their headers (Russian or English: «ФИО», «Телефон»,
«E-mail», «Компания», «Город», «Сегмент», «Ответственный», «ID», «Адрес», «Дата
рождения» ...) or by an explicit ``header=field`` mapping. Each row gets one decision,
reported per row (:class:`RowResult`):

- ``created``: a new contact;
- ``merged``: it went to a contact the store (or an earlier row) already had, found by
  its external id, its phone or email, or its name with its birth date, address or a
  state number (the matcher weighs them as it does a lead's), and added what that
  contact lacked;
- ``unchanged``: it went to a contact the store already had, which it left as it was
  (a file imported twice: the second time every row is unchanged);
- ``flagged``: a new contact, queued for review beside a similar one;
- ``rejected``: not a contact, with the reason.

A row's external id names its system (``1c:000123``, or ``--system 1c`` for a column of
bare ids) and is kept on the contact the row went to, also when it merged into another;
a row whose id the store knows goes to that contact whatever else it says. A file with
no phone or email column imports rows that have a name and one more identifying field
(an external id, an address, a birth date).

Rows are written in batches, each in one transaction; a batch that fails is retried
row by row, so a bad row never stops the import nor leaves a half-written contact. A
dry run does all of it in one transaction that is rolled back.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import Actor
from hub.deals.changes import UpdateContact, external_id, split_external_id
from hub.deals.what_if import rolled_back
from hub.domain.lead import Lead
from hub.domain.normalize import InvalidPoint
from hub.domain.person_ids import normalize_personal_tax_id, normalize_snils
from hub.leads import LeadPipeline
from hub.store import Store
from hub.store.models import Contact, ContactExternalId, DomainEvent
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
    "address",
    "postcode",
    "birth_date",
    "personal_tax_id",
    "snils",
    "consent_sms",
    "consent_email",
    "ignore",
)
# Kept in the contact's custom fields (the store has no columns for them yet).
EXTRA = ("address", "postcode", "birth_date", "personal_tax_id", "snils")
NAME_FIELDS = {"name", "first_name", "last_name"}
# Besides a phone or an email, what identifies a person together with a name.
IDENTIFYING = {"external_id", *EXTRA} - {"postcode"}
# A person's state numbers, checked by their check digits before they are kept.
PERSON_IDS = {"personal_tax_id": normalize_personal_tax_id, "snils": normalize_snils}

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
    "middle_name": ["middle name", "patronymic", "отчество"],
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
    "address": [
        "address",
        "home address",
        "адрес",
        "адрес регистрации",
        "фактический адрес",
        "почтовый адрес",
        "адрес проживания",
    ],
    "postcode": ["postcode", "post code", "zip", "zip code", "postal code", "индекс"],
    "birth_date": [
        "birth date",
        "birthdate",
        "birthday",
        "date of birth",
        "dob",
        "дата рождения",
        "день рождения",
        "др",
    ],
    "personal_tax_id": [
        "personal tax id",
        "personal inn",
        "инн физлица",
        "инн физ. лица",
        "инн физ лица",
        "инн физического лица",
        "личный инн",
        "инн клиента",
        "инн контакта",
    ],
    "snils": ["snils", "снилс", "страховой номер", "страховой номер снилс"],
}
CONTAINS = [
    ("телефон", "phone"),
    ("phone", "phone"),
    ("почт", "email"),
    ("mail", "email"),
    ("компан", "company"),
    ("организац", "company"),
    ("снилс", "snils"),
    ("рожден", "birth_date"),
    ("индекс", "postcode"),
    ("адрес", "address"),
    ("address", "address"),
]
# A consent column names its channel: "Согласие на SMS", "Подписан на email-рассылку".
CONSENT_WORDS = ("соглас", "consent", "рассыл", "подпис", "opt-in", "opt in", "newsletter")
CONSENT_CHANNELS = (("sms", "consent_sms"), ("смс", "consent_sms"), ("mail", "consent_email"),
                    ("почт", "consent_email"), ("письм", "consent_email"))  # fmt: skip
YES = {"да", "yes", "y", "1", "true", "+", "x", "согласен", "согласна", "подписан", "есть"}
NO = {"нет", "no", "n", "0", "false", "-", "отказ", "отписан", "отписался", "отписалась"}
DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%y", "%Y.%m.%d")
REPORT_COLUMNS = (
    "row",
    "external_id",
    "decision",
    "contact_id",
    "score",
    "reasons",
    "duplicate_of",
    "note",
)


class ImportFailed(ValueError):
    """The file cannot be read as a table, or the mapping is wrong."""


@dataclass(slots=True)
class RowResult:
    """What became of one row of the file (one line of ``--report``)."""

    row: int
    external_id: str | None
    decision: str  # created | merged | unchanged | flagged | rejected
    contact_id: int | None = None
    score: str = ""  # the matcher's score for the contact it went to (or was flagged beside)
    reasons: str = ""
    duplicate_of: int | None = None  # flagged: the contact it may be
    note: str = ""  # the rejection reason, or what of the row was left out

    def as_row(self) -> list[Any]:
        return [
            self.row,
            self.external_id or "",
            self.decision,
            "" if self.contact_id is None else self.contact_id,
            self.score,
            self.reasons,
            "" if self.duplicate_of is None else self.duplicate_of,
            self.note,
        ]


@dataclass
class Report:
    created: int = 0
    merged: int = 0
    unchanged: int = 0
    flagged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    rows: list[RowResult] = field(default_factory=list)
    dry_run: bool = False

    def add(self, result: RowResult) -> None:
        self.rows.append(result)
        if result.decision == "rejected":
            self.rejected.append((result.row, result.note))
        else:
            setattr(self, result.decision, getattr(self, result.decision) + 1)

    def write_csv(self, path: Path) -> None:
        """One line per row of the imported file, in the file's order."""
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(REPORT_COLUMNS)
            for result in sorted(self.rows, key=lambda r: r.row):
                writer.writerow(result.as_row())


def guess_mapping(headers: Sequence[str]) -> dict[str, str]:
    """header → field for every header that names one; others are ignored."""
    mapping: dict[str, str] = {}
    for header in headers:
        key = header.strip().lower().replace("ё", "е")
        found = next((f for f, names in HEADERS.items() if key in names), None)
        if found is None and any(word in key for word in CONSENT_WORDS):
            # Before "mail" → email: "Согласие на e-mail" holds yes/no, not addresses. A
            # consent column naming no channel is left for --map.
            found = next((f for word, f in CONSENT_CHANNELS if word in key), "ignore")
            if found == "ignore":
                continue
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


def qualify(value: str | None, system: str | None) -> str | None:
    """A row's external id as kept: ``000123`` with ``--system 1c`` → ``1c:000123``; a value
    that names its system (``bitrix:5567``) keeps it."""
    if not value:
        return None
    if system:
        named, bare = split_external_id(value)
        if named != system.lower():
            named, bare = system.lower(), value.strip()
        return external_id(named, bare)
    return external_id(*split_external_id(value))


def parse_date(value: str) -> date:
    """A birth date in any common form: 31.12.1985, 1985-12-31, 31/12/1985, an Excel date."""
    text = value.strip().split(" ")[0].split("T")[0]
    for form in DATE_FORMATS:
        try:
            found = datetime.strptime(text, form).date()
        except ValueError:
            continue
        if found.year < 1900 or found > date.today():
            raise ValueError(f"birth date {value!r} is out of range")
        return found
    raise ValueError(f"birth date {value!r} is not a date")


def parse_consent(value: str) -> bool:
    """A consent cell: yes (да, 1, +, x) or no (нет, 0, -, отказ)."""
    word = value.strip().lower().replace("ё", "е").rstrip(".")
    if word in YES:
        return True
    if word in NO:
        return False
    raise ValueError(f"consent {value!r} is neither yes (да) nor no (нет)")


def row_to_lead(
    values: dict[str, list[str]], system: str | None = None, source: str | None = None
) -> tuple[Lead, dict[str, str], list[str]]:
    """One row as a lead, the extra fields kept on the contact, and notes on what was left
    out. Whether the row identifies anyone is for the caller to say."""
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

    def first(name: str) -> str | None:
        found = [v for v in values.get(name, []) if v]
        return found[0] if found else None

    extra: dict[str, str] = {}
    notes: list[str] = []
    for name_ in EXTRA:
        value = first(name_)
        if not value:
            continue
        if name_ == "birth_date":
            try:
                value = parse_date(value).isoformat()
            except ValueError as error:
                notes.append(f"{error}, left out")
                continue
        elif name_ in PERSON_IDS:
            try:
                value = PERSON_IDS[name_](value)
            except InvalidPoint as error:
                notes.append(f"{error}, left out")
                continue
        extra[name_] = value[:300]
    consents: dict[str, bool] = {}
    for field_ in ("consent_sms", "consent_email"):
        value = first(field_)
        if not value:
            continue
        try:
            consents[field_.removeprefix("consent_")] = parse_consent(value)
        except ValueError as error:
            notes.append(f"{error}, left out")
    lead = Lead(
        channel="import",
        name=name or None,
        phones=phones,
        emails=emails,
        company=first("company"),
        tax_id=first("tax_id"),
        city=first("city"),
        segment=first("segment"),
        external_id=qualify(first("external_id"), system),
        owner=first("owner"),
        activity_kind="import",
        consents=consents,
        consent_source=source,
        # The matcher compares what identifies the person (birth date, address, state
        # numbers) as it does a form's; the contact keeps them from the extra fields.
        custom=dict(extra),
    )
    return lead, extra, notes


@dataclass(slots=True)
class _Row:
    number: int
    lead: Lead
    extra: dict[str, str]
    notes: list[str]


async def import_contacts(
    store: Store,
    pipeline: LeadPipeline,
    path: Path,
    mapping: dict[str, str] | None = None,
    actor: Actor | None = None,
    *,
    system: str | None = None,
    dry_run: bool = False,
) -> Report:
    """Import ``path``; with ``dry_run`` decide every row as the import would and write
    nothing."""
    headers, rows = read_rows(path)
    if not any(headers):
        raise ImportFailed(f"{path}: no header row")
    mapping = mapping or guess_mapping(headers)
    mapped = set(mapping.values())
    by_points = bool({"phone", "email"} & mapped)
    if not by_points and not (NAME_FIELDS & mapped and IDENTIFYING & mapped):
        raise ImportFailed(
            f"{path}: no phone or email column, nor a name with an external id, address, "
            f"birth date, personal ИНН or СНИЛС, found among {', '.join(headers)}; map one "
            "with --map 'Header=phone'"
        )
    report = Report(mapping=mapping, dry_run=dry_run)
    actor = actor or Actor.importer(path.name)
    columns = [
        (i, mapping[h]) for i, h in enumerate(headers) if mapping.get(h, "ignore") != "ignore"
    ]
    async with _units(store, dry_run) as unit:
        batch: list[_Row] = []
        in_batch: set[Any] = set()
        for number, row in enumerate(rows, start=2):  # row 1 is the header
            if not any(row):
                continue
            values: dict[str, list[str]] = {}
            for index, target in columns:
                if index < len(row) and row[index]:
                    values.setdefault(target, []).append(row[index])
            try:
                lead, extra, notes = row_to_lead(values, system, path.name)
            except ValueError as error:
                report.add(RowResult(number, None, "rejected", note=str(error)))
                continue
            has_points = bool(pipeline.plan(number, lead, utcnow()).points)
            reason = _unidentified(lead, extra, has_points, by_points)
            if reason is not None:
                note = "; ".join([reason, *notes])
                report.add(RowResult(number, lead.external_id, "rejected", note=note))
                continue
            # Two rows of one person known by an id (or by name alone): the second is matched
            # after the first is written.
            key: Any = lead.external_id
            if key is None and not has_points:
                key = (_folded(lead.name), tuple(sorted(extra.items())))
            if len(batch) >= BATCH or (key is not None and key in in_batch):
                await _write(unit, pipeline, batch, report, actor)
                batch, in_batch = [], set()
            batch.append(_Row(number, lead, extra, notes))
            in_batch.add(key)
        if batch:
            await _write(unit, pipeline, batch, report, actor)
    return report


def _unidentified(
    lead: Lead, extra: dict[str, str], has_points: bool, by_points: bool
) -> str | None:
    """Why the row identifies nobody, or None. In a file with phone or email columns a row
    needs a valid one; in a file without, a name and an external id, address, birth date,
    personal ИНН or СНИЛС."""
    if has_points:
        return None
    if by_points:
        if not lead.phones and not lead.emails:
            return "no phone or email"
        return f"no valid phone or email in {', '.join(lead.phones + lead.emails)}"
    if lead.name and (lead.external_id or set(extra) & IDENTIFYING):
        return None
    if not lead.name:
        return "no name, phone or email"
    return (
        "a name alone: an external id, address, birth date, personal ИНН or СНИЛС is needed "
        "besides it"
    )


Unit = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


@asynccontextmanager
async def _units(store: Store, dry_run: bool) -> AsyncIterator[Unit]:
    """Where each batch is written: its own transaction, or in a dry run a savepoint of one
    transaction rolled back at the end (so later rows still see the earlier ones)."""
    if not dry_run:
        yield store.write
        return
    async with rolled_back(store) as conn:

        @asynccontextmanager
        async def savepoint() -> AsyncIterator[AsyncConnection]:
            async with conn.begin_nested():
                yield conn

        yield savepoint


async def _write(
    unit: Unit, pipeline: LeadPipeline, batch: list[_Row], report: Report, actor: Actor
) -> None:
    try:
        async with unit() as conn:
            results = await _write_batch(conn, pipeline, batch, actor)
    except Exception:
        results = []
        for row in batch:  # find the row that broke the batch; keep the others
            try:
                async with unit() as conn:
                    results += await _write_batch(conn, pipeline, [row], actor)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"[:300]
                results.append(RowResult(row.number, row.lead.external_id, "rejected", note=reason))
    for result in results:
        report.add(result)


contacts_t = Contact.__table__
external_ids_t = ContactExternalId.__table__
events_t = DomainEvent.__table__


async def _write_batch(
    conn: AsyncConnection, pipeline: LeadPipeline, batch: list[_Row], actor: Actor
) -> list[RowResult]:
    now = utcnow()
    before = (await conn.execute(select(func.max(events_t.c.id)))).scalar() or 0
    known = await _known_by_name(conn, pipeline, batch, now)
    matched = [row for row in batch if row.number not in known]
    leads = await _route_known_ids(conn, pipeline, matched, actor, now)
    plans = [pipeline.plan(row.number, lead, now) for row, lead in zip(matched, leads, strict=True)]
    decided = dict(
        zip(
            (row.number for row in matched),
            await pipeline.run_contacts(conn, plans, now, actor) if plans else [],
            strict=True,
        )
    )
    updates: list[UpdateContact] = []
    for row in batch:
        if row.number in known:
            contact_id, reason = known[row.number]
            decided[row.number] = {
                "decision": "merged",
                "contact_id": contact_id,
                "match": f"1.00: {reason}",
            }
            lead = row.lead
            updates.append(
                UpdateContact(
                    contact=contact_id,
                    city=lead.city,
                    segment=lead.segment,
                    custom=dict(row.extra),
                    fill_only=True,
                )
            )
        elif row.extra:
            contact_id = decided[row.number]["contact_id"]
            updates.append(
                UpdateContact(contact=contact_id, custom=dict(row.extra), fill_only=True)
            )
    if updates:
        await pipeline.writer.apply_in(conn, updates, actor, now)
    # A contact this batch created or changed has an event of it; one without was left as
    # it was.
    touched = set(
        (
            await conn.execute(
                select(events_t.c.subject_id).where(
                    events_t.c.id > before,
                    events_t.c.type.in_(("contact.created", "contact.updated")),
                )
            )
        ).scalars()
    )
    out = []
    for row in batch:
        result = decided[row.number]
        decision = result["decision"]
        if decision == "merged" and result["contact_id"] not in touched:
            decision = "unchanged"
        score, _, reasons = str(result.get("match") or "").partition(": ")
        out.append(
            RowResult(
                row.number,
                row.lead.external_id,
                decision,
                result["contact_id"],
                score,
                reasons,
                result.get("possible_duplicate_of"),
                "; ".join(row.notes + _left_out(pipeline, row, now)),
            )
        )
    return out


# What, besides the same name, makes a row without phone, email or id a known contact.
NAMED_BY = (
    ("birth_date", "birth date"),
    ("address", "address"),
    ("personal_tax_id", "personal ИНН"),
    ("snils", "СНИЛС"),
)


def _folded(name: str | None) -> str:
    return " ".join((name or "").casefold().replace("ё", "е").split())


async def _known_by_name(
    conn: AsyncConnection, pipeline: LeadPipeline, batch: list[_Row], now: datetime
) -> dict[int, tuple[int, str]]:
    """Rows with no phone, email or external id that name a contact the store has: the same
    name and the same birth date, address, personal ИНН or СНИЛС (none of them differing).
    row → (contact, why).

    Only these exact keys: without them a file of such rows imported twice would double
    every contact. Telling namesakes apart beyond that is the matcher's work."""
    keyless = [
        row
        for row in batch
        if row.lead.name
        and not row.lead.external_id
        and not pipeline.plan(row.number, row.lead, now).points
    ]
    if not keyless:
        return {}
    rows = await conn.execute(
        select(contacts_t.c.id, contacts_t.c.name, contacts_t.c.custom)
        .where(contacts_t.c.name.in_(sorted({row.lead.name for row in keyless})))
        .order_by(contacts_t.c.id)
    )
    by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for contact_id, name, custom in rows:
        by_name.setdefault(_folded(name), []).append((contact_id, custom or {}))
    found: dict[int, tuple[int, str]] = {}
    for row in keyless:
        for contact_id, custom in by_name.get(_folded(row.lead.name), []):
            same = [
                label
                for key, label in NAMED_BY
                if row.extra.get(key) and _folded(custom.get(key)) == _folded(row.extra[key])
            ]
            differ = any(
                row.extra.get(key)
                and custom.get(key)
                and _folded(custom[key]) != _folded(row.extra[key])
                for key, _ in NAMED_BY
            )
            if same and not differ:
                found[row.number] = (contact_id, "same name and " + " and ".join(same))
                break
    return found


def _left_out(pipeline: LeadPipeline, row: _Row, now: datetime) -> list[str]:
    invalid = pipeline.plan(row.number, row.lead, now).invalid
    return [f"not a valid phone, email or tax id: {', '.join(invalid)}"] if invalid else []


async def _route_known_ids(
    conn: AsyncConnection,
    pipeline: LeadPipeline,
    batch: list[_Row],
    actor: Actor,
    now: datetime,
) -> list[Lead]:
    """The rows' leads, a row whose external id the store knows pointed at its contact.

    The lead pipeline finds a contact by its one shown id (``contacts.external_id``); a
    contact keeps more, so a row carrying any of them is given the shown one to match by.
    """
    wanted = {split_external_id(r.lead.external_id) for r in batch if r.lead.external_id}
    if not wanted:
        return [r.lead for r in batch]
    rows = await conn.execute(
        select(
            external_ids_t.c.system, external_ids_t.c.external_id, external_ids_t.c.contact_id
        ).where(external_ids_t.c.external_id.in_(sorted({v for _, v in wanted})))
    )
    holder = {external_id(s, v): c for s, v, c in rows if (s, v) in wanted}
    if not holder:
        return [r.lead for r in batch]
    shown = dict(
        (
            await conn.execute(
                select(contacts_t.c.id, contacts_t.c.external_id).where(
                    contacts_t.c.id.in_(sorted(set(holder.values())))
                )
            )
        ).all()
    )
    blank = sorted({(c, i) for i, c in holder.items() if not shown.get(c)})
    if blank:  # a contact keeping ids but showing none shows the first of them
        fills = dict(reversed(blank))
        await pipeline.writer.apply_in(
            conn,
            [UpdateContact(contact=c, external_id=i, fill_only=True) for c, i in fills.items()],
            actor,
            now,
        )
        shown.update(fills)
    leads = []
    for row in batch:
        contact_id = holder.get(row.lead.external_id or "")
        if contact_id is None or shown[contact_id] == row.lead.external_id:
            leads.append(row.lead)
        else:
            leads.append(row.lead.model_copy(update={"external_id": shown[contact_id]}))
    return leads
