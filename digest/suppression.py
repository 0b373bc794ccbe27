"""The suppression list: people erased with `subscribers remove` are kept out by a keyed hash
of their address (HMAC with the secret key), so nobody can test an address against it; an
entry made before keyed hashes (an unsalted SHA-256) is still recognised and re-keyed."""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import Session, col, select

from digest.addresses import address_key
from digest.models import Suppression
from digest.tokens import Keyring, key_id


def legacy_suppression_hash(email: str) -> str:
    """The unkeyed sha256 that suppression entries were until schema 0008."""
    return hashlib.sha256(address_key(email).encode()).hexdigest()


def suppression_hash(key: bytes, email: str) -> str:
    """HMAC-SHA256 with the secret key over the unkeyed hash (so legacy rows can be re-keyed
    without their address; migration 0008 uses the same formula)."""
    legacy = legacy_suppression_hash(email).encode()
    return hmac.new(key, b"digest:suppression:" + legacy, hashlib.sha256).hexdigest()


def find_suppression(session: Session, keyring: Keyring, email: str) -> Suppression | None:
    """The suppression entry for `email`, made with any key of the keyring or (legacy) none.

    An entry found under a retired key or no key is re-keyed with the current one on the
    way: rows are upgraded as their addresses are seen.
    """
    hashes = {suppression_hash(k, email): key_id(k) for k in keyring.all_keys()}
    legacy = legacy_suppression_hash(email)
    found = session.exec(
        select(Suppression).where(col(Suppression.email_hash).in_([*hashes, legacy]))
    ).all()
    found = [r for r in found if hashes.get(r.email_hash) == r.key_id or r.key_id is None]
    if not found:
        return None
    keep, *extra = sorted(found, key=lambda r: r.key_id != keyring.current_id)
    for row in extra:
        session.delete(row)
    if keep.key_id != keyring.current_id:
        keep.email_hash = suppression_hash(keyring.current, email)
        keep.key_id = keyring.current_id
        session.add(keep)
    session.flush()
    return keep


def rekey_legacy_suppressions(session: Session, keyring: Keyring) -> int:
    """Re-key every legacy (unkeyed) suppression entry with the current key; how many."""
    rows = session.exec(select(Suppression).where(col(Suppression.key_id).is_(None))).all()
    for row in rows:
        row.email_hash = hmac.new(
            keyring.current, b"digest:suppression:" + row.email_hash.encode(), hashlib.sha256
        ).hexdigest()
        row.key_id = keyring.current_id
        session.add(row)
    session.flush()
    return len(rows)


def suppressions_without_key(session: Session, keyring: Keyring) -> int:
    """Entries made with a key that is neither current nor retired: they no longer match."""
    known = [key_id(k) for k in keyring.all_keys()]
    return len(
        session.exec(
            select(Suppression.id)
            .where(col(Suppression.key_id).is_not(None))
            .where(col(Suppression.key_id).not_in(known))
        ).all()
    )
