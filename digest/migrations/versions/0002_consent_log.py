"""Consent log (every subscriber status change with its source) and the suppression list.

Existing subscribers get one event recording their status as it was at upgrade time, so the
log is complete from the start.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscriber_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_event"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name="fk_subscriber_event_subscriber_id_subscriber",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_subscriber_event_subscriber_id", "subscriber_event", ["subscriber_id"])
    op.execute(
        "INSERT INTO subscriber_event (subscriber_id, at, status, source, detail) "
        "SELECT id, status_changed_at, status, status_source, 'recorded by upgrade 0002' "
        "FROM subscriber"
    )

    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppression"),
        sa.UniqueConstraint("email_hash", name="uq_suppression_email_hash"),
    )


def downgrade() -> None:
    op.drop_table("suppression")
    op.drop_table("subscriber_event")
