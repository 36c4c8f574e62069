"""Who asks for a change, what a guard may answer, and how the writer refuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

if TYPE_CHECKING:
    from hub.deals.changes import Change


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: ``kind`` is user, token, plugin, lead_pipeline, import, rule or system.

    ``role`` limits what the writer lets through: a manager touches only records
    they own (anything else is "not found", never "forbidden").
    """

    kind: str
    name: str
    user_id: int | None = None
    role: str | None = None

    @classmethod
    def user(cls, user_id: int, email: str, role: str) -> Actor:
        return cls("user", email, user_id, role)

    @classmethod
    def token(cls, name: str, role: str, user_id: int | None) -> Actor:
        return cls("token", name, user_id, role)

    @classmethod
    def plugin(cls, name: str) -> Actor:
        return cls("plugin", name)

    @classmethod
    def rule(cls, name: str) -> Actor:
        return cls("rule", name)

    @classmethod
    def importer(cls, source: str) -> Actor:
        return cls("import", source)

    @property
    def limited_to_own(self) -> bool:
        return self.role == "manager"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "user_id": self.user_id}


LEAD_PIPELINE = Actor("lead_pipeline", "lead pipeline")
SYSTEM = Actor("system", "hub")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a change may not be made, in words a manager understands."""

    change: Change | None
    reason: str
    field: str | None = None
    guard: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        if self.change is not None:
            out["change"] = self.change.kind
        if self.field is not None:
            out["field"] = self.field
        if self.guard is not None:
            out["guard"] = self.guard
        return out


class Refused(Exception):
    """The batch was refused as a whole; nothing was written."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = list(refusals)
        super().__init__("; ".join(r.reason for r in self.refusals))


class NotFound(LookupError):
    """A record that does not exist, or that the actor may not see."""

    def __init__(self, what: str, record_id: int) -> None:
        self.what, self.record_id = what, record_id
        super().__init__(f"no {what} {record_id}")


class StoreReader:
    """The store as guards and plugins may use it: SELECT only, on a connection they are lent."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> Any:
        if not getattr(statement, "is_select", False):
            raise PermissionError("the store is read-only here; describe changes to the writer")
        return await self._conn.execute(statement, parameters)

    @property
    def dialect(self) -> str:
        return self._conn.dialect.name
