"""0012: subscriber preferences (#15). Topics a subscriber chose (subscriber_topic; none: every
topic), how often they want the digest (subscriber.frequency, "weekly" for everyone already on
the list), topic descriptions (topic), the frequency an issue is for (NULL: everyone, as every
issue made before), and the variants of an issue with the one each delivery gets (NULL: the
whole issue, as every delivery made before). An issue also keeps how staff shaped it (its
editor's note and featured link), so that a review draft's variants, rendered when its
recipients are frozen at approval, are rendered as the draft was."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(
            sa.Column("frequency", sa.String(16), nullable=False, server_default="weekly")
        )
    op.add_column("issue", sa.Column("frequency", sa.String(16), nullable=True))
    op.add_column("issue", sa.Column("note_markdown", sa.Text(), nullable=False, server_default=""))
    op.add_column("issue", sa.Column("featured_url", sa.String(2000), nullable=True))
    op.create_table(
        "topic",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_topic"),
        sa.UniqueConstraint("key", name="uq_topic_key"),
    )
    op.create_table(
        "subscriber_topic",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("topic_key", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_topic"),
        sa.UniqueConstraint(
            "subscriber_id", "topic_key", name="uq_subscriber_topic_subscriber_id_topic_key"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscriber.id"],
            name="fk_subscriber_topic_subscriber_id_subscriber", ondelete="CASCADE",
        ),
    )  # fmt: skip
    op.create_index("ix_subscriber_topic_topic_key", "subscriber_topic", ["topic_key"])
    op.create_table(
        "issue_variant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("positions", sa.String(2000), nullable=False),
        sa.Column("topics", sa.String(1000), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("render_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_issue_variant"),
        sa.UniqueConstraint("issue_id", "positions", name="uq_issue_variant_issue_id_positions"),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issue.id"], name="fk_issue_variant_issue_id_issue", ondelete="CASCADE"
        ),
    )
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("variant_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_delivery_variant_id_issue_variant", "issue_variant", ["variant_id"], ["id"],
            ondelete="CASCADE",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_constraint("fk_delivery_variant_id_issue_variant", type_="foreignkey")
        batch.drop_column("variant_id")
    op.drop_table("issue_variant")
    op.drop_table("subscriber_topic")
    op.drop_table("topic")
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("featured_url")
        batch.drop_column("note_markdown")
        batch.drop_column("frequency")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("frequency")
