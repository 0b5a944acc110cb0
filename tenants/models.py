"""The persistent model of the hosted PBX (SQLAlchemy 2, declarative with Mapped types).

Alembic owns the schema (migrations/); these classes must stay in step with it, which
tests/test_migrations.py checks.
"""

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Role(str, enum.Enum):
    PLATFORM = "platform"
    RESELLER = "reseller"
    TENANT = "tenant"


class RingMode(str, enum.Enum):
    HOME = "home"
    REMOTE = "remote"
    BOTH = "both"


class Endpoint(str, enum.Enum):
    HOME = "home"
    REMOTE = "remote"


class ClassOfService(str, enum.Enum):
    INTERNAL = "internal"
    LOCAL = "local"
    NATIONAL = "national"
    INTERNATIONAL = "international"


class RingStrategy(str, enum.Enum):
    SIMULTANEOUS = "simultaneous"
    SEQUENTIAL = "sequential"


# Ids that outlive their row (audit records, ban_tenants and the outbox keep them without a
# foreign key; API clients and edges keep them too) must never be handed out again. SQLite
# reuses the highest id of a deleted row unless the table is AUTOINCREMENT; PostgreSQL's
# sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Reseller(Base):
    __tablename__ = "resellers"
    __audit__ = "reseller"
    __audit_key__ = "id"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def audit_scope(self):
        return {"reseller_id": self.id, "tenant_id": None}


class Tenant(Base):
    __tablename__ = "tenants"
    __audit__ = "tenant"
    __audit_key__ = "trunk_number"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    trunk_number: Mapped[str] = mapped_column(String(5), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    reseller_id: Mapped[int | None] = mapped_column(
        ForeignKey("resellers.id", ondelete="RESTRICT"), index=True
    )
    ring_mode_code: Mapped[str] = mapped_column(String(8), default="36")
    voicemail_code: Mapped[str] = mapped_column(String(8), default="*97")
    dual_default_ring_mode: Mapped[str] = mapped_column(String(8), default=RingMode.BOTH.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    reseller: Mapped[Reseller | None] = relationship(lazy="raise_on_sql")
    trunks: Mapped[list["TenantTrunk"]] = relationship(
        back_populates="tenant", order_by="TenantTrunk.name", lazy="raise",
        cascade="all, delete-orphan", passive_deletes=True,
    )

    @property
    def feature_codes(self):
        return {"ring_mode": self.ring_mode_code, "voicemail": self.voicemail_code}

    def audit_scope(self):
        return {"reseller_id": self.reseller_id, "tenant_id": self.id}


class TenantOwned:
    """Rows that belong to one tenant: their audit records are the tenant's."""

    def audit_scope(self):
        return {"reseller_id": None, "tenant_id": self.tenant_id}


class TenantTrunk(TenantOwned, Base):
    """An outbound trunk of a tenant: where calls to external numbers go."""

    __tablename__ = "tenant_trunks"
    __audit__ = "trunk"
    __audit_key__ = "name"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="trunks", lazy="raise_on_sql")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __audit__ = "api_key"
    __audit_key__ = "key_id"
    __audit_redact__ = ("secret_hash",)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The public half of the key (shown in listings); the secret half is stored as SHA-256.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    reseller_id: Mapped[int | None] = mapped_column(
        ForeignKey("resellers.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant | None] = relationship(lazy="raise_on_sql")

    @property
    def trunk_number(self):
        return self.tenant.trunk_number if self.tenant is not None else None

    def audit_scope(self):
        return {"reseller_id": self.reseller_id, "tenant_id": self.tenant_id}


group_subscriptions_table_name = "group_subscriptions"


class Extension(TenantOwned, Base):
    __tablename__ = "extensions"
    __audit__ = "extension"
    __audit_key__ = "number"
    __audit_redact__ = (
        "password_enc", "voicemail_pin_hash",
        "ha1_md5", "ha1_sha256", "remote_ha1_md5", "remote_ha1_sha256",
    )
    __audit_collections__ = {"ring_groups": "number"}
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    caller_id_name: Mapped[str | None] = mapped_column(String(64))
    caller_id_number: Mapped[str | None] = mapped_column(String(32))

    voicemail_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    voicemail_pin_hash: Mapped[str | None] = mapped_column(String(255))
    voicemail_email: Mapped[str | None] = mapped_column(String(254))
    rings_before_voicemail: Mapped[int] = mapped_column(Integer, default=5)

    forward_always_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_always_destination: Mapped[str | None] = mapped_column(String(32))
    forward_busy_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_busy_destination: Mapped[str | None] = mapped_column(String(32))
    forward_no_answer_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_no_answer_destination: Mapped[str | None] = mapped_column(String(32))

    class_of_service: Mapped[str] = mapped_column(String(16), default=ClassOfService.NATIONAL.value)
    concurrent_call_limit: Mapped[int] = mapped_column(Integer, default=2)

    dual_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    dual_sip_peer: Mapped[bool] = mapped_column(Boolean, default=True)
    dual_external_number: Mapped[str | None] = mapped_column(String(32))
    # NO ACTION rather than RESTRICT: checked at the end of the statement, so deleting a
    # tenant may cascade to its trunks and extensions in any order.
    dual_trunk_id: Mapped[int | None] = mapped_column(ForeignKey("tenant_trunks.id"), index=True)
    ring_mode: Mapped[str] = mapped_column(String(8), default=RingMode.HOME.value)

    # The one SIP password of both endpoints, encrypted with the platform's secret keys,
    # and the digest HA1 values of each SIP user ID in the realm they were computed for.
    password_enc: Mapped[str] = mapped_column(Text)
    ha1_realm: Mapped[str] = mapped_column(String(255))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    remote_ha1_md5: Mapped[str] = mapped_column(String(32))
    remote_ha1_sha256: Mapped[str] = mapped_column(String(64))

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="raise_on_sql")
    dual_trunk: Mapped[TenantTrunk | None] = relationship(lazy="raise_on_sql")
    ring_groups: Mapped[list["RingGroup"]] = relationship(
        secondary=group_subscriptions_table_name, back_populates="members",
        order_by="RingGroup.number", lazy="raise", passive_deletes=True,
    )

    @property
    def sip_user_id(self):
        return self.tenant.trunk_number + self.number

    @property
    def remote_registration(self):
        """The remote endpoint exists only while dual registration is on as a SIP peer."""
        return self.dual_enabled and self.dual_sip_peer

    @property
    def remote_user_id(self):
        return self.sip_user_id + "r" if self.remote_registration else None


class RingGroup(TenantOwned, Base):
    __tablename__ = "ring_groups"
    __audit__ = "ring_group"
    __audit_key__ = "number"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(16), default=RingStrategy.SIMULTANEOUS.value)
    ring_seconds: Mapped[int] = mapped_column(Integer, default=20)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="raise_on_sql")
    members: Mapped[list[Extension]] = relationship(
        secondary=group_subscriptions_table_name, back_populates="ring_groups",
        order_by="Extension.number", lazy="raise", passive_deletes=True,
    )


class GroupSubscription(Base):
    __tablename__ = group_subscriptions_table_name

    ring_group_id: Mapped[int] = mapped_column(
        ForeignKey("ring_groups.id", ondelete="CASCADE"), primary_key=True
    )
    extension_id: Mapped[int] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Queue(TenantOwned, Base):
    __tablename__ = "queues"
    __audit__ = "queue"
    __audit_key__ = "number"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="raise_on_sql")
    agents: Mapped[list["QueueAgent"]] = relationship(
        back_populates="queue", lazy="raise", cascade="all, delete-orphan", passive_deletes=True,
    )


class AgentLogin(Base):
    """Which endpoint of an extension is the ACD agent. One row per extension, so the
    database itself refuses a second endpoint while the first is logged in anywhere."""

    __tablename__ = "agent_logins"
    __table_args__ = (UniqueConstraint("extension_id", "endpoint"),)

    extension_id: Mapped[int] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), primary_key=True
    )
    endpoint: Mapped[str] = mapped_column(String(8))
    logged_in_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class QueueAgent(Base):
    __tablename__ = "queue_agents"
    __table_args__ = (
        ForeignKeyConstraint(
            ["extension_id", "endpoint"],
            ["agent_logins.extension_id", "agent_logins.endpoint"],
            ondelete="CASCADE",
        ),
        Index("ix_queue_agents_extension", "extension_id"),
    )

    queue_id: Mapped[int] = mapped_column(
        ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True
    )
    extension_id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(8))
    logged_in_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    queue: Mapped[Queue] = relationship(back_populates="agents", lazy="raise")
    extension: Mapped[Extension] = relationship(
        primaryjoin="QueueAgent.extension_id == Extension.id",
        foreign_keys=[extension_id], lazy="raise", viewonly=True,
    )


class AuditEvent(Base):
    """Who did what, when. No foreign keys: the record outlives what it describes."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant", "tenant_id", "id"),
        Index("ix_audit_events_reseller", "reseller_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    reseller_id: Mapped[int | None] = mapped_column(Integer)
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class OutboxEntry(Base):
    """A change the edges need, at a version that only grows in commit order."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_tenant", "tenant_id", "version"),)

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))
    payload: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxCounter(Base):
    """One row. Taking the next version locks it until commit, which orders versions by
    commit time: an edge that has read up to version N never misses a later N-1."""

    __tablename__ = "outbox_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Entries up to here have been pruned: an edge behind it must take a new snapshot.
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


# --- Fail2ban-style protection -------------------------------------------------------


class BanPolicy(Base):
    """The platform's jail (one row): max_retry failures within find_time ban for ban_time,
    escalating by ban_time_factor per repeat offence up to max_ban_time (seconds)."""

    __tablename__ = "ban_policy"
    __audit__ = "ban_policy"
    __audit_key__ = "id"

    id: Mapped[int] = mapped_column(primary_key=True)
    max_retry: Mapped[int] = mapped_column(Integer, default=5)
    find_time: Mapped[int] = mapped_column(Integer, default=600)
    ban_time: Mapped[int] = mapped_column(Integer, default=3600)
    ban_time_factor: Mapped[float] = mapped_column(Float, default=2.0)
    max_ban_time: Mapped[int] = mapped_column(Integer, default=604800)
    # Failures over this many distinct SIP user IDs from one address are a scan.
    scan_user_ids: Mapped[int] = mapped_column(Integer, default=3)
    # One IPv6 host owns a whole /64: that is what gets counted and banned.
    ipv6_prefix: Mapped[int] = mapped_column(Integer, default=64)

    def audit_scope(self):
        return {"reseller_id": None, "tenant_id": None}


class TrustedNetwork(Base):
    """Networks never banned as a whole: the platform's (tenant_id NULL) or a tenant's."""

    __tablename__ = "trusted_networks"
    __audit__ = "trusted_network"
    __audit_key__ = "cidr"
    # The id names the network in the API and is the edges' key for it.
    __table_args__ = (UniqueConstraint("tenant_id", "cidr"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    cidr: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant | None] = relationship(lazy="raise_on_sql")

    def audit_scope(self):
        return {"reseller_id": None, "tenant_id": self.tenant_id}


class FailureWindow(Base):
    """Recent authentication failures of one source (an IPv4 address or an IPv6 prefix),
    aggregated: the last few failures (time and user ID) within find_time, and a bounded
    summary. One row per source, purged once it is quiet for find_time."""

    __tablename__ = "failure_windows"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    recent: Mapped[list] = mapped_column(JSON, default=list)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # unindexed: see migration 0005
    user_ids: Mapped[list] = mapped_column(JSON, default=list)
    edges: Mapped[list] = mapped_column(JSON, default=list)
    reasons: Mapped[dict] = mapped_column(JSON, default=dict)
    tenant_ids: Mapped[list] = mapped_column(JSON, default=list)
    # A failure named a user ID of no tenant (or more tenants than we keep).
    unattributed: Mapped[bool] = mapped_column(Boolean, default=False)


class SourceRegistration(Base):
    """A SIP user ID that authenticated from a source, valid until its registration expires.
    An office NAT that holds valid registrations of other user IDs gets pair lockouts for a
    phone with a stale password, not a ban of the whole office."""

    __tablename__ = "source_registrations"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Offender(Base):
    """How many times a ban key (a source, or source + user ID) was banned, for escalation."""

    __tablename__ = "offenders"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    offences: Mapped[int] = mapped_column(Integer, default=0)
    last_banned_until: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Ban(Base):
    """A ban of a source (user_id NULL) or a lockout of one user ID from a source."""

    __tablename__ = "bans"
    __audit__ = "ban"
    __audit_key__ = "source"
    __table_args__ = (
        Index("ix_bans_source", "source", "until"),
        Index("ix_bans_until", "until"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(200))
    offence: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    user_ids: Mapped[list] = mapped_column(JSON, default=list)
    edges: Mapped[list] = mapped_column(JSON, default=list)
    first_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    unattributed: Mapped[bool] = mapped_column(Boolean, default=False)

    tenants: Mapped[list["BanTenant"]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    def audit_scope(self):
        """A manual ban or a lift shows in the audit log of the tenant whose user IDs the
        failures behind it named (and so in its reseller's). One audit row has one tenant:
        a ban over several tenants' user IDs, or none, is the platform's record alone."""
        tenant_ids = {t.tenant_id for t in self.tenants}
        return {"reseller_id": None,
                "tenant_id": tenant_ids.pop() if len(tenant_ids) == 1 else None}

    def active_at(self, now):
        return self.lifted_at is None and self.until > now

    def audit_wanted(self):
        """People's acts are audited (manual bans, lifts); the engine's own bans are
        recorded in this table already, and an attack would flood the audit log."""
        return self.manual or self.lifted_at is not None


class BanTenant(Base):
    """The tenants whose user IDs the failures behind a ban named: who may see it."""

    __tablename__ = "ban_tenants"

    ban_id: Mapped[int] = mapped_column(ForeignKey("bans.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)


# --- The fleet of SIP edges ----------------------------------------------------------


class Edge(Base):
    """An enrolled SIP edge worker. Its token is `tle_<key_id>.<secret>`, stored hashed."""

    __tablename__ = "edges"
    __audit__ = "edge"
    __audit_key__ = "name"
    __audit_redact__ = ("secret_hash",)
    # What every heartbeat and batch updates: a record each would flood the audit log.
    __audit_ignore__ = ("last_seen_at", "applied_version", "addresses")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    applied_version: Mapped[int] = mapped_column(BigInteger, default=0)
    # The addresses the edge listens on, from its heartbeats: never banned.
    addresses: Mapped[list] = mapped_column(JSON, default=list)

    def audit_scope(self):
        return {"reseller_id": None, "tenant_id": None}


class EdgeBatch(Base):
    """Event batches already applied, so a batch sent again after a timeout counts once."""

    __tablename__ = "edge_batches"

    edge_id: Mapped[int] = mapped_column(ForeignKey("edges.id", ondelete="CASCADE"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Registration(Base):
    """A binding an edge holds for a SIP user ID: the "SIP Status" screen."""

    __tablename__ = "registrations"
    __table_args__ = (
        UniqueConstraint("edge_id", "user_id", "contact"),
        Index("ix_registrations_tenant", "tenant_id", "user_id"),
        Index("ix_registrations_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edge_id: Mapped[int] = mapped_column(ForeignKey("edges.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id", ondelete="CASCADE"),
                                              index=True)
    user_id: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str] = mapped_column(String(8))
    contact: Mapped[str] = mapped_column(String(512))
    source_address: Mapped[str] = mapped_column(String(64))
    source_port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    edge: Mapped[Edge] = relationship(lazy="raise_on_sql")
    extension: Mapped[Extension] = relationship(lazy="raise_on_sql")
