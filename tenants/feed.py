"""What the edges read: a streamed snapshot, then the outbox after a version.

The snapshot is produced inside one read transaction that sees a single point in time
(REPEATABLE READ on PostgreSQL, a WAL read transaction on SQLite), together with the outbox
version it reflects; it streams rows in chunks, so a million SIP user IDs take bounded
memory. An edge then asks for the changes after that version (list-then-watch).
"""

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import joinedload, selectinload

from .edgeview import (
    KINDS, ban_payload, ban_policy_payload, extension_payload, queue_payload,
    ring_group_payload, tenant_payload, trusted_network_payload,
)
from .errors import DomainError
from .models import (
    Ban, BanPolicy, Extension, OutboxCounter, OutboxEntry, Queue, QueueAgent, RingGroup, Tenant,
    TrustedNetwork,
)

CHUNK = 1000
MAX_CHANGES = 1000


class Gone(DomainError):
    """The entries after that version were pruned: take a new snapshot."""


def current_version(session):
    return session.scalar(select(OutboxCounter.version).where(OutboxCounter.id == 1))


def changes_after(session, after, *, limit=MAX_CHANGES):
    """(entries, latest version) after `after`; Gone when part of them was pruned."""
    counter = session.get(OutboxCounter, 1)
    if after < counter.pruned_through:
        raise Gone(f"changes after {after} are no longer kept (kept from "
                   f"{counter.pruned_through + 1}); take a new snapshot")
    entries = session.scalars(
        select(OutboxEntry).where(OutboxEntry.version > after)
        .order_by(OutboxEntry.version).limit(limit)
    ).all()
    return entries, counter.version


def entry_record(entry):
    return {"version": entry.version, "kind": entry.kind, "key": entry.key, "op": entry.op,
            "payload": entry.payload}


def _record(kind, obj, payload):
    return {"kind": kind, "key": KINDS[kind].key(obj), "op": "upsert", "payload": payload(obj)}


def snapshot(session, *, trunk_number=None, now):
    """Yield the records of a snapshot: a begin record with the version, every object, and
    an end record with the count. trunk_number limits it to one tenant (for a reload)."""
    version = current_version(session)
    tenant_ids = None
    if trunk_number is not None:
        tenant = session.scalars(select(Tenant).where(Tenant.trunk_number == trunk_number)).first()
        tenant_ids = [tenant.id] if tenant is not None else []
    yield {"type": "begin", "version": version, "trunk_number": trunk_number}
    count = 0

    def scoped(stmt, model):
        return stmt if tenant_ids is None else stmt.where(model.tenant_id.in_(tenant_ids))

    def stream(stmt):
        return session.scalars(stmt.execution_options(yield_per=CHUNK))

    if trunk_number is None:
        yield _record("ban_policy", session.get(BanPolicy, 1), ban_policy_payload)
        count += 1
        for ban in stream(select(Ban).where(Ban.lifted_at.is_(None), Ban.until > now)
                          .order_by(Ban.id)):
            yield _record("ban", ban, ban_payload)
            count += 1
    networks = select(TrustedNetwork).options(joinedload(TrustedNetwork.tenant))
    if tenant_ids is not None:
        networks = networks.where(TrustedNetwork.tenant_id.in_(tenant_ids))
    for network in stream(networks.order_by(TrustedNetwork.id)):
        yield _record("trusted_network", network, trusted_network_payload)
        count += 1
    tenants = select(Tenant).options(selectinload(Tenant.trunks)).order_by(Tenant.id)
    if tenant_ids is not None:
        tenants = tenants.where(Tenant.id.in_(tenant_ids))
    for tenant in stream(tenants):
        yield _record("tenant", tenant, tenant_payload)
        count += 1
    # Members' numbers only: whole Extension rows for every member would set the
    # snapshot's peak memory by the size of the groups.
    groups = scoped(select(RingGroup), RingGroup).options(
        joinedload(RingGroup.tenant),
        selectinload(RingGroup.members).load_only(Extension.number)).order_by(RingGroup.id)
    for group in stream(groups):
        yield _record("ring_group", group, ring_group_payload)
        count += 1
    queues = scoped(select(Queue), Queue).options(
        joinedload(Queue.tenant),
        selectinload(Queue.agents).joinedload(QueueAgent.extension)).order_by(Queue.id)
    for queue in stream(queues):
        yield _record("queue", queue, queue_payload)
        count += 1
    extensions = scoped(select(Extension), Extension).options(
        joinedload(Extension.tenant), joinedload(Extension.dual_trunk),
        selectinload(Extension.ring_groups)).order_by(Extension.id)
    # The session's identity map holds objects weakly: what was sent is collected.
    for ext in stream(extensions):
        yield _record("extension", ext, extension_payload)
        count += 1
    yield {"type": "end", "version": version, "count": count}


def prune(session, *, now, keep=dt.timedelta(days=7)):
    """Drop outbox entries older than `keep` (edges further behind take a snapshot)."""
    cutoff = session.scalar(
        select(OutboxEntry.version).where(OutboxEntry.created_at < now - keep)
        .order_by(OutboxEntry.version.desc()).limit(1)
    )
    if cutoff is None:
        return 0
    deleted = session.execute(delete(OutboxEntry).where(OutboxEntry.version <= cutoff)).rowcount
    session.execute(update(OutboxCounter).where(OutboxCounter.id == 1)
                    .values(pruned_through=cutoff))
    session.commit()
    return deleted
