"""Inbound mail: each message read once (inbound_message), bounce/complaint events with the
score after them (bounce_event), and the subscriber's bounce score.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("bounce_score", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bounce_counted_at", TS, nullable=True))
    op.create_table(
        "inbound_message",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(500), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_message"),
        sa.UniqueConstraint("fingerprint", name="uq_inbound_message_fingerprint"),
    )
    op.create_index("ix_inbound_message_received_at", "inbound_message", ["received_at"])
    op.create_table(
        "bounce_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("origin", sa.String(100), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("inbound_message_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("diagnostic", sa.String(500), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("score_after", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_event"),
        sa.UniqueConstraint("origin", name="uq_bounce_event_origin"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscriber.id"],
            name="fk_bounce_event_subscriber_id_subscriber", ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issue.id"], name="fk_bounce_event_issue_id_issue", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"],
            name="fk_bounce_event_delivery_id_delivery", ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_message_id"], ["inbound_message.id"],
            name="fk_bounce_event_inbound_message_id_inbound_message", ondelete="SET NULL",
        ),
    )  # fmt: skip
    op.create_index("ix_bounce_event_at", "bounce_event", ["at"])
    op.create_index("ix_bounce_event_subscriber_id", "bounce_event", ["subscriber_id"])
    op.create_index("ix_bounce_event_issue_id", "bounce_event", ["issue_id"])


def downgrade() -> None:
    op.drop_table("bounce_event")
    op.drop_table("inbound_message")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("bounce_counted_at")
        batch.drop_column("bounce_score")
