"""The caller card's SELECTs compiled once and run straight on the driver.

Through SQLAlchemy's ``execute`` every run of a statement looks its compiled form up
in the cache (hashing and comparing a cache key of a hundred elements for the deals'
statement, whose light has a branch per stage and working schedule), expands its
IN lists, converts each bound value and builds the result's metadata: 0.4-0.9 ms of
CPU for each of the card's statements, most of the card's time and all of its tail
under load (``bench/caller_card.py``). A :class:`Prepared` statement does that work
once: the SQL text with the IN lists expanded, the constant values already
converted for the driver, the slots of the values given per lookup (``:number``,
``:contact``, ``:viewer``), and each result column's converter, taken from the
column's type for the store's own dialect, so a row is what SQLAlchemy would give.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import BindParameter, Dialect, bindparam
from sqlalchemy.sql import visitors

CACHE = 64  # statements kept; the deals' one is rebuilt every ten seconds


class Rows:
    """A statement's rows, with the face of SQLAlchemy's result the card uses."""

    __slots__ = ("_keys", "_rows")

    def __init__(self, keys: tuple[str, ...], rows: list[Any]) -> None:
        self._keys = keys
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def mappings(self) -> list[dict[str, Any]]:
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._rows]


class Prepared:
    """One SELECT for one dialect: ``sql``, ``arguments(params)`` and ``rows(raw)``."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        if not getattr(statement, "is_select", False):
            raise PermissionError("the store is read-only here")
        self.dialect = dialect
        if dialect.name == "postgresql":
            statement = inline_constants(statement)
        compiled = statement.compile(dialect=dialect)
        given = {key for key, bind in compiled.binds.items() if bind.required}
        state = compiled.construct_expanded_state(dict.fromkeys(given))
        if state.positiontup is None:
            raise ValueError(f"{dialect.name}: a positional paramstyle is needed")
        types = {}
        for key, bind in compiled.binds.items():
            for name in state.parameter_expansion.get(key, [key]):
                types[name] = bind.type
        self.sql: str = state.statement
        self._template: list[Any] = []
        self._slots: list[tuple[int, str, Callable[[Any], Any] | None]] = []
        for index, name in enumerate(state.positiontup):
            process = types[name].dialect_impl(dialect).bind_processor(dialect)
            if name in given:
                self._template.append(None)
                self._slots.append((index, name, process))
            else:
                value = state.parameters[name]
                self._template.append(process(value) if process else value)
        columns = list(statement.selected_columns)
        self.keys = tuple(column.key for column in columns)
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"columns need distinct names: {self.keys}")
        self._types = [column.type for column in columns]
        self._row = namedtuple("Row", self.keys)  # type: ignore[misc]
        self._convert: list[tuple[int, Callable[[Any], Any]]] | None = None

    def arguments(self, params: dict[str, Any] | None) -> list[Any]:
        """The positional arguments for the driver, ``params`` giving the lookup's values."""
        args = self._template.copy()
        for index, name, process in self._slots:
            value = params[name] if params else None
            args[index] = process(value) if process else value
        return args

    def converters(self, type_codes: Sequence[Any]) -> None:
        """Each column's converter, for the driver's type codes (PostgreSQL's type OIDs;
        SQLite's are all None). Set once: they are the same for every row and connection."""
        convert = []
        for index, (type_, code) in enumerate(zip(self._types, type_codes, strict=True)):
            process = type_.dialect_impl(self.dialect).result_processor(self.dialect, code)
            if process is not None:
                convert.append((index, process))
        self._convert = convert

    @property
    def ready(self) -> bool:
        return self._convert is not None

    def rows(self, raw: list[Sequence[Any]]) -> Rows:
        assert self._convert is not None, "converters() first"
        make, convert = self._row._make, self._convert
        if not convert:
            return Rows(self.keys, [make(row) for row in raw])
        out = []
        for row in raw:
            values = list(row)
            for index, process in convert:
                values[index] = process(values[index])
            out.append(make(values))
        return Rows(self.keys, out)


def _plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return bool(value) and all(_plain(item) for item in value)
    return isinstance(value, int | str) and not isinstance(value, bool)


def inline_constants(statement: Any) -> Any:
    """``statement`` with its constant numbers and strings (``'open'``, ``LIMIT 6``, stage
    and owner ids) written into the SQL, the values of each lookup left as parameters.

    PostgreSQL plans a prepared statement for each run's values (a custom plan, 1 ms for
    the card's contacts and deals) until a plan for any values (the generic plan) looks as
    good; with ``status = $7`` and ``LIMIT $10`` the generic plan cannot know the open deals
    are few or that six rows are wanted, so it hashed every open deal (0.7 s), and the card
    paid for planning on every lookup. With the constants in the text the generic plan is
    the custom one, and PostgreSQL keeps it.
    """

    def constant(element: Any) -> Any:
        if isinstance(element, BindParameter) and not element.required and _plain(element.value):
            return bindparam(
                None,
                element.value,
                type_=element.type,
                expanding=element.expanding,
                literal_execute=True,
            )
        return None

    return visitors.replacement_traverse(statement, {}, constant)


class Statements:
    """The prepared form of each statement object the card runs (by identity)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[int, tuple[Any, Prepared]] = {}
        self._lock = threading.Lock()  # the loop, the card's rebuilding thread, the readers

    def __call__(self, statement: Any) -> Prepared:
        found = self._prepared.get(id(statement))
        if found is not None and found[0] is statement:
            return found[1]
        prepared = Prepared(statement, self.dialect)
        with self._lock:
            while len(self._prepared) >= CACHE:
                del self._prepared[next(iter(self._prepared))]  # the oldest
            # The statement is kept with it, so its id cannot be reused while it is here.
            self._prepared[id(statement)] = (statement, prepared)
        return prepared
