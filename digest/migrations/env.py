"""Alembic environment: digest always passes an open connection (see digest/db.py)."""

from alembic import context
from sqlmodel import SQLModel

import digest.models  # noqa: F401  (registers every table on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("digest migrations run through `digest init`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite can only ALTER TABLE by copying it
)
with context.begin_transaction():
    context.run_migrations()
