"""0006: issues remember the domain of their Message-IDs, so that a retry keeps its Message-ID
even if the From address changed between runs. Existing issues keep NULL (the From domain)."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    # a nullable column: a plain ADD COLUMN, also on SQLite
    op.add_column("issue", sa.Column("message_id_domain", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("message_id_domain")
