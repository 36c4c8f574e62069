"""Durable intake: accepting channel input (:mod:`hub.intake.accept`) and processing it
(:mod:`hub.intake.worker`)."""

from hub.intake.accept import Accepted, Intake, IntakeClosed, UnstorableEvent, idempotency_keys
from hub.intake.worker import Worker, replay

__all__ = [
    "Accepted",
    "Intake",
    "IntakeClosed",
    "UnstorableEvent",
    "Worker",
    "idempotency_keys",
    "replay",
]
