"""The store's schema comes from migrations that match the models, on both engines."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.store import Store
from hub.store.models import Base


async def test_migrations_build_exactly_the_models_and_can_be_undone_and_redone(store_url):
    store = Store(store_url)
    try:
        await store.upgrade()
        assert await store.current_revision() == Store.head_revision()
        async with store.reader.connect() as conn:
            drift = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert drift == []

        config = store.alembic_config()

        def down(connection):
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")

        async with store.writer.begin() as conn:
            await conn.run_sync(down)
        assert await store.current_revision() == "0001"
        await store.upgrade()
        assert await store.current_revision() == Store.head_revision()
    finally:
        await store.close()
