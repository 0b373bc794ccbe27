"""0011: review before the weekly job sends. An issue may be a draft (frozen items, no
deliveries yet) that waits for approval: who approved it and when, and when its review copy
went out (so a scheduled run every 30 minutes sends it once). Existing issues keep NULL."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    # nullable columns: plain ADD COLUMNs, also on SQLite
    op.add_column("issue", sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("issue", sa.Column("approved_by", sa.String(100), nullable=True))
    op.add_column("issue", sa.Column("review_sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("review_sent_at")
        batch.drop_column("approved_by")
        batch.drop_column("approved_at")
