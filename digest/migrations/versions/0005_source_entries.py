"""Feed entries by guid: a source's entry stays the same item when its link changes."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "source_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("guid_hash", sa.String(64), nullable=False),
        sa.Column("news_item_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_source_entry"),
        sa.ForeignKeyConstraint(
            ["news_item_id"],
            ["news_item.id"],
            name="fk_source_entry_news_item_id_news_item",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("source", "guid_hash", name="uq_source_entry_source_guid_hash"),
    )
    op.create_index("ix_source_entry_news_item_id", "source_entry", ["news_item_id"])


def downgrade() -> None:
    op.drop_table("source_entry")
