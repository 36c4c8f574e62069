"""The lead pipeline: normalize → match → decide → assign, over a batch of leads.

It runs inside one transaction, decides, and hands the writer
(:mod:`hub.deals.writer`) the changes it decided; the writer writes each kind with
one bulk statement, so a lead costs a few rows, not a few round trips. For every lead it
records what it decided and why (the inbox event's ``result``):

- ``new_contact``: nobody known; a new contact and deal.
- ``possible_duplicate``: someone similar is known but not surely the same
  person; a new contact and deal, and the pair is queued for review.
- ``new_deal_for_contact``: a known contact with no open or recent deal here;
  a new deal owned by the contact's owner.
- ``added_to_open_deal``: the contact has an open deal in this pipeline; the
  request is added to it as an activity, its owner gets a task, no new deal.
- ``reopened_deal``: the contact's deal here closed recently and the pipeline
  says reopen; it goes back to the first stage.

Candidates are the contacts holding one of the lead's phones or emails, and those sharing
a name block with it (:mod:`hub.domain.blocking`: the same name with the same birth date,
address, company or city, read through the ``contacts.name_key`` index), so a returning
client with a new phone and mailbox is still found. No lead is dropped for being a
duplicate. Two leads of one new person in the
same batch, or in two processes at once, make one contact and one deal: the
batch matches against itself, and on PostgreSQL each point is locked
(``pg_advisory_xact_lock``) before it is looked up.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, func, null, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import MatchingSection, Settings
from hub.deals import LEAD_PIPELINE, Actor, DealWriter
from hub.deals.changes import (
    UNSET,
    AddTask,
    Change,
    CompanyRef,
    ContactRef,
    CreateCompany,
    CreateContact,
    CreateDeal,
    DealRef,
    FlagDuplicate,
    LogActivity,
    RecordLead,
    Reopen,
    RepeatInquiry,
    SetConsent,
    UpdateContact,
    ref_id,
    split_external_id,
)
from hub.domain.assignment import Assigner, Request
from hub.domain.blocking import (
    KINDS,
    MAX_BLOCK,
    Block,
    detail_block,
    key_blocks,
    lookups,
    name_blocks,
)
from hub.domain.lead import Lead
from hub.domain.matching import (
    BUILTIN,
    HOUSEHOLD,
    Candidate,
    Incoming,
    Matcher,
    Score,
    score,
)
from hub.domain.matching import (
    details as identifying,
)
from hub.domain.normalize import (
    InvalidPoint,
    Point,
    canonical_email,
    email_point,
    normalize_phone,
    normalize_tax_id,
    phone_point,
)
from hub.domain.similarity import company_key
from hub.domain.weights import MatchModel, load_model, model_path
from hub.store.models import (
    Company,
    Contact,
    ContactExternalId,
    ContactPoint,
    Deal,
    DomainEvent,
    User,
)
from hub.store.ops import Catalog, PipelineInfo, StageInfo

DEFAULT_CONTACT_WITHIN = timedelta(days=1)
NAME_ROWS = 100  # contacts read per name key at intake

companies_t = Company.__table__
contacts_t = Contact.__table__
ids_t = ContactExternalId.__table__
points_t = ContactPoint.__table__
deals_t = Deal.__table__
events_t = DomainEvent.__table__


class LeadRejected(ValueError):
    """A lead the pipeline cannot place (unknown pipeline or stage): a config problem."""


@dataclass(slots=True)
class _Plan:
    inbox_id: int
    lead: Lead
    pipeline: PipelineInfo
    stage: StageInfo
    points: list[Point]
    invalid: list[str]
    received_at: datetime
    contact: _Contact | None = None
    match: Score | None = None
    review: tuple[_Contact, Score] | None = None
    decision: str = "new_contact"
    action: str = "new_deal"  # new_deal | attach | reopen
    deal: _Deal | None = None
    owner_id: int | None = None
    rule: str = "unassigned"
    new_points: list[Point] = field(default_factory=list)
    tax_id: str | None = None
    company: CompanyRef | None = None
    blocks: set[Block] = field(default_factory=set)  # name blocks (hub/domain/blocking.py)


@dataclass(slots=True, eq=False)
class _Contact:
    """A contact known to the store (``id`` set) or created by this batch."""

    id: int | None
    name: str | None
    company: str | None
    city: str | None
    owner_id: int | None
    points: set[tuple[str, str]]
    lead: Lead | None = None  # set for a contact this batch creates
    company_ref: CompanyRef | None = None
    tax_id: str | None = None
    create: CreateContact | None = None
    details: dict[str, str] = field(default_factory=dict)  # birth date, address, state numbers
    # (system, id) of the contact's ids in source systems; read only for a batch whose leads
    # carry an id of a named system (nothing else compares them).
    external_ids: set[tuple[str, str]] = field(default_factory=set)
    # Its deals by id, read with it for a batch of leads (``_contacts(deals=True)``).
    deals: dict[int, _Deal] = field(default_factory=dict)

    @property
    def ref(self) -> ContactRef:
        if self.id is not None:
            return self.id
        assert self.create is not None
        return self.create


@dataclass(slots=True, eq=False)
class _Deal:
    id: int | None
    pipeline_id: int
    stage_id: int
    status: str
    owner_id: int | None
    closed_at: datetime | None
    created_by: _Plan | None = None  # the plan in this batch that creates it
    create: CreateDeal | None = None

    @property
    def ref(self) -> DealRef:
        if self.id is not None:
            return self.id
        assert self.create is not None
        return self.create


def lock_key(kind: str, normalized: str) -> int:
    return int.from_bytes(
        hashlib.sha1(f"{kind}:{normalized}".encode()).digest()[:8], "big", signed=True
    )


class LeadPipeline:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        reserve: Callable[[AsyncConnection, str, int], Awaitable[int]],
        writer: DealWriter,
        matchers: Sequence[Matcher] = (),
    ) -> None:
        self.catalog = catalog
        self.writer = writer
        self.settings = settings
        self.region = settings.hub.default_region
        self.matching: MatchingSection = settings.matching
        self.reserve = reserve
        self.matchers: list[Matcher] = [*BUILTIN, *matchers]
        self._model_path = model_path(settings)
        self._model = load_model(self._model_path)
        self._model_checked = time.monotonic()
        self._dotless = frozenset(d.lower() for d in self.matching.dotless_domains)
        self._plus = frozenset(d.lower() for d in self.matching.plus_tag_domains)
        self._generic = {m.lower() for m in self.matching.generic_mailboxes}
        self._shared_phones = set()
        for raw in self.matching.shared_phones:
            try:
                self._shared_phones.add(normalize_phone(raw, self.region))
            except InvalidPoint:
                continue

    # -- one lead -------------------------------------------------------------------------

    @property
    def model(self) -> MatchModel:
        """The match model, read again when ``hub dedupe train`` has written a new one, so a
        running hub matches with it without a restart (the file is looked at once a second,
        and re-read only when it changed)."""
        now = time.monotonic()
        if now - self._model_checked >= 1.0:
            self._model = load_model(self._model_path)
            self._model_checked = now
        return self._model

    def plan(self, inbox_id: int, lead: Lead, received_at: datetime) -> _Plan:
        """Normalize and place one lead; raises :class:`LeadRejected` for a lead it cannot place."""
        pipeline_key = lead.pipeline or self.catalog.default
        pipeline = self.catalog.pipelines.get(pipeline_key)
        if pipeline is None:
            raise LeadRejected(f"unknown pipeline {pipeline_key!r}")
        if lead.stage:
            stage = pipeline.stages.get(lead.stage)
            if stage is None or stage.kind != "open":
                raise LeadRejected(f"pipeline {pipeline_key!r} has no open stage {lead.stage!r}")
        else:
            stage = pipeline.entry_stage
        points: list[Point] = []
        invalid: list[str] = []
        for raw in lead.phones:
            try:
                points.append(phone_point(raw, self.region))
            except InvalidPoint:
                invalid.append(raw)
        for raw in lead.emails:
            try:
                point = email_point(raw)
            except InvalidPoint:
                invalid.append(raw)
                continue
            canonical = canonical_email(point.normalized, self._dotless, self._plus)
            points.append(Point("email", point.value, canonical))
        unique = list({(p.kind, p.normalized): p for p in points}.values())
        plan = _Plan(inbox_id, lead, pipeline, stage, unique, invalid, received_at)
        if lead.tax_id:
            try:
                plan.tax_id = normalize_tax_id(lead.tax_id, self.region)
            except InvalidPoint:
                plan.invalid.append(lead.tax_id)
        details = identifying(lead.custom)
        plan.blocks = name_blocks(
            lead.name,
            birth_date=details.get("birth_date"),
            company=lead.company,
            city=lead.city,
            address=details.get("address"),
            personal_tax_id=details.get("personal_tax_id"),
            snils=details.get("snils"),
        )
        found = detail_block(details.get("birth_date"), details.get("address"))
        if found is not None:
            plan.blocks.add(found)
        return plan

    def _is_generic(self, key: tuple[str, str]) -> bool:
        kind, normalized = key
        if kind == "email":
            return normalized.split("@", 1)[0] in self._generic
        return normalized in self._shared_phones

    # -- the batch ------------------------------------------------------------------------

    async def _match_all(
        self,
        conn: AsyncConnection,
        plans: Sequence[_Plan],
        by_details: bool = False,
        deals: bool = False,
    ) -> tuple[dict[int, _Contact], list[_Plan]]:
        """Find each plan's contact (known, new, or made earlier in the batch); with
        ``by_details`` (an import) a row's details fill the blanks of the contact it went
        to, for the rows after it."""
        keys = sorted({(p.kind, p.normalized) for plan in plans for p in plan.points})
        if conn.dialect.name == "postgresql":
            # Companies are found or created later in the batch; their keys are locked now,
            # with the points, so every batch takes its locks in one sorted order.
            companies = {("tax_id", plan.tax_id) for plan in plans if plan.tax_id}
            companies |= {
                ("company", company_key(plan.lead.company)) for plan in plans if plan.lead.company
            }
            # A returning client found by name alone is locked by the name key, too.
            names = {("name", key) for plan in plans for key, _ in plan.blocks if key}
            if keys or companies or names:
                await self._lock(conn, sorted(set(keys) | companies | names))
        named = await self._named(
            conn,
            {span for plan in plans if plan.blocks for span in lookups(plan.lead.name)},
            {block.split(" ", 1)[0] for plan in plans for _, block in plan.blocks},
        )
        wanted = {block for plan in plans for block in plan.blocks}
        if by_birth := {b for b in wanted if not b[0]}:
            named.update(await self._by_birth_date(conn, by_birth))
        # A block too big to compare with is not loaded either (see _match).
        ids = {
            cid
            for block in wanted
            if len(named.get(block, ())) <= MAX_BLOCK
            for cid in named.get(block, ())
        }
        by_external = await self._by_external_id(conn, plans)
        # A lead's id of a named system not known here is still compared with the ids the
        # candidates have in that system (another id there weighs against).
        systems = any(
            split_external_id(p.lead.external_id)[0]
            for p in plans
            if p.lead.external_id and p.lead.external_id not in by_external
        )
        # The contacts holding the plans' points are read in the same statement as the
        # others: each round trip to the store costs more than the rows it reads.
        contacts = await self._contacts(
            conn, ids | set(by_external.values()), systems, keys, deals=deals
        )
        holders = _holding(contacts, keys)
        batch_holders: dict[tuple[str, str], list[_Contact]] = {}
        batch_blocks: dict[Block, list[_Contact]] = {}
        reviews: list[_Plan] = []
        for plan in plans:
            known = by_external.get(plan.lead.external_id or "")
            if known is not None:
                plan.contact, plan.match = contacts[known], Score(1.0, ("same external id",))
            else:
                self._match(plan, holders, contacts, batch_holders, named, batch_blocks)
            if plan.review is not None:
                reviews.append(plan)
            contact = plan.contact
            assert contact is not None
            if by_details and contact.lead is not plan.lead:
                # The import fills the contact's blank fields from the row it merged
                # (fill_only): a later row of the batch is compared with the contact as it
                # will be written, its birth date from one row, its address from another.
                for key, value in identifying(plan.lead.custom).items():
                    contact.details.setdefault(key, value)
            for block in plan.blocks:
                found = batch_blocks.setdefault(block, [])
                if contact not in found:
                    found.append(contact)
            for point in plan.points:
                key = (point.kind, point.normalized)
                if key not in contact.points:
                    contact.points.add(key)
                    if contact.id is not None:  # a known contact gets the new phone or email
                        plan.new_points.append(point)
                holders_here = batch_holders.setdefault(key, [])
                if contact not in holders_here:
                    holders_here.append(contact)
        return contacts, reviews

    @staticmethod
    async def _by_external_id(conn: AsyncConnection, plans: Sequence[_Plan]) -> dict[str, int]:
        """Each lead's external id that a contact keeps (any of its ids, from any system)."""
        wanted = {
            p.lead.external_id: split_external_id(p.lead.external_id)
            for p in plans
            if p.lead.external_id
        }
        if not wanted:
            return {}
        rows = await conn.execute(
            select(ids_t.c.system, ids_t.c.external_id, ids_t.c.contact_id).where(
                ids_t.c.external_id.in_(sorted({value for _, value in wanted.values()}))
            )
        )
        holders = {(system, value): contact for system, value, contact in rows}
        return {given: holders[pair] for given, pair in wanted.items() if pair in holders}

    async def run_contacts(
        self, conn: AsyncConnection, plans: Sequence[_Plan], now: datetime, actor: Actor
    ) -> list[dict[str, Any]]:
        """Place contacts without deals (an import): created, merged into a known one, or
        created and flagged for review. A merged contact gains the new phones and emails
        and fills its blank fields; its own values are kept."""
        _, reviews = await self._match_all(conn, plans, by_details=True)
        owners = dict((await conn.execute(select(User.email, User.id))).all())
        new_contacts = [c for c in dict.fromkeys(p.contact for p in plans) if c.id is None]
        for contact in new_contacts:
            assert contact.lead is not None
            contact.owner_id = owners.get((contact.lead.owner or "").lower())
        for plan in plans:
            assert plan.contact is not None
            plan.owner_id = plan.contact.owner_id
        changes: list[Change] = []
        creates, links = await self._companies(conn, plans)
        changes += creates
        changes += self._new_contacts(plans, new_contacts)
        for plan in plans:
            contact = plan.contact
            assert contact is not None
            if contact.lead is plan.lead:  # this row created it
                continue
            lead = plan.lead
            changes.append(
                UpdateContact(
                    contact=contact.ref,
                    name=lead.name,
                    city=lead.city,
                    segment=lead.segment,
                    external_id=lead.external_id,
                    owner_id=owners.get((lead.owner or "").lower()),
                    company=links.pop(contact.id, UNSET) if contact.id is not None else UNSET,
                    add_points=plan.new_points,
                    fill_only=True,
                )
            )
        changes += self._consents(plans)
        changes += self._flags(reviews, "import")
        await self.writer.apply_in(conn, changes, actor, now)
        results = []
        for plan in plans:
            contact = plan.contact
            assert contact is not None
            created = contact.lead is plan.lead
            decision = ("flagged" if plan.review else "created") if created else "merged"
            result: dict[str, Any] = {"decision": decision, "contact_id": ref_id(contact.ref)}
            if plan.match is not None:
                result["match"] = plan.match.describe()
            if plan.review is not None:
                result["possible_duplicate_of"] = ref_id(plan.review[0].ref)
                result["match"] = plan.review[1].describe()
            results.append(result)
        return results

    async def run(self, conn: AsyncConnection, plans: Sequence[_Plan], now: datetime) -> list[dict]:
        """Decide what ``plans`` become and have the writer write it in ``conn``'s
        transaction; one result per plan."""
        # The candidates' deals come with them: a round trip to the store costs more than
        # the rows they add.
        contacts, reviews = await self._match_all(conn, plans, deals=True)
        deals = {
            contact: sorted(contact.deals.values(), key=lambda d: -(d.id or 0))
            for contact in contacts.values()
            if contact.deals
        }
        for plan in plans:
            assert plan.contact is not None
            self._decide(plan, deals.setdefault(plan.contact, []), now)
        owner_changes = await self._assign(conn, plans, now)
        changes: list[Change] = []
        creates, links = await self._companies(conn, plans)
        changes += creates
        new_contacts = [c for c in dict.fromkeys(p.contact for p in plans) if c.id is None]
        changes += self._new_contacts(plans, new_contacts)
        changes += self._known_contacts(plans, owner_changes, links)
        records = self._deal_changes(plans, now, changes)
        changes += self._flags(reviews, "intake")
        changes += [self._activity(plan) for plan in plans]
        changes += self._consents(plans)
        changes += records
        await self.writer.apply_in(conn, changes, LEAD_PIPELINE, now)
        return [record.result() for record in records]

    @staticmethod
    def _consents(plans: Sequence[_Plan]) -> list[Change]:
        """A form's "I agree to receive news" box or an import's consent column: the word,
        with where it came from. (An unticked box sends nothing, so no word is no change;
        an explicit "no" is an opt-out.)"""
        return [
            SetConsent(
                contact=plan.contact.ref,
                channel=channel,
                granted=granted,
                source=f"{plan.lead.channel}:{plan.lead.consent_source or 'lead'}"[:100],
            )
            for plan in plans
            if plan.contact is not None
            for channel, granted in plan.lead.consents.items()
        ]

    def _new_contacts(self, plans: Sequence[_Plan], new: list[_Contact]) -> list[Change]:
        points: dict[_Contact, dict[tuple[str, str], Point]] = {c: {} for c in new}
        for plan in plans:
            mine = points.get(plan.contact)  # type: ignore[arg-type]
            if mine is not None:
                for point in plan.points:
                    mine.setdefault((point.kind, point.normalized), point)
        out: list[Change] = []
        for contact in new:
            lead = contact.lead
            assert lead is not None
            contact.create = CreateContact(
                name=lead.name,
                owner_id=contact.owner_id,
                city=lead.city,
                segment=lead.segment,
                external_id=lead.external_id,
                company=contact.company_ref,
                # The contact keeps what identifies the person (birth date, address), so
                # a later lead with a new phone and mailbox is still found by name.
                custom={
                    **identifying(lead.custom),
                    **({"company": lead.company} if lead.company else {}),
                },
                points=list(points[contact].values()),
            )
            out.append(contact.create)
        return out

    @staticmethod
    def _known_contacts(
        plans: Sequence[_Plan],
        owner_changes: dict[int, int | None],
        links: dict[int, CompanyRef],
    ) -> list[Change]:
        """One update per known contact: a new owner, a company, new phones or emails."""
        new_points: dict[int, list[Point]] = {}
        for plan in plans:
            contact = plan.contact
            assert contact is not None
            if contact.id is not None and plan.new_points:
                new_points.setdefault(contact.id, []).extend(plan.new_points)
        touched = sorted(set(owner_changes) | set(new_points) | set(links))
        out: list[Change] = []
        for contact_id in touched:
            change = UpdateContact(contact=contact_id, add_points=new_points.get(contact_id, []))
            if contact_id in owner_changes:
                change.owner_id = owner_changes[contact_id]
            if contact_id in links:
                change.company = links[contact_id]
            out.append(change)
        return out

    async def _lock(self, conn: AsyncConnection, keys: list[tuple[str, str]]) -> None:
        # Sorted, so two batches sharing points take their locks in one order and cannot
        # deadlock; held to the end of the transaction.
        await conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
            ),
            {"keys": sorted({lock_key(*key) for key in keys})},
        )

    @staticmethod
    async def _named(
        conn: AsyncConnection, spans: set[tuple[str, str]], kinds: set[str] | None = None
    ) -> dict[Block, list[int]]:
        """The contacts in these ranges of name keys by name block; up to ``NAME_ROWS``
        contacts a range are read (a name that common in one store is in blocks too big
        to find anyone by). ``kinds`` are the blocks wanted ("born", "address",
        "company", "city"); the others are not read."""
        if not spans:
            return {}
        kinds = set(KINDS) if kinds is None else kinds
        custom = contacts_t.c.custom
        columns = [contacts_t.c.id, contacts_t.c.name_key]
        columns.append(contacts_t.c.birth_date if "born" in kinds else null())  # no JSON read
        columns.append(custom["address"].as_string() if "address" in kinds else null())
        columns.append(custom["personal_tax_id"].as_string() if "inn" in kinds else null())
        columns.append(custom["snils"].as_string() if "snils" in kinds else null())
        columns.append(contacts_t.c.city if "city" in kinds else null())
        if "company" in kinds:
            company = contacts_t.c.custom["company"].as_string()
            columns.append(func.coalesce(companies_t.c.name, company))
        else:
            columns.append(null())
        # One statement for all the ranges: each round trip to the store costs more than
        # the rows it reads.
        query = select(*columns).where(
            or_(
                *(
                    contacts_t.c.name_key == low
                    if low == high
                    else contacts_t.c.name_key.between(low, high)
                    for low, high in sorted(spans)
                )
            )
        )
        if "company" in kinds:
            query = query.outerjoin(companies_t, companies_t.c.id == contacts_t.c.company_id)
        found: dict[Block, list[int]] = {}
        for cid, key, born, lives, inn, snils, city, works in await conn.execute(
            query.limit(NAME_ROWS * len(spans))
        ):
            for block in key_blocks(
                key,
                birth_date=born,
                company=works,
                city=city,
                address=lives,
                personal_tax_id=inn,
                snils=snils,
            ):
                holders = found.setdefault(block, [])
                if cid not in holders:
                    holders.append(cid)
        return found

    @staticmethod
    async def _by_birth_date(conn: AsyncConnection, blocks: set[Block]) -> dict[Block, list[int]]:
        """The contacts in these birth-date-and-address blocks: those born on one of the
        days (``contacts.birth_date``, indexed) whose address is the block's."""
        dates = sorted({detail.split(" ", 2)[1] for _, detail in blocks})
        if not dates:
            return {}
        lives = contacts_t.c.custom["address"].as_string()
        found: dict[Block, list[int]] = {}
        for cid, date, address in await conn.execute(
            select(contacts_t.c.id, contacts_t.c.birth_date, lives).where(
                contacts_t.c.birth_date.in_(dates)
            )
        ):
            block = detail_block(date, address)
            if block in blocks:
                found.setdefault(block, []).append(cid)
        return found

    @staticmethod
    async def _contacts(
        conn: AsyncConnection,
        ids: set[int],
        external_ids: bool = False,
        keys: Sequence[tuple[str, str]] = (),
        deals: bool = False,
    ) -> dict[int, _Contact]:
        """The contacts ``ids`` and those holding one of the points ``keys``, with their
        points (and with ``deals`` their deals, in the same statement); with
        ``external_ids`` their ids in source systems, too (one more statement, so only
        for a batch that compares them)."""
        if not ids and not keys:
            return {}
        wanted: dict[str, list[str]] = {}
        for kind, normalized in keys:
            wanted.setdefault(kind, []).append(normalized)
        held = points_t.alias("held")
        which = []
        if ids:
            which.append(contacts_t.c.id.in_(sorted(ids)))
        if wanted:
            which.append(
                contacts_t.c.id.in_(
                    select(held.c.contact_id).where(
                        or_(
                            *(
                                and_(held.c.kind == kind, held.c.normalized.in_(values))
                                for kind, values in wanted.items()
                            )
                        )
                    )
                )
            )
        found: dict[int, _Contact] = {}
        # The contacts with their phones and emails in one statement: a round trip to the
        # store costs more than the few rows a contact's points add.
        deal_columns = (
            [
                deals_t.c.id,
                deals_t.c.pipeline_id,
                deals_t.c.stage_id,
                deals_t.c.status,
                deals_t.c.owner_id,
                deals_t.c.closed_at,
            ]
            if deals
            else [null()]
        )
        query = (
            select(
                contacts_t.c.id,
                contacts_t.c.name,
                contacts_t.c.city,
                contacts_t.c.owner_id,
                contacts_t.c.custom,
                contacts_t.c.company_id,
                companies_t.c.name,
                companies_t.c.tax_id,
                points_t.c.kind,
                points_t.c.normalized,
                *deal_columns,
            )
            .outerjoin(companies_t, companies_t.c.id == contacts_t.c.company_id)
            .outerjoin(points_t, points_t.c.contact_id == contacts_t.c.id)
            .where(or_(*which))
        )
        if deals:
            query = query.outerjoin(deals_t, deals_t.c.contact_id == contacts_t.c.id)
        for row in await conn.execute(query):
            cid, name, city, owner_id, custom, company_id, company, tax_id, kind, value = row[:10]
            contact = found.get(cid)
            if contact is None:
                contact = found[cid] = _Contact(
                    cid,
                    name,
                    company or (custom or {}).get("company"),
                    city,
                    owner_id,
                    set(),
                    company_ref=company_id,
                    tax_id=tax_id,
                    details=identifying(custom),
                )
            if kind is not None:
                contact.points.add((kind, value))
            if deals and row[10] is not None and row[10] not in contact.deals:
                contact.deals[row[10]] = _Deal(*row[10:16])
        if external_ids:
            for cid, system, value in await conn.execute(
                select(ids_t.c.contact_id, ids_t.c.system, ids_t.c.external_id).where(
                    ids_t.c.contact_id.in_(sorted(found))
                )
            ):
                found[cid].external_ids.add((system, value))
        return found

    def _match(
        self,
        plan: _Plan,
        holders: dict[tuple[str, str], list[int]],
        contacts: dict[int, _Contact],
        batch_holders: dict[tuple[str, str], list[_Contact]],
        named: dict[Block, list[int]] | None = None,
        batch_blocks: dict[Block, list[_Contact]] | None = None,
    ) -> None:
        lead = plan.lead
        keys = [(p.kind, p.normalized) for p in plan.points]
        held = {k: len(holders.get(k, [])) + len(batch_holders.get(k, [])) for k in keys}
        generic = {k for k in keys if self._is_generic(k)}
        shared = generic | {k for k in keys if held[k] >= self.matching.shared_after}
        incoming = Incoming(
            lead.name,
            lead.company,
            lead.city,
            plan.points,
            shared,
            plan.tax_id,
            household={k for k in shared - generic if held[k] <= HOUSEHOLD},
            external_ids=_external_ids(lead),
            **identifying(lead.custom),
        )
        candidates: list[_Contact] = []
        for k in keys:
            for cid in holders.get(k, []):
                if contacts[cid] not in candidates:
                    candidates.append(contacts[cid])
            for contact in batch_holders.get(k, []):
                if contact not in candidates:
                    candidates.append(contact)
        for block in sorted(plan.blocks):
            known = (named or {}).get(block, [])
            batch = (batch_blocks or {}).get(block, [])
            if len(known) + len(batch) > MAX_BLOCK:
                continue  # a common name in a big city: it says too little to look at all
            for contact in [*(contacts[cid] for cid in known), *batch]:
                if contact not in candidates:
                    candidates.append(contact)
        best: tuple[_Contact, Score] | None = None
        model = self.model  # once a lead, not once a candidate
        for contact in candidates:
            candidate = Candidate(
                contact.id or 0,
                contact.name,
                contact.company,
                contact.city,
                contact.owner_id,
                contact.points,
                contact.tax_id,
                external_ids=contact.external_ids,
                **contact.details,
            )
            result = score(incoming, candidate, self.matchers, model)
            if best is None or result.value > best[1].value:
                best = (contact, result)
        if best is not None and best[1].value >= self.matching.join:
            plan.contact, plan.match = best
            return
        if best is not None and best[1].value >= self.matching.review:
            plan.review = best
        plan.contact = _Contact(
            None,
            lead.name,
            lead.company,
            lead.city,
            None,
            set(),
            lead=lead,
            tax_id=plan.tax_id,
            details=identifying(lead.custom),  # a later lead of the batch compares them too
            external_ids=_external_ids(lead),
        )
        plan.decision = "possible_duplicate" if plan.review else "new_contact"

    def _decide(self, plan: _Plan, history: list[_Deal], now: datetime) -> None:
        """Attach to an open deal, reopen a recent one, or open a new one."""
        contact = plan.contact
        assert contact is not None
        here = [d for d in history if d.pipeline_id == plan.pipeline.id]
        open_deal = next((d for d in here if d.status == "open"), None)
        if open_deal is not None:
            plan.action, plan.deal, plan.decision = "attach", open_deal, "added_to_open_deal"
            return
        configured = self.settings.pipelines.get(plan.pipeline.key)
        repeat = configured.repeat if configured else None
        closed = next((d for d in here if d.status in ("won", "lost") and d.closed_at), None)
        if (
            closed is not None
            and repeat is not None
            and repeat.on_recent_closed == "reopen"
            and now - closed.closed_at <= repeat.recent_within  # type: ignore[operator]
        ):
            plan.action, plan.deal, plan.decision = "reopen", closed, "reopened_deal"
            closed.status, closed.stage_id = "open", plan.stage.id
            return
        if contact.id is not None:
            plan.decision = "new_deal_for_contact"
        plan.deal = _Deal(
            None, plan.pipeline.id, plan.stage.id, "open", None, None, created_by=plan
        )
        history.insert(0, plan.deal)

    async def _assign(
        self, conn: AsyncConnection, plans: Sequence[_Plan], now: datetime
    ) -> dict[int, int | None]:
        """Owners for every plan, with one rotation reservation per batch; returns known
        contacts that get a new owner."""
        assigner = await Assigner.load(conn, self.settings)
        # A contact without an active owner is assigned once, for its first request here;
        # its later requests in the batch follow it.
        first: dict[_Contact, int] = {}
        opener: dict[_Contact, _Plan] = {}
        requests: list[Request] = []
        for plan in plans:
            contact, deal = plan.contact, plan.deal
            assert contact is not None
            assert deal is not None
            if plan.action != "new_deal" and deal.owner_id in assigner.active:
                continue
            if contact.owner_id in assigner.active or contact in first:
                continue
            first[contact] = len(requests)
            opener[contact] = plan
            requests.append(Request(plan.lead, plan.pipeline.key))
        assignments = await assigner.assign(requests, partial(self.reserve, conn), now)
        changes: dict[int, int | None] = {}
        for contact, index in first.items():
            contact.owner_id = assignments[index].owner_id
            if contact.id is not None:
                changes[contact.id] = contact.owner_id
        for plan in plans:
            contact, deal = plan.contact, plan.deal
            assert contact is not None
            assert deal is not None
            if plan.action != "new_deal" and deal.owner_id in assigner.active:
                plan.owner_id, plan.rule = deal.owner_id, "contact_owner"
            elif opener.get(contact) is plan:
                chosen = assignments[first[contact]]
                plan.owner_id, plan.rule = chosen.owner_id, chosen.rule
            else:
                plan.owner_id, plan.rule = contact.owner_id, "contact_owner"
            if plan.action == "new_deal":
                deal.owner_id = plan.owner_id
        return changes

    async def _companies(
        self, conn: AsyncConnection, plans: Sequence[_Plan]
    ) -> tuple[list[Change], dict[int, CompanyRef]]:
        """The company of each lead that names one: found by tax id, else by name key
        (a company with another tax id is not the same), else created. Contacts
        without a company get it; new deals carry it. Returns the companies to create
        and, per known contact, the company it is to be linked to."""
        wanted: list[tuple[_Plan, str | None, str | None]] = []
        for plan in plans:
            key = company_key(plan.lead.company) if plan.lead.company else None
            if plan.tax_id or key:
                wanted.append((plan, plan.tax_id, key or None))
        if not wanted:
            return [], {}
        taxes = sorted({t for _, t, _ in wanted if t})
        keys = sorted({k for _, _, k in wanted if k})
        rows = await conn.execute(
            select(companies_t.c.id, companies_t.c.tax_id, companies_t.c.name_key)
            .where(or_(companies_t.c.tax_id.in_(taxes), companies_t.c.name_key.in_(keys)))
            .order_by(companies_t.c.id)
        )
        by_tax: dict[str, CompanyRef] = {}
        by_key: dict[str, tuple[CompanyRef, str | None]] = {}
        for company_id, tax_id, name_key in rows:
            if tax_id:
                by_tax.setdefault(tax_id, company_id)
            if name_key:
                by_key.setdefault(name_key, (company_id, tax_id))
        creates: list[Change] = []
        links: dict[int, CompanyRef] = {}
        for plan, tax_id, key in wanted:
            found = by_tax.get(tax_id) if tax_id else None
            if found is None and key in by_key:
                company, known_tax = by_key[key]
                if not tax_id or not known_tax or known_tax == tax_id:
                    found = company
            if found is None:
                found = CreateCompany(
                    name=(plan.lead.company or f"ИНН {tax_id}")[:300],
                    name_key=key,
                    tax_id=tax_id,
                    city=plan.lead.city,
                    owner_id=plan.owner_id,
                )
                creates.append(found)
                if tax_id:
                    by_tax[tax_id] = found
                if key:
                    by_key[key] = (found, tax_id)
            plan.company = found
            contact = plan.contact
            assert contact is not None
            if contact.company_ref is None:
                contact.company_ref = found
                if contact.id is not None:
                    links[contact.id] = found
        return creates, links

    def _deal_changes(
        self, plans: Sequence[_Plan], now: datetime, changes: list[Change]
    ) -> list[RecordLead]:
        """Deals created, reopened or asked about again, and each lead's task; appended to
        ``changes`` kind by kind (the writer bulk-writes runs of one kind). Returns each
        lead's record, written last."""
        created, reopened, repeated, tasks = [], [], [], []
        records: list[RecordLead] = []
        for plan in plans:
            lead, contact, deal = plan.lead, plan.contact, plan.deal
            assert contact is not None and deal is not None
            if plan.action == "new_deal":
                custom = dict(lead.custom)
                if lead.company:
                    custom.setdefault("company", lead.company)
                deal.create = CreateDeal(
                    title=deal_title(lead),
                    pipeline_id=plan.pipeline.id,
                    stage_id=plan.stage.id,
                    contact=contact.ref,
                    company=plan.company or contact.company_ref,
                    owner_id=plan.owner_id,
                    amount=lead.amount,
                    currency=lead.currency,
                    source=lead.source,
                    segment=lead.segment,
                    custom=custom,
                    utm=lead.utm,
                    inbox_id=plan.inbox_id,
                    channel=lead.channel,
                )
                created.append(deal.create)
                stage, title = plan.stage, plan.pipeline.first_task
            elif plan.action == "reopen":
                assert deal.id is not None
                reopened.append(
                    Reopen(
                        deal=deal.id,
                        stage=plan.stage.key,
                        owner_id=plan.owner_id,
                        inbox_id=plan.inbox_id,
                        channel=lead.channel,
                    )
                )
                stage, title = plan.stage, plan.pipeline.first_task
            else:  # the open deal may be one an earlier lead of this batch creates
                repeated.append(
                    RepeatInquiry(deal=deal.ref, inbox_id=plan.inbox_id, channel=lead.channel)
                )
                stage = self.catalog.stages_by_id.get(deal.stage_id, plan.stage)
                title = self._repeat_task(plan)
            task: AddTask | None = None
            if lead.follow_up or plan.action != "attach":
                task = AddTask(
                    title=lead.task or title,
                    due_at=now
                    + (lead.task_within or stage.contact_within or DEFAULT_CONTACT_WITHIN),
                    deal=deal.ref,
                    contact=contact.ref,
                    owner_id=plan.owner_id,
                    task_kind=lead.task_kind,
                )
                tasks.append(task)
            match = plan.match.describe() if plan.match is not None else None
            duplicate_of: ContactRef | None = None
            if plan.review is not None:
                duplicate_of = plan.review[0].ref
                match = plan.review[1].describe()
            records.append(
                RecordLead(
                    inbox_id=plan.inbox_id,
                    channel=lead.channel,
                    decision=plan.decision,
                    contact=contact.ref,
                    deal=deal.ref,
                    task=task,
                    owner_id=plan.owner_id,
                    assigned_by=plan.rule,
                    match=match,
                    possible_duplicate_of=duplicate_of,
                )
            )
        changes += created
        changes += reopened
        changes += repeated
        changes += tasks
        return records

    def _repeat_task(self, plan: _Plan) -> str:
        configured = self.settings.pipelines.get(plan.pipeline.key)
        return configured.repeat.task if configured else "Repeat request from the client"

    @staticmethod
    def _flags(reviews: Sequence[_Plan], origin: str) -> list[Change]:
        out: list[Change] = []
        for plan in reviews:
            assert plan.review is not None and plan.contact is not None
            other, result = plan.review
            out.append(
                FlagDuplicate(
                    contact=plan.contact.ref,
                    other=other.ref,
                    score=result.value,
                    reasons=list(result.reasons),
                    origin=origin,
                    inbox_id=plan.inbox_id if origin == "intake" else None,
                )
            )
        return out

    @staticmethod
    def _activity(plan: _Plan) -> LogActivity:
        lead, contact, deal = plan.lead, plan.contact, plan.deal
        assert contact is not None and deal is not None
        return LogActivity(
            activity=lead.activity_kind,
            summary=lead.summary or f"{lead.activity_kind} via {lead.channel}",
            deal=deal.ref,
            contact=contact.ref,
            direction=lead.activity_direction,
            result=lead.activity_result,
            payload={
                **lead.activity_payload,
                "submission": lead.submission,
                "message": lead.message,
                "invalid_points": plan.invalid,
            },
            occurred_at=plan.received_at,
            inbox_id=plan.inbox_id,
        )


def _holding(
    contacts: dict[int, _Contact], keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[int]]:
    """The contacts holding each point of ``keys``, oldest first."""
    wanted = set(keys)
    holders: dict[tuple[str, str], list[int]] = {}
    for cid in sorted(contacts):
        for point in contacts[cid].points & wanted:
            holders.setdefault(point, []).append(cid)
    return holders


def _external_ids(lead: Lead) -> set[tuple[str, str]]:
    return {split_external_id(lead.external_id)} if lead.external_id else set()


def deal_title(lead: Lead) -> str:
    if lead.title:
        return lead.title[:300]
    who = lead.name or (lead.phones[0] if lead.phones else None)
    who = who or (lead.emails[0] if lead.emails else None) or "lead"
    return who[:300]
