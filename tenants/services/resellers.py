from sqlalchemy import select

from ..db import commit
from ..errors import Conflict, NotFound
from ..models import Reseller, Role
from ..scope import require_role


def create_reseller(session, principal, *, name):
    require_role(principal, Role.PLATFORM)
    if session.scalar(select(Reseller.id).where(Reseller.name == name)) is not None:
        raise Conflict(f"a reseller named {name!r} exists already")
    reseller = Reseller(name=name)
    session.add(reseller)
    commit(session, f"a reseller named {name!r} exists already")
    return reseller


def list_resellers(principal):
    stmt = select(Reseller).order_by(Reseller.id)
    if principal.role == Role.RESELLER:
        stmt = stmt.where(Reseller.id == principal.reseller_id)
    elif principal.role == Role.TENANT:
        stmt = stmt.where(False)
    return stmt


def get_reseller(session, principal, reseller_id):
    reseller = session.scalars(list_resellers(principal).where(Reseller.id == reseller_id)).first()
    if reseller is None:
        raise NotFound(f"reseller {reseller_id} not found")
    return reseller


def update_reseller(session, principal, reseller_id, *, name):
    require_role(principal, Role.PLATFORM)
    reseller = get_reseller(session, principal, reseller_id)
    if name != reseller.name and session.scalar(
        select(Reseller.id).where(Reseller.name == name)
    ) is not None:
        raise Conflict(f"a reseller named {name!r} exists already")
    reseller.name = name
    commit(session, f"a reseller named {name!r} exists already")
    return reseller


def delete_reseller(session, principal, reseller_id):
    from ..models import Tenant

    require_role(principal, Role.PLATFORM)
    reseller = get_reseller(session, principal, reseller_id)
    if session.scalar(select(Tenant.id).where(Tenant.reseller_id == reseller.id).limit(1)):
        raise Conflict("the reseller still owns tenants; delete or move them first")
    session.delete(reseller)
    commit(session)
