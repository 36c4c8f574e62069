"""Shared fixtures: a store on SQLite and on PostgreSQL, settings, a running hub."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from hub.app import build_app
from hub.config import Settings
from hub.context import Hub
from hub.plugins import PluginHost
from hub.store import Store
from hub.store.models import Base
from plugins.webforms import WebForms

PG_ADMIN = os.environ.get("HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent

TEAM = [
    {"email": "anna@example.com", "name": "Анна Смирнова", "role": "manager", "extension": "101"},
    {"email": "dmitry@example.com", "name": "Дмитрий Соколов", "role": "manager"},
    {"email": "olga@example.com", "name": "Ольга Кузнецова", "role": "head"},
]

PIPELINES = {
    "sales": {
        "name": "Продажи",
        "default": True,
        "first_task": "Связаться с клиентом",
        "stages": [
            {"key": "new", "name": "Новая сделка", "probability": 10, "contact_within": "1d"},
            {"key": "proposal", "name": "Направить КП", "probability": 40, "contact_within": "2d"},
            {
                "key": "contract",
                "name": "Договор обсуждаем",
                "probability": 80,
                "contact_within": "1d",
            },
            {"key": "won", "name": "Выиграли", "probability": 100, "kind": "won"},
            {"key": "lost", "name": "Проиграли", "kind": "lost"},
        ],
    },
    "wholesale": {
        "name": "Опт",
        "stages": [
            {"key": "new", "name": "Новая заявка", "contact_within": "4h"},
            {"key": "won", "name": "Отгружено", "kind": "won"},
            {"key": "lost", "name": "Отказ", "kind": "lost"},
        ],
    },
}

FORMS = {
    "contact": {
        "name": "Обратная связь",
        "fields": {"fio": "name", "tel": "phone", "comment": "message"},
        "required": ["name", "phone"],
        "source": "Сайт",
        "title": "Заявка с сайта: {name}",
        "allowed_origins": ["https://shop.example.ru"],
        "honeypot": "website",
        "rate_limit": 1000,
    },
    "partner": {
        "pipeline": "wholesale",
        "source": "От партнёра",
        "auth": "hmac",
        "secret": "partner-secret-0123456789",
        "rate_limit": 1000,
    },
}


def _pg_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session, migrated once."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}; .ci/run starts it")
    name = f"crm_hub_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name

    async def migrate() -> None:
        store = Store(url)
        await store.upgrade()
        await store.close()

    asyncio.run(migrate())
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    store = Store(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with store.write() as conn:
        await conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    url = request.getfixturevalue("pg_database")
    asyncio.run(_truncate(url))
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The PostgreSQL store alone, empty, for what only PostgreSQL does."""
    asyncio.run(_truncate(pg_database))
    return pg_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"


def make_settings(url: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "hub": {
            "timezone": "Europe/Moscow",
            "default_region": "RU",
            "attachments_dir": tempfile.mkdtemp(prefix="hub-attachments-"),
        },
        "store": {"url": url},
        "intake": {
            "poll_interval": "0.05s",
            "retry_base": "0.05s",
            "retry_max": "0.2s",
            "max_attempts": 3,
            "workers": 2,
        },
        "users": TEAM,
        "pipelines": PIPELINES,
        "api": {
            "tokens": {
                "head": {"token": "head-token-0123456789", "role": "head"},
                "anna": {
                    "token": "anna-token-0123456789",
                    "role": "manager",
                    "user": "anna@example.com",
                },
            }
        },
        "plugins": {"webforms": {"forms": FORMS}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Settings(**data)


@pytest.fixture
def settings_for() -> Callable[..., Settings]:
    return make_settings


def make_hub(settings: Settings, extra: dict[str, Any] | None = None, **kwargs: Any) -> Hub:
    plugins = {"webforms": WebForms, **(extra or {})}
    host = PluginHost(
        settings, load_entry_points=False, extra=plugins, retry_base=0.05, retry_max=0.2
    )
    return Hub(settings, plugins=host, **kwargs)


@pytest.fixture
async def hub_client(
    aiohttp_client: Callable[..., Any], store_url: str
) -> AsyncIterator[TestClient]:
    """A running hub (on each store) with the web-form channel, behind a test client."""
    hub = make_hub(make_settings(store_url))
    client = await aiohttp_client(build_app(hub))
    return client


async def wait_for(predicate: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll an async ``predicate`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def seed_contacts(
    hub: Hub,
    contacts: list[dict[str, Any]],
    phones: Sequence[tuple[int, str]] = (),
) -> None:
    """Contacts (``id``, ``name`` and any other column) and their phones written straight
    into the store, as a legacy base migrated in would hold them: no writer, no events.
    For tests of what reads such a store (the scan, training) at a size the writer would
    make slow."""
    from hub.store.models import Contact, ContactPoint
    from hub.store.types import utcnow

    now = utcnow()
    async with hub.store.write() as conn:
        await conn.execute(
            Contact.__table__.insert(),
            [{"custom": {}, **c, "created_at": now, "updated_at": now} for c in contacts],
        )
        if phones:
            await conn.execute(
                ContactPoint.__table__.insert(),
                [
                    {"contact_id": cid, "kind": "phone", "value": phone, "normalized": phone,
                     "created_at": now}
                    for cid, phone in phones
                ],
            )  # fmt: skip
