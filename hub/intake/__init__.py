"""Durable intake: accepting channel input (:mod:`hub.intake.accept`), processing it
(:mod:`hub.intake.worker`) and keys a channel accepts once (:mod:`hub.intake.nonces`)."""

from hub.intake.accept import (
    Accepted,
    Intake,
    IntakeClosed,
    UnstorableEvent,
    idempotency_keys,
    storable_text,
)
from hub.intake.nonces import claim_once, release_claim
from hub.intake.worker import Worker, replay

__all__ = [
    "Accepted",
    "Intake",
    "IntakeClosed",
    "UnstorableEvent",
    "Worker",
    "claim_once",
    "idempotency_keys",
    "release_claim",
    "replay",
    "storable_text",
]
