"""A gunicorn worker rehearses the edges' event intake before it serves.

A worker's first batch of an edge's events costs several times what later ones do (on
PostgreSQL 35 to 85 ms against about 15, measured with the SIP bench's ban phase): each
statement is compiled by SQLAlchemy once per process, the code runs for the first time,
and the database plans each statement the first time a connection sends it. That first
batch is often the one with the failure that decides a ban, and every edge waits for that
decision. So each worker, before it accepts connections (deploy/gunicorn.conf.py,
post_worker_init), applies a batch like an edge's, on a connection of its own pool, in a
transaction that is rolled back: an edge enrolled, a tenant and an extension made, then a
heartbeat, a registration and a success from 192.0.2.1, failures from 192.0.2.2 up to the
ban they decide (documentation addresses, RFC 5737). Nothing of it is committed, no
long-poll learns of it (the sessions are not the app's, which wake them), and it runs
through the same services and schema as a real batch. (On PostgreSQL the ban engine
commits an empty placeholder of the attacker's failure window on a connection of its own,
as for any batch that rolls back; the rehearsal deletes it afterwards.)

It waits for a lock at most REHEARSAL_LOCK_WAIT_MS (workers that boot together take their
turns) and runs at most REHEARSAL_STATEMENT_MS a statement on PostgreSQL: past either it is
skipped. While it runs it holds what any batch holds (SQLite's write lock, PostgreSQL's
outbox counter row): 40 to 200 ms, once per worker start. Whatever happens, the worker
then serves (a failure is logged with its cause).
"""

import logging
import time
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tenants.db import is_lock_timeout, make_sessionmaker, waiting_briefly
from tenants.models import Ban
from tenants.scope import platform_principal
from tenants.services import bans, edges, extensions, tenants

from .api.edge_feed import BatchSchema

log = logging.getLogger(__name__)

# TEST-NET-1 (RFC 5737): never a real phone's or attacker's address.
PHONE, ATTACKER = "192.0.2.1", "192.0.2.2"
# Workers that boot together queue for the write lock one after the other (a rehearsal
# holds it 40 to 200 ms); a writer that holds it longer than this makes the worker skip.
REHEARSAL_LOCK_WAIT_MS = 2000
REHEARSAL_STATEMENT_MS = 5000


def rehearse_edge_intake(app, logger=log):
    """Apply one edge batch in a transaction that is rolled back; returns the summary
    ingest_events gave (and whether the ban was decided), or None when it was skipped or
    failed. `logger`: gunicorn's, in a worker (the app configures no logging of its own)."""
    trunkline = app.extensions["trunkline"]
    began = time.monotonic()
    try:
        result = _rehearse(trunkline["engine"], trunkline["platform"])
    except Exception as exc:
        if isinstance(exc, OperationalError) and is_lock_timeout(exc.orig):
            logger.info("edge intake rehearsal skipped, the database was busy: %s", exc.orig)
        else:
            logger.exception("edge intake rehearsal failed; the worker serves anyway")
        return None
    logger.info("edge intake rehearsed in %.0f ms (rolled back; %d events, ban decided: %s)",
                (time.monotonic() - began) * 1000, result["applied"], result["banned"])
    return result


def _rehearse(engine, platform):
    # Sessions like the app's (audit, outbox) but not its notifier: nothing is announced.
    factory = make_sessionmaker(engine, platform)
    with waiting_briefly(engine, REHEARSAL_LOCK_WAIT_MS, keep=False) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {REHEARSAL_STATEMENT_MS}")
        # The services commit: here each commit only releases a savepoint.
        with factory(bind=conn, join_transaction_mode="create_savepoint") as session:
            result = _apply_batch(session)
    if engine.dialect.name == "postgresql":
        # The ban engine commits the attacker's window as an empty placeholder on a
        # connection of its own (tenants.services.bans._create_placeholders): gone too.
        with waiting_briefly(engine, REHEARSAL_LOCK_WAIT_MS) as conn:
            bans.discard_placeholders(conn, [ATTACKER])
    return result


def _apply_batch(session):
    principal = platform_principal("warm-up")
    name = f"warm-up-{uuid.uuid4().hex[:12]}"
    edge, _token = edges.enroll_edge(session, principal, name=name)
    tenant = tenants.create_tenant(session, principal, name=name)
    extension = extensions.create_extension(session, principal, tenant.trunk_number,
                                            number="101", name="warm-up")
    user_id = tenant.trunk_number + extension.number
    max_retry = bans.get_policy(session).max_retry
    raw = [
        {"type": "heartbeat", "applied_version": 0, "addresses": []},
        {"type": "registration", "user_id": user_id, "contact": f"sip:{user_id}@{PHONE}:5060",
         "source_address": PHONE, "source_port": 5060, "transport": "udp", "expires": 60,
         "user_agent": "warm-up"},
        {"type": "auth_success", "address": PHONE, "user_id": user_id},
        *({"type": "auth_failure", "address": ATTACKER, "user_id": f"{user_id}9",
           "reason": "wrong_password"} for _ in range(max_retry)),
        {"type": "unregistration", "user_id": user_id},
    ]
    batch = BatchSchema().load({"batch_id": name, "events": raw})
    # A request's batch finds its session's transaction begun only where it holds the write
    # lock already; begun here too, the batch reads under that lock as a real first one
    # does when no other process writes (bans._unlocked_reader).
    session.connection()
    result = edges.ingest_events(session, edge, **batch)
    result["banned"] = session.scalar(select(func.count()).select_from(Ban).where(
        Ban.source == ATTACKER, Ban.user_id.is_(None))) > 0
    return result
