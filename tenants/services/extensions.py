"""Extensions: the users of a tenant, each with a home and (optionally) a remote endpoint
that share one password and every call-handling setting."""

from sqlalchemy import delete, select
from sqlalchemy.orm import joinedload, selectinload

from .. import audit, crypto, outbox
from ..db import commit, platform_of
from ..errors import Conflict, Invalid, NotFound
from ..models import (
    AgentLogin, Endpoint, Extension, Queue, QueueAgent, Registration, RingGroup, RingMode,
    Tenant, TenantTrunk,
)
from ..scope import get_visible_tenant
from ..sipid import parse_sip_user_id
from .dialplan import ensure_number_free

_FORWARD_KINDS = ("always", "busy", "no_answer")
_EAGER = (
    joinedload(Extension.tenant),
    joinedload(Extension.dual_trunk),
    selectinload(Extension.ring_groups),
)


def _load(session, tenant, number):
    ext = session.scalars(
        select(Extension)
        .where(Extension.tenant_id == tenant.id, Extension.number == str(number))
        .options(*_EAGER)
    ).unique().one_or_none()
    if ext is None:
        raise NotFound(f"extension {number} not found in tenant {tenant.trunk_number}")
    return ext


def get_extension(session, principal, trunk_number, number):
    return _load(session, get_visible_tenant(session, principal, trunk_number), number)


def list_extensions(session, principal, trunk_number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    return (
        select(Extension)
        .where(Extension.tenant_id == tenant.id)
        .options(*_EAGER)
        .order_by(Extension.number)
    )


def _set_password(session, ext, password):
    platform = platform_of(session)
    realm = platform.realm
    ext.password_enc = platform.box.encrypt(password)
    ext.ha1_realm = realm
    home, remote = ext.sip_user_id, ext.sip_user_id + "r"
    ext.ha1_md5 = crypto.ha1("MD5", home, realm, password)
    ext.ha1_sha256 = crypto.ha1("SHA-256", home, realm, password)
    ext.remote_ha1_md5 = crypto.ha1("MD5", remote, realm, password)
    ext.remote_ha1_sha256 = crypto.ha1("SHA-256", remote, realm, password)


def _ring_groups(session, tenant, numbers):
    numbers = list(dict.fromkeys(numbers))
    groups = session.scalars(
        select(RingGroup)
        .where(RingGroup.tenant_id == tenant.id, RingGroup.number.in_(numbers))
        .options(selectinload(RingGroup.members))
    ).all()
    missing = sorted(set(numbers) - {g.number for g in groups})
    if missing:
        raise Invalid("ring_groups", f"no ring group {', '.join(missing)} in this tenant")
    return sorted(groups, key=lambda g: g.number)


def _apply_settings(session, tenant, ext, data):
    for field in ("name", "caller_id_name", "caller_id_number", "rings_before_voicemail",
                  "concurrent_call_limit", "class_of_service"):
        if field in data:
            value = data[field]
            setattr(ext, field, value.value if hasattr(value, "value") else value)
    voicemail = data.get("voicemail") or {}
    if "enabled" in voicemail:
        ext.voicemail_enabled = voicemail["enabled"]
    if "email" in voicemail:
        ext.voicemail_email = voicemail["email"]
    if "pin" in voicemail:
        ext.voicemail_pin_hash = crypto.hash_pin(voicemail["pin"]) if voicemail["pin"] else None
    for kind, rule in (data.get("forwarding") or {}).items():
        if "enabled" in rule:
            setattr(ext, f"forward_{kind}_enabled", rule["enabled"])
        if "destination" in rule:
            setattr(ext, f"forward_{kind}_destination", rule["destination"] or None)
        if getattr(ext, f"forward_{kind}_enabled") and not getattr(ext, f"forward_{kind}_destination"):
            raise Invalid(f"forwarding.{kind}.destination", "required when forwarding is enabled")
    if "ring_groups" in data:
        before = set(ext.ring_groups) if ext.id is not None else set()
        ext.ring_groups = _ring_groups(session, tenant, data["ring_groups"])
        for group in before.symmetric_difference(ext.ring_groups):
            outbox.record_change(session, "ring_group", group)


def create_extension(session, principal, trunk_number, *, number, **data):
    tenant = get_visible_tenant(session, principal, trunk_number)
    ensure_number_free(session, tenant, number)
    ext = Extension(
        tenant_id=tenant.id, number=number, name=data["name"],
        voicemail_enabled=True, rings_before_voicemail=5, class_of_service="national",
        concurrent_call_limit=2, forward_always_enabled=False, forward_busy_enabled=False,
        forward_no_answer_enabled=False, dual_enabled=False, dual_sip_peer=True,
        ring_mode=RingMode.HOME.value,
    )
    ext.tenant = tenant
    ext.dual_trunk = None
    if "ring_groups" not in data:
        ext.ring_groups = []
    _apply_settings(session, tenant, ext, data)
    _set_password(session, ext, crypto.generate_sip_password())
    session.add(ext)
    outbox.record_change(session, "extension", ext)
    commit(session, f"extension {number} exists already")
    return ext


def update_extension(session, principal, trunk_number, number, **data):
    ext = get_extension(session, principal, trunk_number, number)
    _apply_settings(session, ext.tenant, ext, data)
    outbox.record_change(session, "extension", ext)
    commit(session)
    return ext


def delete_extension(session, principal, trunk_number, number):
    ext = get_extension(session, principal, trunk_number, number)
    for group in ext.ring_groups:
        outbox.record_change(session, "ring_group", group)
    for queue in _queues_of(session, ext):
        outbox.record_change(session, "queue", queue)
    outbox.record_deletion(session, "extension", ext)
    session.delete(ext)
    commit(session)


def _queues_of(session, ext, endpoint=None):
    stmt = select(Queue).join(QueueAgent, QueueAgent.queue_id == Queue.id).where(
        QueueAgent.extension_id == ext.id
    )
    if endpoint is not None:
        stmt = stmt.where(QueueAgent.endpoint == endpoint)
    return session.scalars(stmt).all()


def set_dual_registration(session, principal, trunk_number, number, *, enabled,
                          sip_peer=None, external_number=..., trunk=...):
    """The seed's "Advanced" tab. Omitted fields keep their value, so disabling keeps
    the settings for later."""
    ext = get_extension(session, principal, trunk_number, number)
    tenant = ext.tenant
    was_enabled, had_remote = ext.dual_enabled, ext.remote_registration
    sip_peer = ext.dual_sip_peer if sip_peer is None else sip_peer
    if external_number is ...:
        external_number = ext.dual_external_number
    trunk_name = (ext.dual_trunk.name if ext.dual_trunk else None) if trunk is ... else trunk
    external_number = external_number or None
    trunk_name = trunk_name or None

    given = {"external_number": external_number, "trunk": trunk_name}
    if sip_peer:
        filled = {f: "must be blank when sip_peer is checked" for f, v in given.items() if v}
        if filled:
            raise Invalid(filled)
        dual_trunk = None
    else:
        missing = {f: "required when sip_peer is not checked" for f, v in given.items() if not v}
        if enabled and missing:
            raise Invalid(missing)
        dual_trunk = None
        if trunk_name is not None:
            dual_trunk = session.scalars(
                select(TenantTrunk).where(TenantTrunk.tenant_id == tenant.id,
                                          TenantTrunk.name == trunk_name)
            ).one_or_none()
            if dual_trunk is None:
                raise Invalid("trunk", f"no trunk named {trunk_name!r} in this tenant")

    ext.dual_enabled = enabled
    ext.dual_sip_peer = sip_peer
    ext.dual_external_number = external_number
    ext.dual_trunk = dual_trunk
    if enabled and not was_enabled:
        ext.ring_mode = tenant.dual_default_ring_mode
    elif not enabled:
        ext.ring_mode = RingMode.HOME.value
    if had_remote and not ext.remote_registration:
        _log_out_remote(session, ext)
    outbox.record_change(session, "extension", ext)
    commit(session)
    return ext


def _log_out_remote(session, ext):
    """The remote endpoint is gone: it can no longer be an ACD agent, and SIP Status no
    longer shows it registered (the edges drop its identity, so its bindings are dead)."""
    for queue in _queues_of(session, ext, Endpoint.REMOTE.value):
        outbox.record_change(session, "queue", queue)
    session.execute(
        delete(AgentLogin).where(AgentLogin.extension_id == ext.id,
                                 AgentLogin.endpoint == Endpoint.REMOTE.value)
    )
    _forget_registrations(session, ext, Endpoint.REMOTE)


def _forget_registrations(session, ext, endpoint=None):
    stmt = delete(Registration).where(Registration.extension_id == ext.id)
    if endpoint is not None:
        stmt = stmt.where(Registration.endpoint == endpoint.value)
    session.execute(stmt)


def set_ring_mode(session, principal, trunk_number, number, *, mode):
    ext = get_extension(session, principal, trunk_number, number)
    apply_ring_mode(session, ext, mode)
    commit(session)
    return ext


def apply_ring_mode(session, ext, mode):
    """Set the ring mode inside the caller's transaction (the API, or a phone's feature code
    reported by an edge)."""
    mode = RingMode(mode)
    if mode != RingMode.HOME and not ext.dual_enabled:
        raise Conflict(f"ring mode {mode.value} needs dual registration on this extension",
                       fields={"mode": ["dual registration is off for this extension"]})
    ext.ring_mode = mode.value
    outbox.record_change(session, "extension", ext)


def _credentials(session, ext, password):
    platform = platform_of(session)
    return {
        "user_id": ext.sip_user_id,
        "remote_user_id": ext.remote_user_id,
        "password": password,
        "realm": ext.ha1_realm,
        "sip_server": platform.sip_server,
    }


def reveal_credentials(session, principal, trunk_number, number):
    ext = get_extension(session, principal, trunk_number, number)
    password = platform_of(session).box.decrypt(ext.password_enc)
    audit.record(session, "sip_credentials.reveal", ext)
    commit(session)
    return _credentials(session, ext, password)


def rotate_credentials(session, principal, trunk_number, number):
    ext = get_extension(session, principal, trunk_number, number)
    password = crypto.generate_sip_password()
    _set_password(session, ext, password)
    # A phone is registered with the old password: it shows again once it has the new one.
    _forget_registrations(session, ext)
    audit.record(session, "sip_credentials.rotate", ext)
    outbox.record_change(session, "extension", ext)
    commit(session)
    return _credentials(session, ext, password)


def rehash_credentials(session):
    """Recompute every HA1 for the platform's current realm (after the realm changed)."""
    platform = platform_of(session)
    stale = session.scalars(
        select(Extension).where(Extension.ha1_realm != platform.realm).options(*_EAGER)
    ).unique().all()
    for ext in stale:
        _set_password(session, ext, platform.box.decrypt(ext.password_enc))
        outbox.record_change(session, "extension", ext)
    commit(session)
    return len(stale)


def reencrypt_passwords(session):
    """Re-encrypt every stored SIP password under the newest secret key."""
    box = platform_of(session).box
    exts = session.scalars(select(Extension)).all()
    for ext in exts:
        ext.password_enc = box.rotate(ext.password_enc)
    commit(session)
    return len(exts)


def find_endpoint(session, user_id):
    """(extension, endpoint) that a SIP user ID names today, or None."""
    identity = parse_sip_user_id(user_id)
    if identity is None:
        return None
    ext = session.scalars(
        select(Extension)
        .join(Tenant, Tenant.id == Extension.tenant_id)
        .where(Tenant.trunk_number == identity.trunk_number,
               Extension.number == identity.extension_number)
        .options(joinedload(Extension.tenant))
    ).one_or_none()
    if ext is None:
        return None
    if identity.endpoint == Endpoint.REMOTE and not ext.remote_registration:
        return None
    return ext, identity.endpoint
