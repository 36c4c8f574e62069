"""The deal store's one writer, the changes it takes and the events it writes.

Everything that changes contacts, companies, deals, tasks, notes, activities,
review pairs or merges hands :class:`DealWriter` a batch of typed changes
(:mod:`hub.deals.changes`); guards (``hub_guard``) see the batch first, and one
typed event (:mod:`hub.deals.events`) is written per change in the same
transaction.
"""

from hub.deals.actors import (
    LEAD_PIPELINE,
    SYSTEM,
    Actor,
    NotFound,
    Refusal,
    Refused,
    StoreReader,
)
from hub.deals.changes import Change
from hub.deals.writer import Applied, DealWriter, Reaction

__all__ = [
    "LEAD_PIPELINE",
    "SYSTEM",
    "Actor",
    "Applied",
    "Change",
    "DealWriter",
    "NotFound",
    "Reaction",
    "Refusal",
    "Refused",
    "StoreReader",
]
