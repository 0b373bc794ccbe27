"""First schema: subscribers, news items, issues, their frozen items, deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscriber",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_source", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status_changed_at", TS, nullable=False),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber"),
        sa.UniqueConstraint("uid", name="uq_subscriber_uid"),
        sa.UniqueConstraint("email_key", name="uq_subscriber_email_key"),
    )
    op.create_index("ix_subscriber_status", "subscriber", ["status"])

    op.create_table(
        "news_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("summary_text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_news_item"),
        sa.UniqueConstraint("key", name="uq_news_item_key"),
    )
    op.create_index("ix_news_item_published_at", "news_item", ["published_at"])

    op.create_table(
        "issue",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_issue"),
        sa.UniqueConstraint("number", name="uq_issue_number"),
        sa.UniqueConstraint("uid", name="uq_issue_uid"),
    )
    op.create_index("ix_issue_status", "issue", ["status"])

    op.create_table(
        "issue_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("news_item_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("summary_text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_issue_item"),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issue.id"], name="fk_issue_item_issue_id_issue", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["news_item_id"],
            ["news_item.id"],
            name="fk_issue_item_news_item_id_news_item",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("issue_id", "position", name="uq_issue_item_issue_id_position"),
    )
    op.create_index("ix_issue_item_news_item_id", "issue_item", ["news_item_id"])

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_reply", sa.String(500), nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("first_attempt_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery"),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issue.id"], name="fk_delivery_issue_id_issue", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name="fk_delivery_subscriber_id_subscriber",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_id_subscriber_id"),
    )
    op.create_index("ix_delivery_issue_status", "delivery", ["issue_id", "status"])
    op.create_index("ix_delivery_subscriber_id", "delivery", ["subscriber_id"])


def downgrade() -> None:
    for table in ("delivery", "issue_item", "issue", "news_item", "subscriber"):
        op.drop_table(table)
