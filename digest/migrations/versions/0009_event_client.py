"""Consent log: a coarse marker of the web client of an action (its network), recorded when
the organisation turns it on (setting consent_client; off by default). Older rows have none.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("subscriber_event") as batch:
        batch.add_column(sa.Column("client", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("subscriber_event") as batch:
        batch.drop_column("client")
