"""Alembic environment: runs on the connection :meth:`hub.store.Store.upgrade` hands in."""

from alembic import context

from hub.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through hub.store
    raise RuntimeError("run migrations with `hub db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # ALTER TABLE through copy-and-move on SQLite
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
