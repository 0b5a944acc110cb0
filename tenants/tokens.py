"""Bearer credentials stored hashed: API keys (`tlk_...`) and edge tokens (`tle_...`).

A token is `<prefix>_<public id>.<secret>`: the id finds the row, the secret is compared
with its stored SHA-256 in constant time, and the work is the same whether or not the row
exists, so timing tells nothing.
"""

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.attributes import set_committed_value

from . import crypto
from .db import is_reader, waiting_briefly


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
    every read into a write. Best effort: a busy database skips the record rather than
    fail the request it only accompanies. A reading session (an edge's GETs) stays a
    reader: the record goes through a connection of its own that waits for locks only
    briefly, so another process mid-write, or a table locked for maintenance, never
    stalls a read."""
    last = getattr(row, attribute)
    if last is not None and now - last <= precision:
        return
    if not is_reader(session):
        setattr(row, attribute, now)
        try:
            session.commit()
        except OperationalError:
            session.rollback()
        return
    model = type(row)
    try:
        with waiting_briefly(session.get_bind()) as conn:
            conn.execute(update(model).where(model.id == row.id).values({attribute: now}))
    except OperationalError:
        return
    set_committed_value(row, attribute, now)
