"""The audit log: every write, and every reveal of a secret, with who did it.

Writes are caught at flush time for every model that declares ``__audit__`` (its type)
and ``__audit_key__`` (the attribute that names it), so no service can forget one. Columns
named in ``__audit_redact__`` show only that they changed; columns in ``__audit_ignore__`` are
bookkeeping that would write a record per heartbeat (audit records are never purged);
``__audit_collections__`` maps a relationship to the attribute that names its members, so a
change of membership alone (an extension's group subscriptions) is recorded too.
Reveals and other reads worth recording call :func:`record` explicitly.
The actor is the principal the unit of work runs for (``session.info["principal"]``).
"""

import datetime as dt
import enum

from sqlalchemy import event, insert, inspect

from .models import AuditEvent, utcnow


def _object_id(obj):
    return str(getattr(obj, obj.__audit_key__))


def _jsonable(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _actor(session):
    principal = session.info.get("principal")
    return principal.audit_fields() if principal is not None else {
        "actor_role": None, "actor_key_id": None, "actor_name": "system"}


def _row(session, action, obj, details):
    return {
        "at": utcnow(),
        **_actor(session),
        **obj.audit_scope(),
        "action": action,
        "object_type": obj.__audit__,
        "object_id": _object_id(obj),
        "details": details,
    }


_ALWAYS_IGNORED = ("created_at", "updated_at", "last_used_at")


def _changes(obj, *, created):
    state = inspect(obj)
    redacted = getattr(obj, "__audit_redact__", ())
    ignored = _ALWAYS_IGNORED + tuple(getattr(obj, "__audit_ignore__", ()))
    changes = {}
    for attr in state.mapper.column_attrs:
        name = attr.key
        hist = state.attrs[name].history
        if name in ignored:
            continue
        if created:
            value = state.attrs[name].value
            changes[name] = "(secret)" if name in redacted and value is not None else _jsonable(value)
        elif hist.has_changes():
            if name in redacted:
                changes[name] = "(changed)"
            else:
                old = hist.deleted[0] if hist.deleted else None
                new = hist.added[0] if hist.added else None
                changes[name] = [_jsonable(old), _jsonable(new)]
    for name, member_key in getattr(obj, "__audit_collections__", {}).items():
        # The history only: it never loads a collection the unit of work did not touch.
        hist = state.attrs[name].history
        after = sorted(str(getattr(m, member_key)) for m in hist.non_deleted())
        if created:
            changes[name] = after
        elif hist.has_changes():
            before = sorted(str(getattr(m, member_key)) for m in hist.non_added())
            if before != after:
                changes[name] = [before, after]
    return changes


def _audited(obj):
    return getattr(obj, "__audit__", None) and getattr(obj, "audit_wanted", lambda: True)()


def _after_flush(session, _flush_context):
    rows = []
    for obj in session.new:
        if _audited(obj):
            rows.append(_row(session, f"{obj.__audit__}.create", obj, _changes(obj, created=True)))
    for obj in session.dirty:
        if _audited(obj) and session.is_modified(obj):
            changes = _changes(obj, created=False)
            if changes:
                rows.append(_row(session, f"{obj.__audit__}.update", obj, changes))
    for obj in session.deleted:
        if _audited(obj):
            rows.append(_row(session, f"{obj.__audit__}.delete", obj, {}))
    if rows:
        session.connection().execute(insert(AuditEvent), rows)


def record(session, action, obj, details=None):
    """Record an action that changes no audited column (a reveal, a login)."""
    session.add(AuditEvent(**_row(session, action, obj, details or {})))


def install(session_factory):
    event.listen(session_factory, "after_flush", _after_flush)
