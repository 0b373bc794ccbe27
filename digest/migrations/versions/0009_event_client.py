"""Consent log: a coarse marker of the web client of an action (its network), recorded when
the organisation turns it on (setting consent_client; off by default). Older rows have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber_event") as batch:
        batch.add_column(sa.Column("client", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("subscriber_event") as batch:
        batch.drop_column("client")
