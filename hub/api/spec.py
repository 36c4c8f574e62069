"""The OpenAPI document: reads and the form channel as written in ``openapi.json``, and every
write operation described from the very pydantic models that validate its body."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from hub.api import campaigns, deals, people, tasks
from hub.campaigns.audience import Audience

BASE = Path(__file__).with_name("openapi.json")

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry safely: the same key with the same request answers the first "
    "answer again (kept 24 h or more); with another request, 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_COMMON = {
    "400": {"description": "not JSON, or a bad parameter"},
    "401": {"description": "no token or an unknown one"},
    "404": {"description": "no such record, or not one the token may see"},
    "422": {
        "description": "refused: every bad field and every guard's reason, nothing changed",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    },
}

# (method, path, body model or None, summary, success status, what it answers)
WRITES: list[tuple[str, str, type[BaseModel] | None, str, str, str]] = [
    ("post", "/api/v1/deals", deals.DealIn, "A deal entered by hand", "201", "the deal's card"),
    (
        "patch",
        "/api/v1/deals/{id}",
        deals.DealPatch,
        "Set a deal's fields or owner",
        "200",
        "the deal's card",
    ),
    (
        "post",
        "/api/v1/deals/{id}/stage",
        deals.StageIn,
        "Move a deal to a stage",
        "200",
        "the deal's card",
    ),
    (
        "post",
        "/api/v1/deals/{id}/won",
        deals.WonIn,
        "Close a deal as won",
        "200",
        "the deal's card",
    ),
    (
        "post",
        "/api/v1/deals/{id}/lost",
        deals.LostIn,
        "Close a deal as lost, with the reason",
        "200",
        "the deal's card",
    ),
    (
        "post",
        "/api/v1/deals/{id}/reopen",
        deals.ReopenIn,
        "Reopen a closed deal",
        "200",
        "the deal's card",
    ),
    ("post", "/api/v1/deals/{id}/notes", deals.NoteIn, "Add a note to a deal", "201", "the note"),
    (
        "post",
        "/api/v1/deals/{id}/activities",
        deals.ActivityIn,
        "Log a call, meeting or email",
        "201",
        "the activity",
    ),
    ("post", "/api/v1/tasks", tasks.TaskIn, "Add a task", "201", "the task"),
    (
        "post",
        "/api/v1/tasks/{id}/complete",
        tasks.TaskDone,
        "Complete a task with its result",
        "200",
        "the task",
    ),
    (
        "patch",
        "/api/v1/tasks/{id}",
        tasks.TaskPatch,
        "Reschedule or reassign a task",
        "200",
        "the task",
    ),
    (
        "patch",
        "/api/v1/contacts/{id}",
        people.ContactPatch,
        "Edit a contact, its phones and emails",
        "200",
        "the contact's card",
    ),
    (
        "post",
        "/api/v1/contacts/{id}/merge",
        people.MergeIn,
        "Merge other_id into this contact (head, admin)",
        "201",
        "merge_id, for undoing it",
    ),
    (
        "post",
        "/api/v1/companies/{id}/merge",
        people.MergeIn,
        "Merge other_id into this company (head, admin)",
        "201",
        "merge_id, for undoing it",
    ),
    (
        "post",
        "/api/v1/merges/{id}/undo",
        None,
        "Undo a merge (head, admin)",
        "200",
        "what was restored",
    ),
    (
        "post",
        "/api/v1/duplicates/{id}/dismiss",
        None,
        "Not a duplicate: drop the pair from review (head, admin)",
        "200",
        "the pair",
    ),
]

# Segments and campaigns (head, admin). Not idempotent by key: a campaign's name is unique,
# and starting one twice is refused.
CAMPAIGNS: list[tuple[str, str, type[BaseModel] | None, str, str]] = [
    (
        "get",
        "/api/v1/segments/{name}/preview",
        None,
        "A segment's size, consent counts, a sample",
        "200",
    ),
    ("post", "/api/v1/segments/preview", Audience, "The same for a filter in the body", "200"),
    ("get", "/api/v1/campaigns", None, "Every campaign with its state", "200"),
    ("post", "/api/v1/campaigns", campaigns.NewCampaign, "A draft campaign", "201"),
    (
        "get",
        "/api/v1/campaigns/{id}",
        None,
        "Messages by state, skips, deals that came of it",
        "200",
    ),
    ("post", "/api/v1/campaigns/{id}/dry-run", None, "Render every message, send nothing", "200"),
    ("post", "/api/v1/campaigns/{id}/start", None, "Write the outbox; the hub sends it", "200"),
    ("post", "/api/v1/campaigns/{id}/pause", None, "Stop sending for now", "200"),
    ("post", "/api/v1/campaigns/{id}/resume", None, "Go on sending", "200"),
    ("post", "/api/v1/campaigns/{id}/cancel", None, "Stop for good", "200"),
    ("get", "/api/v1/campaigns/{id}/held", None, "Messages a crash left unknown", "200"),
    (
        "post",
        "/api/v1/campaigns/{id}/held",
        campaigns.SettleHeld,
        "Send held messages again, or take them as sent",
        "200",
    ),
    (
        "post",
        "/api/v1/contacts/{id}/consents",
        campaigns.NewConsent,
        "Record a contact's consent to advertising on a channel, or its withdrawal",
        "201",
    ),
]

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem document",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "object"}},
    },
}


@functools.cache
def document() -> bytes:
    spec = orjson.loads(BASE.read_bytes())
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM
    for method, path, model, summary, ok, answer in WRITES:
        operation: dict[str, Any] = {
            "summary": summary,
            "tags": ["write"],
            "parameters": ([_ID] if "{id}" in path else []) + [_KEY],
            "responses": {ok: {"description": answer}, **copy.deepcopy(_COMMON)},
        }
        if path.endswith(("merge", "undo", "dismiss")):
            operation["responses"]["403"] = {"description": "needs a head or admin token"}
            operation["responses"]["409"] = {"description": "cannot be done, and why"}
        if path.startswith(("/api/v1/contacts/{id}", "/api/v1/deals")) and method in (
            "post",
            "patch",
        ):
            operation["responses"].setdefault(
                "409", {"description": "a phone or email belongs to another contact (named)"}
            )
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        spec["paths"].setdefault(path, {})[method] = operation
    for method, path, model, summary, ok in CAMPAIGNS:
        parameters = [_ID] if "{id}" in path else []
        if "{name}" in path:
            parameters = [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        operation = {
            "summary": summary,
            "tags": ["campaigns"],
            "parameters": parameters,
            "responses": {
                ok: {"description": "OK"},
                **copy.deepcopy(_COMMON),
                "403": {"description": "needs a head or admin token"},
                "409": {"description": "cannot be done now, and why"},
            },
        }
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        spec["paths"].setdefault(path, {})[method] = operation
    return orjson.dumps(spec)
