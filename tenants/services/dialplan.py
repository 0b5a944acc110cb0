"""One dial plan per tenant: extensions, ring groups, queues and feature codes share it."""

from sqlalchemy import select

from ..errors import Conflict
from ..models import Extension, Queue, RingGroup

_NUMBERED = ((Extension, "an extension"), (RingGroup, "a ring group"), (Queue, "a queue"))


def ensure_number_free(session, tenant, number, *, field="number", exclude=None):
    if number in tenant.feature_codes.values():
        raise Conflict(f"{number} is a feature code of tenant {tenant.trunk_number}",
                       fields={field: ["is one of the tenant's feature codes"]})
    for model, label in _NUMBERED:
        stmt = select(model.id).where(model.tenant_id == tenant.id, model.number == number)
        if isinstance(exclude, model):
            stmt = stmt.where(model.id != exclude.id)
        if session.scalar(stmt) is not None:
            raise Conflict(f"{number} is already {label} of tenant {tenant.trunk_number}",
                           fields={field: [f"already used by {label}"]})
