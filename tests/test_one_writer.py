"""Only the writer (hub/deals/) writes CRM tables: read from the code itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITER = ROOT / "hub" / "deals"

CRM_MODELS = {
    "Contact": "contacts",
    "ContactPoint": "contact_points",
    "ContactExternalId": "contact_external_ids",
    "Company": "companies",
    "Deal": "deals",
    "StageChange": "stage_history",
    "Task": "tasks",
    "Note": "notes",
    "Activity": "activities",
    "Merge": "merges",
    "DuplicateCandidate": "duplicate_candidates",
    "DomainEvent": "domain_events",
    "Violation": "violations",
}
# Not here: the intake's inbox and the notification outbox. Rows are queued into the outbox
# only by the writer (with their cause); the sender's delivery bookkeeping (claimed, sent,
# failed) is hub/notify/outbox.py's, as the inbox's is the intake's.
CRM_TABLES = set(CRM_MODELS.values())
WRITES = {"insert", "update", "delete"}
RAW_SQL = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(" + "|".join(CRM_TABLES) + r")\b",
    re.IGNORECASE,
)


def _table_of(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The CRM table an expression stands for: ``Deal``, ``Deal.__table__``, ``deals_t``."""
    if isinstance(node, ast.Name):
        return CRM_MODELS.get(node.id) or aliases.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        return _table_of(node.value, aliases)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "alias"  # Contact.__table__.alias("a")
    ):
        return _table_of(node.func.value, aliases)
    return None


def writes_in(source: str) -> list[tuple[int, str]]:
    """(line, table) of every INSERT/UPDATE/DELETE of a CRM table in ``source``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            table = _table_of(node.value, aliases)
            if isinstance(target, ast.Name) and table:
                aliases[target.id] = table
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else None
            if isinstance(func, ast.Attribute):
                name = func.attr
                # deals_t.insert(), Deal.__table__.delete()
                if name in WRITES and (table := _table_of(func.value, aliases)):
                    found.append((node.lineno, table))
                    continue
            if name in WRITES or name == "dialect_insert":
                for arg in node.args:
                    if table := _table_of(arg, aliases):
                        found.append((node.lineno, table))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in RAW_SQL.finditer(node.value):
                found.append((node.lineno, match.group(1)))
    return sorted(found)


def test_no_module_but_the_writer_inserts_updates_or_deletes_a_crm_table():
    offenders = []
    for folder in ("hub", "plugins", "rules"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(WRITER) or "migrations" in path.parts:
                continue
            for line, table in writes_in(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line} writes {table}")
    assert offenders == [], "only hub/deals/ may write CRM tables:\n" + "\n".join(offenders)


def test_the_check_catches_every_way_of_writing_a_table():
    caught = writes_in(
        """
from sqlalchemy import delete, insert, update, text
from hub.store.models import Deal, Task, Contact, InboxEvent
deals_t = Deal.__table__
people = Contact.__table__.alias("p")
insert(deals_t)
update(Task).where(Task.id == 1)
Deal.__table__.delete()
people.update()
dialect_insert(conn, Contact.__table__)
text('UPDATE "notes" SET body = 1')
text("delete from merges where id = 1")
update(InboxEvent)
"""
    )
    assert [t for _, t in caught] == [
        "deals",
        "tasks",
        "deals",
        "contacts",
        "contacts",
        "notes",
        "merges",
    ]
    assert writes_in("select(Deal).where(Deal.id == 1)\nInboxEvent.__table__.insert()") == []
