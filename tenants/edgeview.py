"""What an edge knows of each object: the payloads of the outbox (and, later, snapshots).

Each builder loads what its payload needs in one batched query per kind, never one query
per object.
"""

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from .models import (
    Ban, BanPolicy, Extension, OutboxEntry, Queue, QueueAgent, RingGroup, Tenant, TrustedNetwork,
)


def tenant_payload(tenant):
    return {
        "trunk_number": tenant.trunk_number,
        "name": tenant.name,
        "feature_codes": tenant.feature_codes,
        "trunks": [{"name": t.name, "gateway": t.gateway} for t in tenant.trunks],
    }


def extension_payload(ext):
    dual_trunk = ext.dual_trunk.name if ext.dual_trunk is not None else None
    identities = [
        {"user_id": ext.sip_user_id, "endpoint": "home",
         "ha1_md5": ext.ha1_md5, "ha1_sha256": ext.ha1_sha256},
    ]
    if ext.remote_registration:
        identities.append(
            {"user_id": ext.remote_user_id, "endpoint": "remote",
             "ha1_md5": ext.remote_ha1_md5, "ha1_sha256": ext.remote_ha1_sha256}
        )
    return {
        "trunk_number": ext.tenant.trunk_number,
        "number": ext.number,
        "realm": ext.ha1_realm,
        "identities": identities,
        "ring_mode": ext.ring_mode,
        "dual_registration": {
            "enabled": ext.dual_enabled,
            "sip_peer": ext.dual_sip_peer,
            "external_number": ext.dual_external_number,
            "trunk": dual_trunk,
        },
        "caller_id": {"name": ext.caller_id_name, "number": ext.caller_id_number},
        "voicemail_enabled": ext.voicemail_enabled,
        "rings_before_voicemail": ext.rings_before_voicemail,
        "forwarding": {
            kind: {
                "enabled": getattr(ext, f"forward_{kind}_enabled"),
                "destination": getattr(ext, f"forward_{kind}_destination"),
            }
            for kind in ("always", "busy", "no_answer")
        },
        "class_of_service": ext.class_of_service,
        "concurrent_call_limit": ext.concurrent_call_limit,
        "ring_groups": [g.number for g in ext.ring_groups],
    }


def ring_group_payload(group):
    return {
        "trunk_number": group.tenant.trunk_number,
        "number": group.number,
        "strategy": group.strategy,
        "ring_seconds": group.ring_seconds,
        "members": [m.number for m in group.members],
    }


def queue_payload(queue):
    return {
        "trunk_number": queue.tenant.trunk_number,
        "number": queue.number,
        "agents": [
            {"extension": a.extension.number, "endpoint": a.endpoint}
            for a in sorted(queue.agents, key=lambda a: a.extension.number)
        ],
    }


def ban_payload(ban):
    return {"source": ban.source, "user_id": ban.user_id, "until": ban.until.isoformat(),
            "reason": ban.reason}


def ban_policy_payload(policy):
    return {field: getattr(policy, field) for field in (
        "max_retry", "find_time", "ban_time", "ban_time_factor", "max_ban_time",
        "scan_user_ids", "ipv6_prefix")}


def trusted_network_payload(network):
    trunk = network.tenant.trunk_number if network.tenant is not None else None
    return {"cidr": network.cidr, "trunk_number": trunk}


def ban_key(ban):
    """A ban's name on the edges: its source, and the user ID of a lockout. A user ID too
    long for the outbox's key beside the source (up to 64 characters, after an IPv6 source
    of up to 43) is named by a digest of it instead: edges use the key only to match a
    lockout with its lift, and take source and user ID from the payload."""
    if ban.user_id is None:
        return ban.source
    key = f"{ban.source}|{ban.user_id}"
    if len(key) <= OutboxEntry.__table__.c.key.type.length:
        return key
    return f"{ban.source}|#{hashlib.sha256(ban.user_id.encode()).hexdigest()[:16]}"


def _tenant_key(obj):
    return f"{obj.tenant.trunk_number}/{obj.number}"


class Kind:
    """One kind of object the edges know: how to load a batch, its key and its payload."""

    def __init__(self, name, model, options, payload, key, tenant_id=lambda o: o.tenant_id,
                 as_written=False):
        self.name, self.model, self.options, self.payload = name, model, options, payload
        self.key, self.tenant_id = key, tenant_id
        # The payload reads only columns the service sets itself: the objects as written
        # need no reading again (a ban is written in the transaction that decides it).
        self.as_written = as_written

    def load(self, session, ids):
        stmt = (
            select(self.model)
            .where(self.model.id.in_(ids))
            .options(*self.options)
            .execution_options(populate_existing=True)
        )
        return session.scalars(stmt).unique().all()


KINDS = {
    k.name: k
    for k in (
        Kind("tenant", Tenant, [selectinload(Tenant.trunks)], tenant_payload,
             key=lambda t: t.trunk_number, tenant_id=lambda t: t.id),
        Kind(
            "extension",
            Extension,
            [joinedload(Extension.tenant), joinedload(Extension.dual_trunk),
             selectinload(Extension.ring_groups)],
            extension_payload,
            key=lambda e: e.tenant.trunk_number + e.number,
        ),
        Kind(
            "ring_group",
            RingGroup,
            [joinedload(RingGroup.tenant), selectinload(RingGroup.members)],
            ring_group_payload,
            key=_tenant_key,
        ),
        Kind(
            "queue",
            Queue,
            [joinedload(Queue.tenant), selectinload(Queue.agents).joinedload(QueueAgent.extension)],
            queue_payload,
            key=_tenant_key,
        ),
        # A reload asks every edge to re-read one tenant (GET the tenant's snapshot).
        Kind("reload", Tenant, [], lambda t: {"trunk_number": t.trunk_number},
             key=lambda t: t.trunk_number, tenant_id=lambda t: t.id),
        Kind("ban", Ban, [], ban_payload, key=ban_key, tenant_id=lambda b: None,
             as_written=True),
        Kind("ban_policy", BanPolicy, [], ban_policy_payload, key=lambda p: "platform",
             tenant_id=lambda p: None),
        Kind("trusted_network", TrustedNetwork, [joinedload(TrustedNetwork.tenant)],
             trusted_network_payload, key=lambda n: str(n.id)),
    )
}
