"""Issues remember the domain of their Message-IDs, so a retry keeps its Message-ID even if the
From address changed between runs.

Existing issues keep NULL: their Message-IDs use the From domain, as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("message_id_domain", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("message_id_domain")
