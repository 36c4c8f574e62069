"""Triggers, and the stages' actions on enter: what the hub does when something happens.

A trigger is declared in the config::

    [[plugins.triggers.rules]]
    name = "lost_to_competitor"
    on = "deal.lost"                                    # an event type, or a list of them
    when = 'event.payload.reason == "Выбрали конкурента"'  # optional, in CEL
    actions = [{ notify = ["head"], template = "deal_lost" }]

After every batch the writer writes (on every path: the API, the CLI, an import, the
lead pipeline, a plugin, another rule), each trigger listening to an event of the
batch checks its condition and answers with its actions: ``notify`` (people or
chats, through the notifiers), ``task`` (for the deal's owner, ``due`` counted in the
owner's working time), ``close_tasks``, ``set`` (deal fields) and ``move_to`` (a
stage, through the stage rules like any move). The actions of one trigger for one
event are one :class:`~hub.deals.Reaction`, written as the actor ``rule:trigger:NAME``
in the batch's transaction: refused by a guard, they are dropped together and logged
(``rule_refused``), and the write that fired them stands. A chain of rules firing
each other is cut at :data:`hub.deals.writer.MAX_REACTION_DEPTH` (``rule_depth_exceeded``).

The condition is CEL (https://cel.dev), compiled at start-up: one that does not
compile, or names something that is not there, stops the start naming the trigger.
It sees ``event`` (``id``, ``type``, ``subject``, ``subject_id``, ``payload``,
``occurred_at``), and where the event has them ``deal`` (``id``, ``title``,
``amount`` as a double or null, ``currency``, ``stage`` and ``pipeline`` keys,
``owner`` email, ``source``, ``segment``, ``status``, ``loss_reason``,
``competitor``, ``custom``) and ``contact`` (``id``, ``name``, ``city``,
``segment``). A condition that fails on an event (a key the event lacks, a null
compared with a number) is false for it, and logged once per trigger.

A stage's ``on_enter`` (``[[pipelines.X.stages]]``, :class:`hub.config.StageAction`) is
done the same way, as the actor ``rule:stage:PIPELINE.STAGE``, whenever a deal enters
the stage: a move, a reopening, a win or a loss (into the won or lost stage), and a
new deal created in its pipeline's first stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import cel
import structlog
from cel.stdlib import STDLIB_FUNCTIONS
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.config import Duration, Settings, StageAction, check_recipients
from hub.deals import Reaction, StoreReader
from hub.hookspecs import hookimpl
from rules.actions import Actions, Scene, load, say

log = structlog.get_logger("rules.triggers")

# -- conditions --------------------------------------------------------------------------------

VARIABLES = ("event", "deal", "contact")
# CEL's own functions and macros, and the extension library the package ships (added to
# every evaluation that uses it). Anything else is a typo, caught at start-up.
NATIVE_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "type",
        "dyn",
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
LIBRARY_FUNCTIONS = frozenset(name.rsplit(".", 1)[-1] for name in STDLIB_FUNCTIONS)
LIBRARY_NAMESPACES = frozenset(name.split(".")[0] for name in STDLIB_FUNCTIONS if "." in name)
# The variable a macro binds: the ``x`` of ``list.exists(x, x > 1)``.
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


# A dotted path into the variables: ``event.payload.reason``, ``deal.amount``.
# A name followed by "(" is a method (``contact.city.lowerAscii()``), not a field.
_PATH = re.compile(r"\b(?:event|deal|contact)(?:\s*\.\s*[A-Za-z_]\w*\b(?!\s*\())*")


@dataclass(frozen=True, slots=True)
class Condition:
    source: str
    program: Any  # cel.Program
    library: bool  # uses a function of the extension library
    # The paths the condition reads. Handing CEL only these, not every variable, is what
    # makes it cheap: converting a deal, its client and an event's payload into CEL values
    # costs ~100 µs, the evaluation itself ~1 µs, and the lead pipeline asks per lead.
    paths: tuple[tuple[str, ...], ...] = ()

    def holds(self, variables: dict[str, Any]) -> Any:
        given = cel_value(_pick(variables, self.paths) if self.paths else variables)
        context: Any = cel.Context(given, STDLIB_FUNCTIONS) if self.library else given
        return self.program.execute(context)


def _pick(variables: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """The part of ``variables`` under ``paths``; a path that is not there is left out (the
    condition then fails on it as it would on the whole)."""
    picked: dict[str, Any] = {}
    for path in paths:
        source: Any = variables
        target = picked
        for depth, name in enumerate(path):
            if not isinstance(source, dict) or name not in source:
                break
            source = source[name]
            if depth == len(path) - 1:
                target[name] = source
            else:
                existing = target.get(name)
                if not isinstance(existing, dict):
                    existing = target[name] = {}
                target = existing
    return picked


def _paths(source: str) -> tuple[tuple[str, ...], ...]:
    """The variable paths ``source`` reads, shortest first, without one under another."""
    found = sorted(
        {tuple(part.strip() for part in match.split(".")) for match in _PATH.findall(source)},
        key=len,
    )
    kept: list[tuple[str, ...]] = []
    for path in found:
        if not any(path[: len(k)] == k for k in kept):
            kept.append(path)
    return tuple(kept)


def compile_condition(source: str) -> Condition:
    """Compile a CEL condition, or raise ValueError saying what is wrong with it."""
    try:
        program = cel.compile(source)
    except Exception as error:  # the package raises ValueError; anything else is as bad
        raise ValueError(f"does not compile: {_parse_error(str(error))}") from None
    bound = set(_BOUND.findall(source))
    unknown = [
        name
        for name in program.variables()
        if name not in VARIABLES and name not in bound and name not in LIBRARY_NAMESPACES
    ]
    if unknown:
        raise ValueError(
            f"unknown name {', '.join(map(repr, unknown))}: a condition sees {', '.join(VARIABLES)}"
        )
    functions = [f for f in program.functions() if f[0].isalpha()]
    strange = [f for f in functions if f not in NATIVE_FUNCTIONS and f not in LIBRARY_FUNCTIONS]
    if strange:
        raise ValueError(f"unknown function {', '.join(map(repr, strange))}")
    library = any(f in LIBRARY_FUNCTIONS and f not in NATIVE_FUNCTIONS for f in functions)
    # A macro's own variable (``x`` in ``deal.tags.exists(x, x == "vip")``) reads through
    # the list it ranges over, which the paths already hold whole.
    return Condition(source, program, library, _paths(_strip_strings(source)))


def _strip_strings(source: str) -> str:
    """``source`` with its string literals emptied, so "deal.x" inside quotes is no path."""
    return re.sub(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", '""', source)


def _parse_error(message: str) -> str:
    """CEL's parse error on one line: where, and what it found (not all it expected)."""
    found = _PARSE_ERROR.search(message)
    if found is None:
        return " ".join(message.split())
    line, column, what = found.groups()
    what = what.split(" expecting ")[0]
    return f"line {line}, column {column}: {what}"


def cel_value(value: Any) -> Any:
    """``value`` as CEL takes it: amounts as doubles, sets and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): cel_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [cel_value(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


# -- the configuration -------------------------------------------------------------------------

# Deal fields a trigger may set, as SetDealFields takes them.
SETTABLE = ("title", "amount", "currency", "segment", "custom")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_ACTIONS = ("notify", "task", "close_tasks", "set", "move_to")


def _settings(info: ValidationInfo) -> Settings | None:
    context = info.context or {}
    found = context.get("settings")
    return found if isinstance(found, Settings) else None


class TriggerAction(BaseModel):
    """One thing a trigger does: exactly one of notify, task, close_tasks, set, move_to."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    notify: list[str] = []  # owner, head, admin, user:EMAIL, chat:NAME
    via: list[str] | None = None  # notifiers; none: every one that reaches them
    template: str | None = None  # hub/templates/notifications/NAME.j2; none: by the event
    task: str | None = None  # a task with this title for the deal's owner ...
    due: Duration = timedelta(days=1)  # ... due this long after, in their working time
    close_tasks: bool = False  # complete the deal's open tasks
    set_: dict[str, Any] | None = Field(None, alias="set")  # deal fields: {segment = "Опт"}
    move_to: str | None = None  # a stage key of the deal's pipeline, through the guards

    @field_validator("notify")
    @classmethod
    def _recipients(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check_recipients(value)
        settings = _settings(info)
        if settings is not None:
            emails = {u.email for u in settings.users}
            for item in value:
                email = item.removeprefix("user:").lower()
                if item.startswith("user:") and email not in emails:
                    raise ValueError(f"{item!r}: no such user under [[users]]")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not _TEMPLATE_NAME.match(value):
            raise ValueError(f"{value!r}: name a template by its file name without .j2")
        return value

    @field_validator("task")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a task needs a title")
        return value.strip() if value else value

    @field_validator("due")
    @classmethod
    def _due(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("set_")
    @classmethod
    def _fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise ValueError(f"name the fields to set: {', '.join(SETTABLE)}")
        for name, item in value.items():
            if name not in SETTABLE:
                raise ValueError(f"{name!r} is not a field a trigger sets ({', '.join(SETTABLE)})")
            if name == "custom" and not isinstance(item, dict):
                raise ValueError('custom takes a table: set = { custom = { contract_date = "" } }')
            if name == "amount" and item is not None:
                try:
                    Decimal(str(item))
                except InvalidOperation:
                    raise ValueError(f"amount {item!r} is not a number") from None
            if name in ("title", "currency", "segment") and not isinstance(item, str):
                raise ValueError(f"{name} takes text, not {item!r}")
            if name == "title" and not item.strip():
                raise ValueError("a deal needs a title")
        return value

    @field_validator("move_to")
    @classmethod
    def _stage(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = _settings(info)
        if value is None or settings is None:
            return value
        open_stages = {
            s.key for p in settings.pipelines.values() for s in p.stages if s.kind == "open"
        }
        if value not in open_stages:
            raise ValueError(
                f"no open stage {value!r} in any pipeline (a deal is won or lost by a person, "
                "with its amount or reason)"
            )
        return value

    @model_validator(mode="after")
    def _one_thing(self) -> TriggerAction:
        given = self.model_fields_set
        doing = [
            name
            for name, on in (
                ("notify", bool(self.notify)),
                ("task", self.task is not None),
                ("close_tasks", self.close_tasks),
                ("set", self.set_ is not None),
                ("move_to", self.move_to is not None),
            )
            if on
        ]
        if len(doing) != 1:
            found = f" (found {', '.join(doing)})" if doing else ""
            raise ValueError(
                f"an action does exactly one of {', '.join(_ACTIONS)}{found}; "
                "write several actions for several things"
            )
        if doing != ["notify"] and ({"via", "template"} & given):
            raise ValueError("via and template go with notify")
        if doing != ["task"] and "due" in given:
            raise ValueError("due goes with task")
        return self


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    on: Annotated[list[str], BeforeValidator(_listed)]
    when: str | None = None
    enabled: bool = True
    actions: list[TriggerAction] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or ":" in value:
            raise ValueError("a trigger's name is text without ':'")
        return value.strip()

    @field_validator("on")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one event type, e.g. deal.lost")
        for item in value:
            if not _EVENT_TYPE.match(item):
                raise ValueError(f"{item!r} is not an event type (deal.lost, task.overdue, ...)")
        return value

    @field_validator("when")
    @classmethod
    def _condition(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            compile_condition(value)
        except ValueError as error:
            name = info.data.get("name", "?")
            raise ValueError(f"trigger {name!r}: {error}") from None
        return value


class TriggersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Trigger] = []

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[Trigger]) -> list[Trigger]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"two triggers are named {rule.name!r}; names must be unique")
            seen.add(rule.name)
        return value


# -- the plugin --------------------------------------------------------------------------------

# Events by which a deal enters a stage: (pipeline, stage) from the payload.
_ENTERS = {
    "deal.stage_changed": "to_stage",
    "deal.reopened": "to_stage",
    "deal.won": "stage",
    "deal.lost": "stage",
    "deal.created": "stage",  # only into the pipeline's first stage
}


@dataclass(frozen=True, slots=True)
class _Trigger:
    name: str
    condition: Condition | None
    actions: tuple[TriggerAction, ...]

    @property
    def closes_tasks(self) -> bool:
        return any(a.close_tasks for a in self.actions)


class Triggers:
    """Triggers from ``[plugins.triggers]`` and the stages' ``on_enter``, as ``hub_react``."""

    enabled_by_default = True
    Config = TriggersConfig

    def __init__(self, config: TriggersConfig | None, hub: Any) -> None:
        self.config = config or TriggersConfig()
        self.hub = hub
        # The fast path: a batch of events nobody listens to costs a dict look-up per event.
        self.by_type: dict[str, list[_Trigger]] = {}
        for rule in self.config.rules:
            if not rule.enabled:
                continue
            trigger = _Trigger(
                rule.name,
                compile_condition(rule.when) if rule.when else None,
                tuple(rule.actions),
            )
            for kind in dict.fromkeys(rule.on):
                self.by_type.setdefault(kind, []).append(trigger)
        self.on_enter: dict[tuple[str, str], list[StageAction]] = {}
        self.first_stage: dict[str, str] = {}
        for key, pipeline in hub.settings.pipelines.items():
            self.first_stage[key] = next(s.key for s in pipeline.stages if s.kind == "open")
            for stage in pipeline.stages:
                if stage.on_enter:
                    self.on_enter[(key, stage.key)] = list(stage.on_enter)
        self.stage_names = {
            (key, s.key): s.name for key, p in hub.settings.pipelines.items() for s in p.stages
        }
        self._reported: set[str] = set()  # triggers whose condition failed, logged once
        if not self.by_type and not self.on_enter:
            # Nothing to answer: no hub_react at all (pluggy registers only routines), so
            # the writer skips asking the rules after every batch.
            self.hub_react = None  # type: ignore[assignment]

    @hookimpl
    async def hub_react(
        self, events: Sequence[dict[str, Any]], store: StoreReader
    ) -> list[Reaction]:
        if not self.by_type and not self.on_enter:
            return []
        entering: list[tuple[dict[str, Any], str, str]] = []
        firing: list[tuple[dict[str, Any], list[_Trigger]]] = []
        for event in events:
            kind = event["type"]
            if self.on_enter and kind in _ENTERS:
                stage = self._entered(event)
                if stage is not None:
                    entering.append((event, *stage))
            triggers = self.by_type.get(kind)
            if triggers:
                firing.append((event, triggers))
        if not entering and not firing:
            return []
        catalog = self.hub.catalog
        if catalog is None:
            return []
        closes = any(a.close_tasks for _, p, s in entering for a in self.on_enter[(p, s)]) or any(
            t.closes_tasks for _, triggers in firing for t in triggers
        )
        scene = await load(
            store,
            [e for e, _, _ in entering] + [e for e, _ in firing],
            open_tasks=closes,
            created_tasks=[e["subject_id"] for e in events if e["type"] == "task.created"],
        )
        actions = Actions(self.hub, catalog)
        reactions: list[Reaction] = []
        for event, pipeline, stage in entering:
            reactions.append(self._stage(actions, scene, event, pipeline, stage))
        for event, triggers in firing:
            variables: dict[str, Any] | None = None
            for trigger in triggers:
                if trigger.condition is not None:
                    if variables is None:
                        variables = self._variables(event, scene, catalog)
                    if not self._holds(trigger, variables, event):
                        continue
                reactions.append(self._fire(actions, scene, event, trigger))
        return [r for r in reactions if r.changes]

    def _entered(self, event: dict[str, Any]) -> tuple[str, str] | None:
        payload = event["payload"]
        pipeline = payload.get("pipeline")
        stage = payload.get(_ENTERS[event["type"]])
        if (pipeline, stage) not in self.on_enter:
            return None
        if event["type"] == "deal.created" and stage != self.first_stage.get(pipeline):
            return None  # an import placing a deal mid-pipeline did not "enter" the stage
        return pipeline, stage

    def _stage(
        self, actions: Actions, scene: Scene, event: dict[str, Any], pipeline: str, stage: str
    ) -> Reaction:
        rule = f"stage:{pipeline}.{stage}"
        deal = scene.deal_of(event)
        contact = scene.contact_of(event, deal)
        name = self.stage_names.get((pipeline, stage), stage)
        context = actions.context(event, deal, contact, stage={"key": stage, "name": name})
        changes = []
        for index, action in enumerate(self.on_enter[(pipeline, stage)]):
            changes += actions.changes(
                action,
                event=event,
                deal=deal,
                contact=contact,
                scene=scene,
                rule=rule,
                key=f"{rule}:{index}:event:{event['id']}",
                context=context,
                closed_result=say("closed_by_stage", stage=name),
            )
        return Reaction(rule, changes)

    def _fire(
        self, actions: Actions, scene: Scene, event: dict[str, Any], trigger: _Trigger
    ) -> Reaction:
        rule = f"trigger:{trigger.name}"
        deal = scene.deal_of(event)
        contact = scene.contact_of(event, deal)
        context = actions.context(event, deal, contact, trigger=trigger.name)
        changes = []
        notified = 0
        for action in trigger.actions:
            # "trigger:NAME:event:ID"; a trigger's second message about the event adds ":2".
            key = f"{rule}:event:{event['id']}"
            if action.notify:
                notified += 1
                if notified > 1:
                    key = f"{key}:{notified}"
            changes += actions.changes(
                action,
                event=event,
                deal=deal,
                contact=contact,
                scene=scene,
                rule=rule,
                key=key,
                context=context,
                closed_result=say("closed_by_trigger", trigger=trigger.name),
            )
        return Reaction(rule, changes)

    def _holds(self, trigger: _Trigger, variables: dict[str, Any], event: dict[str, Any]) -> bool:
        assert trigger.condition is not None
        try:
            result = trigger.condition.holds(variables)
        except Exception as error:
            self._report(trigger, event, str(error))
            return False
        if not isinstance(result, bool):
            self._report(trigger, event, f"the condition gave {result!r}, not true or false")
            return False
        return result

    def _report(self, trigger: _Trigger, event: dict[str, Any], error: str) -> None:
        if trigger.name in self._reported:
            return
        self._reported.add(trigger.name)
        log.warning(
            "trigger_condition_failed",
            trigger=trigger.name,
            condition=trigger.condition.source if trigger.condition else None,
            event_id=event["id"],
            event_type=event["type"],
            error=error.splitlines()[0] if error else error,
            hint="taken as false; reported once per trigger until the hub restarts",
        )

    @staticmethod
    def _variables(event: dict[str, Any], scene: Scene, catalog: Any) -> dict[str, Any]:
        occurred = event.get("occurred_at")
        found: dict[str, Any] = {
            "event": {
                "id": event["id"],
                "type": event["type"],
                "subject": event["subject"],
                "subject_id": event["subject_id"],
                "payload": event["payload"],  # converted for CEL by the condition, as read
                "occurred_at": occurred if isinstance(occurred, datetime) else None,
            }
        }
        deal = scene.deal_of(event)
        if deal is not None:
            stage = catalog.stages_by_id.get(deal["stage_id"])
            pipeline = catalog.pipelines_by_id.get(deal["pipeline_id"])
            found["deal"] = {
                "id": deal["id"],
                "title": deal["title"],
                "amount": float(deal["amount"]) if deal["amount"] is not None else None,
                "currency": deal["currency"],
                "stage": stage.key if stage else None,
                "pipeline": pipeline.key if pipeline else None,
                "owner": catalog.user_emails.get(deal["owner_id"]),
                "source": deal["source"],
                "segment": deal["segment"],
                "status": deal["status"],
                "loss_reason": deal["loss_reason"],
                "competitor": deal["competitor"],
                "custom": deal["custom"] or {},
            }
        contact = scene.contact_of(event, deal)
        if contact is not None:
            found["contact"] = {k: contact[k] for k in ("id", "name", "city", "segment")}
        return found
