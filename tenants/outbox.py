"""The edge outbox: changes the edges need, written in the transaction that makes them.

Services call :func:`record_change` or :func:`record_deletion`; just before the commit,
the pending changes of the unit of work become outbox rows. The payload is the state of
the object at commit time (several changes to one object in one transaction make one
entry), so an edge that applies an entry twice ends in the same state. A rolled-back
transaction writes nothing.
"""

from sqlalchemy import event, insert, text, update

from .edgeview import KINDS
from .models import OutboxCounter, OutboxEntry

NOTIFY_CHANNEL = "trunkline_outbox"


def written_version(session, kind, key):
    """The version the last commit of this session gave an entry (after commit)."""
    return session.info.get("outbox_written", {}).get((kind, key))


def _pending(session):
    return session.info.setdefault("outbox", {})


def record_change(session, kind, obj):
    """The edges must learn the new state of obj (which must already be in the session)."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    _pending(session)[(kind, id(obj))] = ("upsert", kind, obj, None, obj)


def record_deletion(session, kind, obj):
    """The edges must forget obj (computed now: obj is about to be deleted or retired)."""
    spec = KINDS[kind]
    # obj stays referenced until the commit: pending entries are keyed by id(obj), which a
    # collected object would hand on to the next one (a loop over many deletions).
    _pending(session)[(kind, id(obj))] = ("delete", kind, spec.key(obj), spec.tenant_id(obj), obj)


def _write_pending(session):
    pending = session.info.pop("outbox", None)
    if not pending:
        return
    session.flush()
    rows = []
    upserts = {}
    for op, kind, target, tenant_id, _obj in pending.values():
        if op == "delete":
            rows.append({"tenant_id": tenant_id, "kind": kind, "key": target, "op": "delete",
                         "payload": None})
        else:
            upserts.setdefault(kind, []).append(target)
    for kind, objects in upserts.items():
        spec = KINDS[kind]
        if not spec.as_written:
            objects = spec.load(session, [obj.id for obj in objects])
        for obj in objects:
            rows.append({"tenant_id": spec.tenant_id(obj), "kind": kind, "key": spec.key(obj),
                         "op": "upsert", "payload": spec.payload(obj)})
    if not rows:
        return
    # Taking the versions last keeps the counter row locked for as short a time as possible.
    last = session.execute(
        update(OutboxCounter)
        .where(OutboxCounter.id == 1)
        .values(version=OutboxCounter.version + len(rows))
        .returning(OutboxCounter.version)
    ).scalar_one()
    first = last - len(rows) + 1
    for offset, row in enumerate(rows):
        row["version"] = first + offset
    session.execute(insert(OutboxEntry), rows)
    session.info["outbox_written"] = {(r["kind"], r["key"]): r["version"] for r in rows}
    if session.get_bind().dialect.name == "postgresql":
        # Delivered at commit to every control plane process LISTENing: waiting edges wake.
        session.execute(text("SELECT pg_notify(:channel, :version)"),
                        {"channel": NOTIFY_CHANNEL, "version": str(last)})


def install(session_factory):
    event.listen(session_factory, "before_commit", _write_pending)
    event.listen(session_factory, "after_rollback", lambda s: s.info.pop("outbox", None))
