"""ACD queues and agent login. Either endpoint of an extension may be the agent, never both:
the agent_logins table holds one row per extension, so the database settles any race."""

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from .. import audit, outbox
from ..db import commit
from ..errors import Conflict, NotFound
from ..models import AgentLogin, Endpoint, Queue, QueueAgent
from ..scope import get_visible_tenant
from .dialplan import ensure_number_free
from .extensions import _load as load_extension

_EAGER = (joinedload(Queue.tenant),
          selectinload(Queue.agents).joinedload(QueueAgent.extension))


def list_queues(session, principal, trunk_number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    return select(Queue).where(Queue.tenant_id == tenant.id).options(*_EAGER).order_by(Queue.number)


def _load(session, tenant, number):
    queue = session.scalars(
        select(Queue).where(Queue.tenant_id == tenant.id, Queue.number == str(number))
        .options(*_EAGER)
    ).unique().one_or_none()
    if queue is None:
        raise NotFound(f"queue {number} not found in tenant {tenant.trunk_number}")
    return queue


def get_queue(session, principal, trunk_number, number):
    return _load(session, get_visible_tenant(session, principal, trunk_number), number)


def create_queue(session, principal, trunk_number, *, number, name):
    tenant = get_visible_tenant(session, principal, trunk_number)
    ensure_number_free(session, tenant, number)
    queue = Queue(tenant_id=tenant.id, number=number, name=name)
    queue.tenant = tenant
    queue.agents = []
    session.add(queue)
    outbox.record_change(session, "queue", queue)
    commit(session, f"{number} exists already")
    return queue


def update_queue(session, principal, trunk_number, number, *, name=None):
    queue = get_queue(session, principal, trunk_number, number)
    if name is not None:
        queue.name = name
    outbox.record_change(session, "queue", queue)
    commit(session)
    return queue


def delete_queue(session, principal, trunk_number, number):
    queue = get_queue(session, principal, trunk_number, number)
    extension_ids = [a.extension_id for a in queue.agents]
    outbox.record_deletion(session, "queue", queue)
    session.delete(queue)
    session.flush()
    _release_idle_logins(session, extension_ids)
    commit(session)


def _release_idle_logins(session, extension_ids):
    for extension_id in extension_ids:
        remaining = session.scalar(
            select(func.count()).select_from(QueueAgent).where(QueueAgent.extension_id == extension_id)
        )
        if not remaining:
            login = session.get(AgentLogin, extension_id)
            if login is not None:
                session.delete(login)


def log_in_agent(session, principal, trunk_number, queue_number, extension_number, *, endpoint):
    tenant = get_visible_tenant(session, principal, trunk_number)
    queue = _load(session, tenant, queue_number)
    ext = load_extension(session, tenant, extension_number)
    endpoint = Endpoint(endpoint)
    if endpoint == Endpoint.REMOTE and not ext.remote_registration:
        raise Conflict(f"extension {ext.number} has no remote endpoint "
                       "(dual registration is not on as a SIP peer)",
                       fields={"endpoint": ["no remote endpoint"]})
    other = Endpoint.HOME if endpoint == Endpoint.REMOTE else Endpoint.REMOTE
    busy = Conflict(f"the {other.value} endpoint of extension {ext.number} is logged in as the "
                    "agent; log it out first", fields={"endpoint": [f"{other.value} is logged in"]})
    login = session.get(AgentLogin, ext.id)
    if login is not None and login.endpoint != endpoint.value:
        raise busy
    agent = session.get(QueueAgent, (queue.id, ext.id))
    if agent is not None and agent.endpoint != endpoint.value:
        # Committed by the other endpoint since we read agent_logins (READ COMMITTED).
        raise busy
    if agent is None:
        try:
            with session.begin_nested():
                if login is None:
                    session.add(AgentLogin(extension_id=ext.id, endpoint=endpoint.value))
                    session.flush()
                agent = QueueAgent(queue_id=queue.id, extension_id=ext.id, endpoint=endpoint.value)
                session.add(agent)
                session.flush()
        except IntegrityError:
            # The other endpoint logged in at the same moment, and won.
            raise busy from None
        queue.agents.append(agent)
        audit.record(session, "queue_agent.login", queue,
                     {"extension": ext.number, "endpoint": endpoint.value})
        outbox.record_change(session, "queue", queue)
        commit(session, busy.message)
    agent.extension = ext
    return agent


def log_out_agent(session, principal, trunk_number, queue_number, extension_number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    queue = _load(session, tenant, queue_number)
    ext = load_extension(session, tenant, extension_number)
    agent = session.get(QueueAgent, (queue.id, ext.id))
    if agent is None:
        raise NotFound(f"extension {ext.number} is not logged in to queue {queue.number}")
    audit.record(session, "queue_agent.logout", queue,
                 {"extension": ext.number, "endpoint": agent.endpoint})
    queue.agents.remove(agent)
    session.flush()
    _release_idle_logins(session, [ext.id])
    outbox.record_change(session, "queue", queue)
    commit(session)
