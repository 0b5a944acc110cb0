"""The fleet: enrollment of edges, what they report, the SIP Status screen, reloads."""

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from .. import crypto, outbox
from ..db import commit
from ..errors import Conflict, NotFound
from ..feed import current_version
from ..models import Edge, EdgeBatch, Registration, Role, utcnow
from ..scope import Principal, get_visible_tenant, require_role
from ..tokens import find_by_token, touch
from . import bans, extensions

TOKEN_PREFIX = "tle"
LAST_SEEN_PRECISION = dt.timedelta(seconds=5)
BATCH_MEMORY = dt.timedelta(days=1)  # a batch id is remembered this long
REGISTRATION_MEMORY = dt.timedelta(hours=1)  # expired bindings are deleted after this


# --- enrollment -------------------------------------------------------------------------


def enroll_edge(session, principal, *, name):
    require_role(principal, Role.PLATFORM)
    if session.scalar(select(Edge.id).where(Edge.name == name)) is not None:
        raise Conflict(f"an edge named {name!r} exists already", fields={"name": ["is taken"]})
    token, key_id, secret_hash = crypto.generate_token(TOKEN_PREFIX)
    edge = Edge(name=name, key_id=key_id, secret_hash=secret_hash, applied_version=0,
                addresses=[])
    session.add(edge)
    commit(session, f"an edge named {name!r} exists already")
    return edge, token


def list_edges(session, principal, *, page, page_size):
    """(edges of the page, total, current outbox version)."""
    require_role(principal, Role.PLATFORM)
    total = session.scalar(select(func.count()).select_from(Edge))
    edges = session.scalars(select(Edge).order_by(Edge.id)
                            .limit(page_size).offset((page - 1) * page_size)).all()
    return edges, total, current_version(session)


def get_edge(session, principal, edge_id):
    require_role(principal, Role.PLATFORM)
    edge = session.get(Edge, edge_id)
    if edge is None:
        raise NotFound(f"edge {edge_id} not found")
    return edge


def revoke_edge(session, principal, edge_id):
    edge = get_edge(session, principal, edge_id)
    if edge.revoked_at is None:
        edge.revoked_at = utcnow()
        commit(session)
    return edge


def authenticate_edge(session, token, *, now=None):
    """The edge a token belongs to, or None (constant time whether or not it exists)."""
    edge = find_by_token(session, Edge, TOKEN_PREFIX, token)
    if edge is not None:
        touch(session, edge, "last_seen_at", now or utcnow(), LAST_SEEN_PRECISION)
    return edge


def edge_principal(edge):
    """Changes an edge reports (a ring mode dialled on a phone) are audited as the edge's."""
    return Principal(role=Role.PLATFORM, name=f"edge:{edge.name}", key_id=edge.key_id)


# --- events -----------------------------------------------------------------------------


def ingest_events(session, edge, *, batch_id, events, now=None):
    """Apply one batch of an edge's events in one transaction. A batch id already applied
    is acknowledged and ignored. Returns a summary.

    Its authentication failures and successes are decided first, before the session's
    transaction begins (the edge may come from a reading session of its own): on SQLite,
    while another process writes, they are decided meanwhile, without the write lock
    (bans.decide_auth_events)."""
    now = now or utcnow()
    edge_id = edge.id
    session.info["principal"] = edge_principal(edge)
    auth, names, registered = [], [], {}
    for index, event in enumerate(events):
        if event["type"] == "registration":
            # A registered phone shelters its office from a whole ban (see bans); withdrawn
            # below if the registration is refused.
            registered[index] = len(auth)
            auth.append(bans.Success(event["source_address"], event["user_id"], event["at"],
                                     _expiry(event), edge.name))
        elif event["type"] in _AUTH_EVENTS:
            auth.append(_AUTH_EVENTS[event["type"]](edge.name, event))
        else:
            continue
        # An invalid field is named by its event's place in the batch ("events.7.address").
        names.append(f"events.{index}")
    with bans.one_batch_at_a_time(session):
        decided = bans.decide_auth_events(session, auth, names=names)
        # One statement: a batch id already there (sent again, or twice at once) inserts
        # nothing, and the batch is acknowledged without being applied again.
        if not _first_time(session, edge_id, batch_id, now):
            session.rollback()
            return {"duplicate": True, "applied": 0, "ignored": len(events)}
        writer = _EdgeOf(session, edge_id, now)
        ignored = []
        for index, event in enumerate(events):
            handler = _HANDLERS.get(event["type"])
            outcome = handler(session, writer, event) if handler is not None else None
            if outcome is not None:
                ignored.append({"index": index, "reason": outcome})
        bans.write_auth_events(session, decided, withdrawn=[
            registered[entry["index"]] for entry in ignored if entry["index"] in registered])
        commit(session)
    return {"duplicate": False, "applied": len(events) - len(ignored), "ignored": ignored}


def _first_time(session, edge_id, batch_id, now):
    """Record a batch id; False when it was recorded already."""
    values = {"edge_id": edge_id, "batch_id": batch_id, "received_at": now}
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert_(EdgeBatch).values(values).on_conflict_do_nothing().returning(
        EdgeBatch.batch_id)
    return session.execute(stmt).first() is not None


class _EdgeOf:
    """The edge a batch comes from, for the handlers: its id at once, its row (for a
    heartbeat) only when asked, so that a batch of failures does not read it again."""

    def __init__(self, session, edge_id, now):
        self.id, self.now, self._session, self._row = edge_id, now, session, None

    @property
    def row(self):
        if self._row is None:
            self._row = self._session.get(Edge, self.id)
        return self._row


def _failure(edge_name, event):
    return bans.Failure(event["address"], event["user_id"], event["reason"], event["at"],
                        edge_name)


def _success(edge_name, event):
    return bans.Success(event["address"], event["user_id"], event["at"], None, edge_name)


def _registration(session, edge, event):
    found = extensions.find_endpoint(session, event["user_id"])
    if found is None:
        return "no such SIP user ID (any more)"
    ext, endpoint = found
    expires_at = _expiry(event)
    # Every edge's binding of this contact (the tenant's index finds them).
    held = session.scalars(select(Registration).where(
        Registration.tenant_id == ext.tenant_id, Registration.user_id == event["user_id"],
        Registration.contact == event["contact"])).all()
    reg = next((r for r in held if r.edge_id == edge.id), None)
    elsewhere = [r for r in held if r is not reg]
    if any(r.registered_at > event["at"] for r in elsewhere):
        # A batch delayed on its way: the phone registered on another edge since.
        return "superseded by a later registration on another edge"
    for other in elsewhere:
        # The phone moved here (its edge failed over, DNS changed): the binding on the old
        # edge is stale and would show the phone twice until it expired.
        session.delete(other)
    if reg is None:
        reg = Registration(edge_id=edge.id, user_id=event["user_id"], contact=event["contact"],
                           registered_at=event["at"])
        session.add(reg)
    reg.tenant_id, reg.extension_id, reg.endpoint = ext.tenant_id, ext.id, endpoint.value
    reg.source_address, reg.source_port = event["source_address"], event["source_port"]
    reg.transport, reg.user_agent = event["transport"], event.get("user_agent")
    reg.expires_at = expires_at
    return None


def _expiry(registration):
    return registration["at"] + dt.timedelta(seconds=registration["expires"])


def _unregistration(session, edge, event):
    stmt = delete(Registration).where(Registration.edge_id == edge.id,
                                      Registration.user_id == event["user_id"])
    if event.get("contact") is not None:
        stmt = stmt.where(Registration.contact == event["contact"])
    session.execute(stmt)


def _ring_mode(session, edge, event):
    found = extensions.find_endpoint(session, event["user_id"])
    if found is None:
        return "no such SIP user ID (any more)"
    try:
        with session.begin_nested():
            extensions.apply_ring_mode(session, found[0], event["mode"])
            session.flush()
    except Conflict as exc:
        return exc.message
    return None


def _heartbeat(session, edge, event):
    row = edge.row
    row.applied_version = max(row.applied_version, event["applied_version"])
    if event.get("addresses") is not None:
        row.addresses = sorted(set(event["addresses"]))
    # Every request of the edge records when it was last seen (authenticate_edge, to a few
    # seconds); a heartbeat records it exactly.
    row.last_seen_at = max(row.last_seen_at or edge.now, edge.now)


_AUTH_EVENTS = {"auth_failure": _failure, "auth_success": _success}
_HANDLERS = {
    "registration": _registration,
    "unregistration": _unregistration,
    "ring_mode": _ring_mode,
    "heartbeat": _heartbeat,
}
EVENT_TYPES = (*_AUTH_EVENTS, *_HANDLERS)


# --- SIP Status and reload --------------------------------------------------------------


def list_registrations(session, principal, trunk_number, *, number=None, now=None):
    """Bindings in force now: gone once expired, even if their edge died without a word."""
    tenant = get_visible_tenant(session, principal, trunk_number)
    stmt = (select(Registration)
            .where(Registration.tenant_id == tenant.id, Registration.expires_at > (now or utcnow()))
            .options(joinedload(Registration.edge), joinedload(Registration.extension)))
    if number is not None:
        ext = extensions.get_extension(session, principal, trunk_number, number)
        stmt = stmt.where(Registration.extension_id == ext.id)
    return stmt.order_by(Registration.user_id, Registration.contact, Registration.id)


def request_reload(session, principal, trunk_number):
    """Ask every edge to re-read the tenant; returns the version that carries the request."""
    tenant = get_visible_tenant(session, principal, trunk_number)
    outbox.record_change(session, "reload", tenant)
    commit(session)
    return outbox.written_version(session, "reload", tenant.trunk_number)


def reload_status(session, principal, trunk_number, version):
    get_visible_tenant(session, principal, trunk_number)
    if version > current_version(session):
        raise NotFound(f"no version {version} yet")
    edges = session.scalars(select(Edge).where(Edge.revoked_at.is_(None)).order_by(Edge.name)).all()
    return {
        "version": version,
        "edges": [{"name": e.name, "applied": e.applied_version >= version,
                   "applied_version": e.applied_version, "last_seen_at": e.last_seen_at}
                  for e in edges],
        "applied": sum(e.applied_version >= version for e in edges),
        "total": len(edges),
    }


def purge(session, *, now):
    """Forget old batch ids and long-expired bindings."""
    session.execute(delete(EdgeBatch).where(EdgeBatch.received_at < now - BATCH_MEMORY))
    session.execute(delete(Registration).where(Registration.expires_at < now - REGISTRATION_MEMORY))
    commit(session)
