"""Bearer credentials stored hashed: API keys (`tlk_...`) and edge tokens (`tle_...`).

A token is `<prefix>_<public id>.<secret>`: the id finds the row, the secret is compared
with its stored SHA-256 in constant time, and the work is the same whether or not the row
exists, so timing tells nothing.
"""

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from . import crypto


def find_by_token(session, model, prefix, token):
    """The row of `model` (with key_id, secret_hash, revoked_at) the token names, or None."""
    parts = crypto.split_token(prefix, token or "")
    if parts is None:
        return None
    key_id, secret = parts
    row = session.scalars(select(model).where(model.key_id == key_id)).one_or_none()
    stored = row.secret_hash if row is not None else crypto.hash_secret("")
    if not crypto.secret_matches(secret, stored) or row is None or row.revoked_at is not None:
        return None
    return row


def touch(session, row, attribute, now, precision):
    """Record a use, at most once per `precision`: a write on every request would turn
    every read into a write. Best effort: a busy database skips it rather than fail the
    request it only accompanies."""
    last = getattr(row, attribute)
    if last is None or now - last > precision:
        setattr(row, attribute, now)
        try:
            session.commit()
        except OperationalError:
            session.rollback()
