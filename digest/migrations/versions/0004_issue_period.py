"""Scheduled issues: the period (e.g. 2026-W48) an issue belongs to, one issue per period.

Existing issues keep a NULL period (they were sent by hand).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("period_key", sa.String(32), nullable=True))
        batch.create_unique_constraint("uq_issue_period_key", ["period_key"])


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_constraint("uq_issue_period_key", type_="unique")
        batch.drop_column("period_key")
