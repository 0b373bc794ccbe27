"""Suppression entries become a keyed hash, so a copy of the database does not tell whether
an address was erased.

Until 0007 an erased address was kept as sha256(address): anyone with the database could hash
an address and look it up. From now on it is HMAC-SHA256(secret key, sha256(address)), with
`key_id` naming the key. Because the keyed hash is taken over the old unkeyed one, every
existing row can be re-keyed without knowing the address it came from: no erased person is
forgotten, and none has to be seen again first.

This migration adds `key_id` and, when it is run by `digest init` (which passes the secret
key), re-keys every row at once. Run without the key (a bare Alembic upgrade), the rows stay
as they were with no key_id: digest still recognises them, and re-keys each one the next time
its address is seen, and all of them at the next `digest init`.
"""

import hashlib
import hmac

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("suppression") as batch:
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
    config = op.get_context().config
    key = config.attributes.get("secret_key") if config is not None else None
    if key:
        rekey(op.get_bind(), key)


def rekey(conn: sa.Connection, key: bytes) -> int:
    """Re-key the legacy (unkeyed) rows with `key`: the same formula as digest.subscribers."""
    kid = hmac.new(key, b"digest:key-id", hashlib.sha256).hexdigest()[:8]
    table = sa.table("suppression", sa.column("id"), sa.column("email_hash"), sa.column("key_id"))
    rows = conn.execute(sa.select(table.c.id, table.c.email_hash).where(table.c.key_id.is_(None)))
    n = 0
    for row_id, legacy in rows.all():
        keyed = hmac.new(key, b"digest:suppression:" + legacy.encode(), hashlib.sha256).hexdigest()
        conn.execute(
            sa.update(table).where(table.c.id == row_id).values(email_hash=keyed, key_id=kid)
        )
        n += 1
    return n


def downgrade() -> None:
    # A keyed hash cannot be turned back into the unkeyed one, and an older digest would not
    # recognise it: downgrading would let erased people be imported again. Refuse.
    raise RuntimeError("0008 cannot be downgraded: suppression entries are keyed hashes now")
