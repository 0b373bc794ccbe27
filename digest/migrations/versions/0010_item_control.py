"""0010: editorial control of news items. `control` is what staff decided about an item
("" none, "held", "removed", "included"), with who decided, when and why; `edited` names the
fields staff changed, which a feed's later fetch leaves alone. Existing items have none."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("news_item") as batch:
        batch.add_column(sa.Column("control", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("control_by", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("control_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("control_reason", sa.String(500), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("edited", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("news_item") as batch:
        for name in ("edited", "control_reason", "control_at", "control_by", "control"):
            batch.drop_column(name)
