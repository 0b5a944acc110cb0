"""The ban engine: fail2ban's jail, decided in the control plane for every edge.

Edges report authentication failures and successes; the engine counts failures per source
(an IPv4 address or an IPv6 /64) in a sliding window and bans, escalating for repeat
offenders. It does not punish an office for one phone: while a source holds valid
registrations of other SIP user IDs, a user ID that keeps failing is locked out from that
source alone, unless the failures spread over several user IDs (a scan).

Trusted networks: the platform's, and the edges' own addresses, are never banned at all. A
tenant's trusted networks spare its offices a whole ban only while every counted failure is
against that tenant's own user IDs; see :func:`_trusted_by_its_tenants` for why.

State is aggregated, one row per source, and bounded: the last failures within find_time
and a capped summary. Quiet rows are purged. Time is always passed in (``at``/``now``).

A ban answers the failures behind it, and those during it: while a source is banned as a
whole (also from the failure that decides the ban on, within its batch), its failures are
counted in the window's summary (failures, reasons, user IDs, edges, last attempt), as GET
/auth-failures shows them, but not kept among the recent failures nor decided again. So the
window starts afresh when the ban ends, as after a lift, and a repeat offender's next ban
still escalates (its Offender row). fail2ban does the same: a banned address's packets never
reach its log. A pair lockout keeps counting its user ID's failures, as before. Such a
failure decodes and writes back only what it changes: a window's JSON columns are read as
text, decoded when first needed, and written back as read when unchanged (see _Column).
"""

import contextlib
import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_network

from sqlalchemy import (
    Integer, String, Text, any_, bindparam, cast, delete, exists, func, inspect, or_, select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from .. import outbox
from ..addresses import MIN_TENANT_PREFIX, overlaps, parse_address, parse_network, source_of
from ..db import READER, commit, is_reader, writer_busy
from ..errors import Conflict, Invalid, NotFound
from ..models import (
    Ban, BanPolicy, BanTenant, Edge, FailureWindow, Offender, Role, SourceRegistration, Tenant,
    TrustedNetwork, utcnow,
)
from ..scope import Forbidden, get_visible_tenant, require_role, visible_tenants
from ..sipid import parse_sip_user_id

COUNTED_REASONS = frozenset({"wrong_password", "unknown_user"})
# A phone that answers a challenge with an expired nonce guessed nothing (RFC 7616 §3.3).
IGNORED_REASONS = frozenset({"stale_nonce"})
# Failures kept per source, and so the largest max_retry (and scan_user_ids) there can be:
# more would never ban. fail2ban's default is 5; each failure rewrites this list.
RECENT_CAP = 64
SUMMARY_CAP = 20  # distinct user IDs and edges kept per source
TENANT_CAP = 50
BAN_HISTORY = dt.timedelta(days=30)


@dataclass(frozen=True)
class Failure:
    address: str
    user_id: str
    reason: str
    at: dt.datetime
    edge: str | None = None


@dataclass(frozen=True)
class Success:
    address: str
    user_id: str
    at: dt.datetime
    valid_until: dt.datetime | None = None
    edge: str | None = None


@dataclass
class Decision:
    source: str
    outcome: str  # ignored, recorded, exempt, banned, locked_out
    ban: Ban | None = None


# --- policy and trusted networks ------------------------------------------------------


def get_policy(session):
    """The policy the engine applies (for the engine itself: no caller, no check)."""
    return session.get(BanPolicy, 1)


def read_policy(session, principal):
    """The policy as the API shows it: read, like changed, by the platform alone."""
    require_role(principal, Role.PLATFORM)
    return get_policy(session)


def update_policy(session, principal, **values):
    require_role(principal, Role.PLATFORM)
    policy = get_policy(session)
    for name in ("max_retry", "scan_user_ids"):
        if values.get(name, 0) > RECENT_CAP:
            raise Invalid(name, f"must be at most {RECENT_CAP}, the failures kept per source")
    merged = {k: values.get(k, getattr(policy, k)) for k in ("ban_time", "max_ban_time")}
    if merged["max_ban_time"] < merged["ban_time"]:
        raise Invalid("max_ban_time", "must be at least ban_time")
    for name, value in values.items():
        setattr(policy, name, value)
    outbox.record_change(session, "ban_policy", policy)
    commit(session)
    return policy


def list_trusted_networks(session, principal, trunk_number=None):
    if trunk_number is None:
        require_role(principal, Role.PLATFORM)
        tenant_id = None
    else:
        tenant_id = get_visible_tenant(session, principal, trunk_number).id
    return (select(TrustedNetwork).where(TrustedNetwork.tenant_id.is_(None) if tenant_id is None
                                         else TrustedNetwork.tenant_id == tenant_id)
            .order_by(TrustedNetwork.id))


def add_trusted_network(session, principal, trunk_number=None, *, cidr, description=None):
    network = parse_network(cidr)
    tenant = None
    if trunk_number is None:
        require_role(principal, Role.PLATFORM)
    else:
        tenant = get_visible_tenant(session, principal, trunk_number)
        if network.prefixlen < MIN_TENANT_PREFIX[network.version]:
            raise Invalid("cidr", f"a tenant may trust at most a /{MIN_TENANT_PREFIX[network.version]}"
                          f" (IPv{network.version}); ask the platform for wider ranges")
    text = str(network)
    existing = select(TrustedNetwork.id).where(
        TrustedNetwork.cidr == text,
        TrustedNetwork.tenant_id.is_(None) if tenant is None else TrustedNetwork.tenant_id == tenant.id,
    )
    if session.scalar(existing) is not None:
        raise Conflict(f"{text} is trusted already", fields={"cidr": ["is trusted already"]})
    entry = TrustedNetwork(tenant_id=tenant.id if tenant else None, cidr=text,
                           description=description)
    entry.tenant = tenant
    session.add(entry)
    outbox.record_change(session, "trusted_network", entry)
    commit(session, f"{text} is trusted already")
    return entry


def remove_trusted_network(session, principal, trunk_number, network_id):
    entry = session.scalars(
        list_trusted_networks(session, principal, trunk_number).where(TrustedNetwork.id == network_id)
    ).one_or_none()
    if entry is None:
        raise NotFound(f"trusted network {network_id} not found")
    entry.tenant = session.get(Tenant, entry.tenant_id) if entry.tenant_id else None
    outbox.record_deletion(session, "trusted_network", entry)
    session.delete(entry)
    commit(session)


def protected_networks(session):
    """Sources never banned at all: the platform's trusted networks and the addresses the
    enrolled edges listen on."""
    networks = [parse_network(c) for c in session.scalars(
        select(TrustedNetwork.cidr).where(TrustedNetwork.tenant_id.is_(None)))]
    for addresses in session.scalars(select(Edge.addresses).where(Edge.revoked_at.is_(None))):
        for text in addresses or ():
            address = parse_address(text)
            if address is not None and not address.is_unspecified:
                networks.append(ip_network(address))
    return networks


# --- ingestion ------------------------------------------------------------------------


# Rows of the engine's hot tables as plain values, read and written with Core statements:
# an attack sends thousands of failures a second, and an ORM object per failure window
# costs more than the rest of the work on it.
_WINDOWS = FailureWindow.__table__
_REGISTRATIONS = SourceRegistration.__table__
_WINDOW_COLUMNS = ("source", "recent", "failures", "first_at", "last_at", "user_ids", "edges",
                   "reasons", "tenant_ids", "unattributed")

_JSON_COLUMNS = ("recent", "user_ids", "edges", "reasons", "tenant_ids")
# Encoding a window's recent failures (64 timestamps at most) is the largest single cost of
# a failure: one reused encoder, no check for circular references (plain lists of values),
# no spaces.
_encode_json = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
# The windows' JSON columns are read as text and decoded only when a failure needs them,
# with the C scanner (json.loads adds two regex matches and a wrapper per value); a value
# left unchanged is written back as the text it was read as. During a scan most failures
# come from banned sources, which need their user IDs, edges and reasons only.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def _decode_json(text):
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)  # raises, or accepts what the scanner does not (whitespace)
    return value if end == len(text) else json.loads(text)


_UNREAD = object()


class _Column:
    """A JSON column of a _Window: its text as read, decoded on first use.

    How the engine changes the value decides when the text read is still the value's:
    "assigned" (recent) is only ever replaced; "appended" (user_ids, edges, tenant_ids)
    only grows by append; "mutated" (reasons) is changed in place."""

    __slots__ = ("name", "value", "text", "length", "mode", "encode")

    def __init__(self, name, mode, encode=None):
        self.name, self.value, self.text = name, "_v_" + name, "_t_" + name
        self.length, self.mode, self.encode = "_n_" + name, mode, encode or _encode_json

    def __get__(self, window, owner=None):
        if window is None:
            return self
        value = getattr(window, self.value)
        if value is _UNREAD:
            text_ = getattr(window, self.text)
            value = _decode_json(text_) if text_ is not None else None
            if value is None:
                value = {} if self.mode == "mutated" else []
            setattr(window, self.value, value)
            setattr(window, self.length, len(value))
        return value

    def __set__(self, window, value):
        setattr(window, self.value, value)
        setattr(window, self.text, None)

    def encoded(self, window):
        value, text_ = getattr(window, self.value), getattr(window, self.text)
        if text_ is not None and (value is _UNREAD or self.mode == "assigned" or (
                self.mode == "appended" and len(value) == getattr(window, self.length))):
            return text_
        return self.encode(value)


# Every failure rewrites its window's reasons (two counts at most): written here, not by the
# JSON encoder, whose calls cost more than the text.
_REASON_KEYS = {reason: _encode_json(reason) + ":" for reason in COUNTED_REASONS}


def _encode_reasons(reasons):
    try:
        return "{" + ",".join([f"{_REASON_KEYS[k]}{v:d}" for k, v in reasons.items()]) + "}"
    except (KeyError, TypeError, ValueError):  # a reason or count from elsewhere
        return _encode_json(reasons)


_PG_PLACEHOLDERS = text(
    "INSERT INTO failure_windows (source, recent, failures, first_at, last_at, user_ids,"
    " edges, reasons, tenant_ids, unattributed)"
    " SELECT s, '[]', 0, :at, :at, '[]', '[]', '{}', '[]', false"
    " FROM unnest(CAST(:sources AS varchar[])) AS s ORDER BY s"
    " ON CONFLICT (source) DO NOTHING"
).bindparams(bindparam("at", type_=_WINDOWS.c.first_at.type))
# The batch's rows as one JSON document: one statement, and no per-element array escaping.
_PG_UPDATE = text(
    "UPDATE failure_windows AS w SET recent = v.recent, failures = v.failures,"
    " first_at = v.first_at, last_at = v.last_at, user_ids = v.user_ids, edges = v.edges,"
    " reasons = v.reasons, tenant_ids = v.tenant_ids, unattributed = v.unattributed"
    " FROM json_to_recordset(CAST(:rows AS json)) AS v(source varchar, recent json,"
    " failures integer, first_at timestamptz, last_at timestamptz, user_ids json, edges json,"
    " reasons json, tenant_ids json, unattributed boolean)"
    " WHERE w.source = v.source"
)
_SQLITE_COLUMNS = (*_JSON_COLUMNS, "failures", "first_at", "last_at", "unattributed")
_SQLITE_INSERT = (f"INSERT INTO failure_windows ({', '.join(_SQLITE_COLUMNS)}, source)"
                  f" VALUES ({', '.join('?' * (len(_SQLITE_COLUMNS) + 1))})")
_SQLITE_UPDATE = (f"UPDATE failure_windows SET {', '.join(f'{c} = ?' for c in _SQLITE_COLUMNS)}"
                  " WHERE source = ?")


class _Window:
    """One source's failure window while a batch is applied to it. The JSON columns come
    as the row's text (or as values, for a new window), see _Column."""

    __slots__ = ("source", "failures", "first_at", "last_at", "unattributed", "stored",
                 "changed", *(f"_{kind}_{name}" for name in _JSON_COLUMNS for kind in "vtn"))

    recent = _Column("recent", "assigned")
    user_ids = _Column("user_ids", "appended")
    edges = _Column("edges", "appended")
    reasons = _Column("reasons", "mutated", _encode_reasons)
    tenant_ids = _Column("tenant_ids", "appended")
    _columns = (recent, user_ids, edges, reasons, tenant_ids)  # in _JSON_COLUMNS' order

    def __init__(self, source, recent, failures, first_at, last_at, user_ids, edges, reasons,
                 tenant_ids, unattributed, stored=True):
        self.source, self.failures = source, failures or 0
        self.first_at, self.last_at = first_at, last_at
        self.unattributed, self.stored, self.changed = bool(unattributed), stored, False
        if type(recent) is str is type(user_ids) is type(edges) is type(reasons) is type(
                tenant_ids):  # a row's texts, each decoded when first needed (the usual case)
            self._v_recent = self._v_user_ids = self._v_edges = self._v_reasons = \
                self._v_tenant_ids = _UNREAD
            self._t_recent, self._t_user_ids, self._t_edges = recent, user_ids, edges
            self._t_reasons, self._t_tenant_ids = reasons, tenant_ids
            return
        for column, value in zip(self._columns, (recent, user_ids, edges, reasons, tenant_ids)):
            if isinstance(value, str):
                setattr(self, column.value, _UNREAD)
                setattr(self, column.text, value)
            else:
                column.__set__(self, value if value is not None else
                               {} if column.mode == "mutated" else [])

    def has_recent(self):
        """Whether any failure is kept, without decoding an empty list."""
        if self._v_recent is _UNREAD and self._t_recent == "[]":
            return False
        return bool(self.recent)

    def encoded(self):
        """The JSON columns' texts, in _JSON_COLUMNS' order."""
        return [column.encoded(self) for column in self._columns]


@dataclass
class _Batch:
    """What one batch of events needs, loaded with one query per table."""

    policy: BanPolicy
    protected: tuple
    tenant_networks: dict  # tenant_id -> [networks]
    tenants_by_trunk: dict
    windows: dict = field(default_factory=dict)  # source -> _Window
    active: dict = field(default_factory=dict)  # (source, user_id|None) -> until
    registrations: dict = field(default_factory=dict)  # source -> {user_id: valid_until}
    offenders: dict = field(default_factory=dict)  # ban key -> Offender
    registered: dict = field(default_factory=dict)  # (source, user_id) -> valid_until to write
    tenant_of: dict = field(default_factory=dict)  # user_id -> tenant id or None (memo)
    postgresql: bool = False
    now: dt.datetime | None = None  # the batch's first event
    counted: dict = field(default_factory=dict)  # source -> counted failures in the batch
    # The bans decided, added to the session only once their source is settled (see _settle).
    pending: dict = field(default_factory=dict)  # source -> [(new Offender or None, Ban)]
    read: dict = field(default_factory=dict)  # source -> its window's row as read
    encoded: dict = field(default_factory=dict)  # source -> its _encode_row, once settled
    unlocked: bool = False  # SQLite: read and decided before the write lock (_unlocked_reader)
    withdrawn: set = field(default_factory=set)  # indexes in prepared (write_auth_events)


def record_failure(session, *, address, user_id, reason, at, edge=None):
    return record_auth_events(session, [Failure(address, user_id, reason, at, edge)])[0]


def record_success(session, *, address, user_id, at, valid_until=None, edge=None):
    return record_auth_events(session, [Success(address, user_id, at, valid_until, edge)])[0]


def record_auth_events(session, events):
    """Apply a batch of failures and successes (in time order) in one transaction."""
    with one_batch_at_a_time(session):
        decisions = apply_auth_events(session, events)
        commit(session)
    return decisions


# SQLite: this process's batches. Reentrant: no thread waits for itself.
_ONE_BATCH_AT_A_TIME = threading.RLock()


def one_batch_at_a_time(session):
    """Held by a caller from a batch's decision (decide_auth_events) to its commit.

    On SQLite, batches of one process go one at a time: its threads share one GIL, and a
    second batch deciding beside the one that holds the write lock would only slow that one
    down. Batches of several processes decide at once (see decide_auth_events). A session
    whose transaction has begun holds the write lock already: it never waits here, behind a
    batch that waits for that lock."""
    if session.get_bind().dialect.name != "sqlite" or session.in_transaction():
        return contextlib.nullcontext()
    return _ONE_BATCH_AT_A_TIME


@lru_cache(maxsize=16384)
def _cached_source(address, ipv6_prefix):
    # A scan repeats its addresses from batch to batch; only valid ones are cached (an
    # exception is not), and the cache is bounded.
    return source_of(address, ipv6_prefix)


@lru_cache(maxsize=16384)
def _protected(source, networks):
    # Per source and set of protected networks (a tuple): parsing the source's network
    # again for every batch costs more than the rest of a failure's decision.
    return overlaps(source, networks)


def apply_auth_events(session, events, *, names=None):
    """The work of record_auth_events inside the caller's transaction (no commit): its
    decision, then its writes."""
    return write_auth_events(session, decide_auth_events(session, events, names=names))


@dataclass
class DecidedBatch:
    """A batch decided by decide_auth_events, for write_auth_events."""

    batch: "_Batch | None"  # None: no events
    prepared: list  # (source, event) in time order
    by_source: dict
    decisions: list
    order: list = field(default_factory=list)  # prepared's n-th event is events[order[n]]


def decide_auth_events(session, events, *, names=None):
    """Read and decide a batch of failures and successes; write_auth_events settles and
    writes it, in the session's transaction. The caller holds one_batch_at_a_time(session)
    from here to its commit.

    On SQLite, a batch that finds another writer busy (another process), while the
    session's transaction has not begun, reads and decides meanwhile on a read transaction
    of its own (WAL: without the write lock): write_auth_events then takes the lock only to
    settle and write (see _settle). Otherwise the batch takes the write lock at once and
    reads under it, which costs less.

    ``names`` says what the caller's request calls each event ("events.7": an edge's batch
    mixes these with other events), so that an invalid field is named as the caller sent
    it, "events.7.address". By default, the event's index in ``events``.

    The batch is applied source by source (sources do not depend on each other; within a
    source, in time order): one SELECT of the batch's windows, the decisions in Python,
    then one executemany per table. Decisions are returned in time order.
    """
    reader = _unlocked_reader(session)
    with reader if reader is not None else contextlib.nullcontext(session) as reading:
        policy = get_policy(reading)
        if names is None:
            names = range(len(events))
        prepared = []
        for name, event in zip(names, events, strict=True):
            try:
                source = _cached_source(event.address, policy.ipv6_prefix)
            except (Invalid, TypeError):
                source = source_of(event.address, policy.ipv6_prefix, field=f"{name}.address")
            if not isinstance(event.user_id, str) or not 0 < len(event.user_id) <= 64:
                raise Invalid(f"{name}.user_id", "a SIP user ID of 1 to 64 characters")
            if not isinstance(event.at, dt.datetime) or event.at.utcoffset() is None:
                raise Invalid(f"{name}.at", "a time with its time zone")
            if isinstance(event, Failure) and event.reason not in COUNTED_REASONS | IGNORED_REASONS:
                raise Invalid(f"{name}.reason", "one of " + ", ".join(
                    sorted(COUNTED_REASONS | IGNORED_REASONS)))
            prepared.append((source, event))
        if not prepared:
            return DecidedBatch(None, [], {}, [])
        order = sorted(range(len(prepared)), key=lambda i: prepared[i][1].at)
        prepared = [prepared[i] for i in order]
        by_source = {}
        for index, (source, _event) in enumerate(prepared):
            by_source.setdefault(source, []).append(index)
        batch = _load_batch(reading, policy, prepared, by_source)
        batch.unlocked = reader is not None
        decisions = [None] * len(prepared)
        # No flush until the commit, which then sends the bans together.
        with reading.no_autoflush:
            _decide(reading, batch, prepared, by_source, by_source, decisions)
    return DecidedBatch(batch, prepared, by_source, decisions, order)


def write_auth_events(session, decided, *, withdrawn=()):
    """Settle a batch of decide_auth_events and write it (no commit); its decisions, in
    time order. ``withdrawn``: indexes (in the events given to decide_auth_events) of
    events that turned out not to have happened (an edge's registration of a user ID
    deleted since): their sources are decided again without them (their decision: None)."""
    batch, prepared, by_source, decisions = (
        decided.batch, decided.prepared, decided.by_source, decided.decisions)
    if batch is None:
        return decisions
    forced = set()
    if withdrawn:
        position = {event: n for n, event in enumerate(decided.order)}
        batch.withdrawn = {position[event] for event in withdrawn}
        forced = {prepared[n][0] for n in batch.withdrawn}
    with session.no_autoflush:
        if batch.postgresql or batch.unlocked or forced:
            _settle(session, batch, prepared, by_source, decisions, forced)
        for bans_of_source in batch.pending.values():
            for offender, ban in bans_of_source:
                if offender is not None:
                    session.add(offender)
                session.add(ban)
                outbox.record_change(session, "ban", ban)
        if batch.unlocked:
            for offender in batch.offenders.values():
                _adopt(session, offender)
    _write_batch(session, batch)
    return decisions


def _adopt(session, offender):
    """An offender read by the reader (detached now) and escalated by the batch, written by
    the session. Its window was unchanged at the lock (else it was read again), so its row
    is as read: a copy the session holds already takes its values."""
    state = inspect(offender)
    if not state.detached:
        return
    held = session.identity_map.get(state.key)
    if held is None:
        session.add(offender)
    elif held is not offender:
        held.offences, held.last_banned_until = offender.offences, offender.last_banned_until



def _unlocked_reader(session):
    """A read-only session for a batch to read and decide on before it takes SQLite's write
    lock, or None: when no other writer holds that lock (the batch takes it at once), when
    the session's transaction has begun (it holds the lock already), or on PostgreSQL
    (which locks rows, see _settle)."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite" or session.in_transaction() or is_reader(session) \
            or not writer_busy(bind.engine):
        return None
    return Session(bind=bind.execution_options(**READER), autoflush=False)


def _decide(session, batch, prepared, by_source, sources, decisions):
    for source in sources:
        window = batch.windows.get(source)
        exempt = _protected(source, batch.protected)
        for index in by_source[source]:
            event = prepared[index][1]
            if index in batch.withdrawn:
                decisions[index] = None
            elif isinstance(event, Failure):
                decisions[index] = _failure(session, batch, source, event, window, exempt)
            else:
                decisions[index] = _success(batch, source, event, window)


def _settle(session, batch, prepared, by_source, decisions, forced=frozenset()):
    """Lock what the batch changes and decide again where another batch changed a window
    since it was read.

    The batch was read and decided without locks, so that concurrent batches (several
    edges, several workers), which share sources during a scan, wait for each other only
    from here to their commit. PostgreSQL locks the changed windows in source order (so
    they never deadlock); SQLite takes its one write lock. Then each changed window is
    compared with the row as read, and the sources whose row differs are decided again, on
    the locked row and freshly read bans, registrations and offenders. No failure is lost
    or counted twice, and a source is banned once. The ``forced`` sources are decided
    again in any case (see write_auth_events)."""
    changed = sorted(source for source, window in batch.windows.items() if window.changed)
    if not changed and not forced:
        return
    # Written before the locks are taken: they are held from here to the commit.
    batch.encoded = {source: _encode_row(batch, batch.windows[source]) for source in changed}
    if batch.postgresql:
        locked = _lock_pg_windows(session, batch, changed) if changed else {}
    else:
        locked = _lock_sqlite_windows(session, changed)
    stale = sorted(forced.union(
        source for source in changed
        if _changed_since_read(batch.read.get(source), locked.get(source))))
    if not stale:
        return
    if batch.postgresql:
        windows, active, registrations = _pg_rows(session, stale, batch.now)  # locked: ours
        windows = [tuple(row) for row in windows]
    else:
        windows, active, registrations = _sqlite_rows(session, stale, batch.now)
    for source in stale:
        batch.pending.pop(source, None)
        batch.encoded.pop(source, None)
        batch.registrations.pop(source, None)
    stale_set = set(stale)
    for mapping in (batch.active, batch.registered):
        for key in [key for key in mapping if key[0] in stale_set]:
            del mapping[key]
    for key in [key for key in batch.offenders if key.partition("|")[0] in stale_set]:
        # Forget what the first decision did to it (offences, last_banned_until).
        offender = batch.offenders.pop(key)
        if offender in session:
            session.expire(offender)
    for source in stale:
        # Purged since it was read (SQLite; PostgreSQL made it again): a new window.
        if batch.counted.get(source):
            batch.windows[source] = _new_window(source, batch.now, stored=False)
        else:
            batch.windows.pop(source, None)
    _add_rows(batch, windows, active, registrations)
    _load_offenders(session, batch, prepared, by_source, stale)
    _decide(session, batch, prepared, by_source, stale, decisions)


def _lock_pg_windows(session, batch, changed):
    missing = [source for source in changed if source not in batch.read]
    if missing:
        _create_placeholders(session, missing, batch.now)
    locked = _lock_windows(session, changed)
    while absent := [source for source in changed if source not in locked]:
        # Purged since (a quiet window) or since its placeholder was made: made again, and
        # decided again below. A locked row cannot be purged.
        _create_placeholders(session, absent, batch.now)
        locked.update(_lock_windows(session, absent))
    return locked


def _lock_sqlite_windows(session, sources):
    """SQLite: the write lock (the session's transaction begins: BEGIN IMMEDIATE, in the
    writers' queue), then the failures, last_at and recent of these windows as they are."""
    dbapi = session.connection().connection.driver_connection
    return {source: (failures, _sqlite_time(last_at), recent) for source, failures, last_at, recent
            in dbapi.execute(_SQLITE_LOCKED, (_encode_json(sources),)).fetchall()}


def _lock_windows(session, sources):
    """Lock these windows in source order. Every change to a window changes its failures,
    last_at or recent (a failure the first two, a success or a lift forgives in the third):
    these are read to compare with the row as read."""
    return {source: (failures, last_at, recent) for source, failures, last_at, recent in
            session.execute(select(_WINDOWS.c.source, _WINDOWS.c.failures, _WINDOWS.c.last_at,
                                   cast(_WINDOWS.c.recent, Text))
                            .where(_among(_WINDOWS.c.source, sources, True))
                            .order_by(_WINDOWS.c.source).with_for_update())}


def _changed_since_read(row, locked):
    """Whether a window changed between the batch's read (row; None: there was none) and its
    lock (locked: failures, last_at, recent; None: there is none, SQLite only)."""
    if locked is None:
        return row is not None  # purged since
    failures, _last_at, recent = locked
    if row is None:  # no window when read: unchanged while it is a placeholder (PostgreSQL)
        return failures != 0 or recent != "[]"
    return (row[2], row[4], row[1]) != locked  # _WINDOW_COLUMNS' failures, last_at, recent


def _create_placeholders(session, sources, at):
    """Rows of zeros for the windows the batch creates, committed on a connection of their
    own: the batch then locks them in order like any other row. Created in its transaction,
    they would stay locked from their insert to its commit, out of that order. An empty row
    left by a batch that rolls back harms nobody (and is purged)."""
    with session.get_bind().engine.begin() as conn:
        conn.execute(_PG_PLACEHOLDERS, {"sources": sources, "at": at})


def discard_placeholders(conn, sources):
    """Delete the windows of these sources that are still empty placeholders (left by a
    batch that rolled back, see _create_placeholders); a window with anything in it stays."""
    conn.execute(delete(FailureWindow).where(
        FailureWindow.source.in_(sources), FailureWindow.failures == 0,
        cast(_WINDOWS.c.recent, Text) == "[]"))


def _load_batch(session, policy, prepared, by_source):
    sources = sorted(by_source)
    trunks = {identity.trunk_number for _, e in prepared
              if (identity := parse_sip_user_id(e.user_id)) is not None}
    tenant_networks = {}
    for tenant_id, cidr in session.execute(
        select(TrustedNetwork.tenant_id, TrustedNetwork.cidr).where(TrustedNetwork.tenant_id.isnot(None))
    ):
        tenant_networks.setdefault(tenant_id, []).append(parse_network(cidr))
    batch = _Batch(
        policy=policy,
        protected=tuple(protected_networks(session)),
        tenant_networks=tenant_networks,
        tenants_by_trunk=dict(session.execute(
            select(Tenant.trunk_number, Tenant.id).where(Tenant.trunk_number.in_(trunks))
        ).all()) if trunks else {},
    )
    batch.postgresql = session.get_bind().dialect.name == "postgresql"
    batch.now = now = prepared[0][1].at
    for source, event in prepared:
        if isinstance(event, Failure) and event.reason in COUNTED_REASONS:
            batch.counted[source] = batch.counted.get(source, 0) + 1
    if batch.postgresql:
        # Read without row locks; _settle locks what the batch changes.
        windows, active, registrations = _pg_rows(session, sources, now)
        windows = [tuple(row) for row in windows]
    else:
        # A read transaction (see _unlocked_reader), or one that holds the write lock.
        windows, active, registrations = _sqlite_rows(session, sources, now)
    batch.read = {row[0]: row for row in windows}
    _add_rows(batch, windows, active, registrations)
    for source in sorted(batch.counted):
        if source not in batch.windows:
            batch.windows[source] = _new_window(source, now, stored=False)
    _load_offenders(session, batch, prepared, by_source, sources)
    return batch


def _add_rows(batch, windows, active, registrations):
    for row in windows:
        batch.windows[row[0]] = _Window(*row)
    for source, user_id, until in active:
        key = (source, user_id)
        batch.active[key] = max(until, batch.active.get(key, until))
    for source, user_id, valid_until in registrations:
        batch.registrations.setdefault(source, {})[user_id] = valid_until


def _load_offenders(session, batch, prepared, by_source, sources):
    """The offenders of those sources this batch may ban (a ban needs max_retry recent
    failures), in one query, so that deciding a ban never triggers a flush."""
    max_retry = min(batch.policy.max_retry, RECENT_CAP)
    keys = set()
    for source in sources:
        count = batch.counted.get(source, 0)
        window = batch.windows.get(source)
        if count and (len(window.recent) if window.has_recent() else 0) + count >= max_retry:
            keys.add(source)
            keys.update(f"{source}|{prepared[i][1].user_id}" for i in by_source[source])
    if keys:
        for offender in session.scalars(select(Offender).where(
                _among(Offender.key, sorted(keys), batch.postgresql))):
            batch.offenders[offender.key] = offender


def _pg_windows(sources):
    """The windows of these sources, in source order, their JSON columns as texts."""
    return (select(*(cast(_WINDOWS.c[name], Text) if name in _JSON_COLUMNS else _WINDOWS.c[name]
                     for name in _WINDOW_COLUMNS))
            .where(_among(_WINDOWS.c.source, sources, True)).order_by(_WINDOWS.c.source))


def _pg_rows(session, sources, now):
    """The windows, active bans and registrations of these sources."""
    windows = session.execute(_pg_windows(sources))
    active = session.execute(select(Ban.source, Ban.user_id, Ban.until).where(
        _among(Ban.source, sources, True), Ban.lifted_at.is_(None), Ban.until > now))
    registrations = session.execute(
        select(_REGISTRATIONS.c.source, _REGISTRATIONS.c.user_id, _REGISTRATIONS.c.valid_until)
        .where(_among(_REGISTRATIONS.c.source, sources, True)))
    return windows, active, registrations


# SQLite: the same three reads through the driver, the batch's sources as one JSON array
# parameter, and its timestamps converted here. Through SQLAlchemy, rendering the hundreds
# of IN parameters and converting each timestamp (a bind or result processor, then the
# zone's TypeDecorator) cost more than SQLite's own work on the rows.
_SQLITE_AMONG = " IN (SELECT value FROM json_each(?))"
_SQLITE_WINDOWS = (f"SELECT {', '.join(_WINDOW_COLUMNS)} FROM failure_windows"
                   f" WHERE source{_SQLITE_AMONG}")
_SQLITE_ACTIVE = (f"SELECT source, user_id, until FROM bans WHERE source{_SQLITE_AMONG}"
                  " AND lifted_at IS NULL AND until > ?")
_SQLITE_REGISTRATIONS = ("SELECT source, user_id, valid_until FROM source_registrations"
                         f" WHERE source{_SQLITE_AMONG}")
_SQLITE_LOCKED = f"SELECT source, failures, last_at, recent FROM failure_windows WHERE source{_SQLITE_AMONG}"
_UTC = dt.timezone.utc


def _sqlite_stamp(value):
    """A UTC time as SQLAlchemy's SQLite DATETIME stores it ("2026-01-04 00:00:01.000000",
    whose text order is time order); tests compare it with the column type's own."""
    return value.astimezone(_UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_time(text_):
    return dt.datetime.fromisoformat(text_).replace(tzinfo=_UTC)


def _sqlite_rows(session, sources, now):
    # The session's connection, in its transaction: the DB-API's own cursor fetches the rows.
    dbapi = session.connection().connection.driver_connection
    among = _encode_json(sources)
    windows = [(source, recent, failures, _sqlite_time(first_at), _sqlite_time(last_at),
                *rest) for source, recent, failures, first_at, last_at, *rest
               in dbapi.execute(_SQLITE_WINDOWS, (among,)).fetchall()]
    active = [(source, user_id, _sqlite_time(until)) for source, user_id, until
              in dbapi.execute(_SQLITE_ACTIVE, (among, _sqlite_stamp(now))).fetchall()]
    registrations = [(source, user_id, _sqlite_time(until)) for source, user_id, until
                     in dbapi.execute(_SQLITE_REGISTRATIONS, (among,)).fetchall()]
    return windows, active, registrations


def _among(column, values, postgresql):
    """column IN values. On PostgreSQL the values are rendered as one constant array: an
    array parameter would make psycopg prepare the statement after five runs, and the
    generic plan PostgreSQL then keeps (made while the tables were small) compares every
    row with every element, whereas a constant array is hashed and planned with the
    table's size at the time."""
    if postgresql:
        return column == any_(bindparam(None, values, type_=ARRAY(String), literal_execute=True))
    return column.in_(values)


def _new_window(source, at, stored=True):
    return _Window(source, [], 0, at, at, [], [], {}, [], False, stored=stored)


def _pg_row(window):
    """A window as an element of _PG_UPDATE's JSON document."""
    return ("{" + ",".join(f'"{name}":{text_}'
                           for name, text_ in zip(_JSON_COLUMNS, window.encoded()))
            + "," + _encode_json({"source": window.source, "failures": window.failures,
                                  "first_at": window.first_at.isoformat(),
                                  "last_at": window.last_at.isoformat(),
                                  "unattributed": window.unattributed})[1:])


def _encode_row(batch, window):
    """A window as _write_batch writes it: an element of _PG_UPDATE's JSON document, or
    SQLite's row of _SQLITE_INSERT or _SQLITE_UPDATE (whose parameters are in one order)."""
    if batch.postgresql:
        return _pg_row(window)
    return (*window.encoded(), window.failures, _sqlite_stamp(window.first_at),
            _sqlite_stamp(window.last_at), window.unattributed, window.source)


def _write_batch(session, batch):
    """The batch's changes to windows and registrations: one executemany per statement."""
    dialect = session.get_bind().dialect
    postgresql = dialect.name == "postgresql"
    changed = [w for w in batch.windows.values() if w.changed]
    if postgresql and changed:
        # One statement for the whole batch, its rows as arrays (all of them exist: see the
        # placeholders in _load_batch).
        # The JSON columns' texts are embedded as they are (valid JSON each).
        encoded = batch.encoded
        session.execute(_PG_UPDATE, {"rows": "[" + ",".join(
            encoded.get(w.source) or _encode_row(batch, w) for w in changed) + "]"})
    elif changed:
        # The DB-API's executemany: the rows of one batch in one call, without a
        # bind-processing pass per row and column.
        conn = session.connection()
        encoded = batch.encoded
        for stored, sql in ((False, _SQLITE_INSERT), (True, _SQLITE_UPDATE)):
            rows = [encoded.get(w.source) or _encode_row(batch, w)
                    for w in changed if w.stored is stored]
            if rows:
                conn.exec_driver_sql(sql, rows)
    if batch.registered:
        insert_ = (pg_insert if postgresql else sqlite_insert)(_REGISTRATIONS)
        # The later of two expiries, also against a concurrent batch's success.
        later = (func.greatest if postgresql else func.max)(
            _REGISTRATIONS.c.valid_until, insert_.excluded.valid_until)
        session.execute(
            insert_.on_conflict_do_update(index_elements=["source", "user_id"],
                                          set_={"valid_until": later}),
            [{"source": s, "user_id": u, "valid_until": v}
             for (s, u), v in batch.registered.items()])
    # Loaded ORM objects of these rows (GET /auth-failures, a lift) would now be stale.
    identity_map = session.identity_map
    for window in changed:
        obj = identity_map.get(identity_key(FailureWindow, (window.source,)))
        if obj is not None:
            session.expire(obj)
    for source, user_id in batch.registered:
        obj = identity_map.get(identity_key(SourceRegistration, (source, user_id)))
        if obj is not None:
            session.expire(obj)


def _active(batch, source, user_id, at):
    until = batch.active.get((source, user_id))
    return until is not None and until > at


def _tenant_of(batch, user_id):
    try:
        return batch.tenant_of[user_id]
    except KeyError:
        identity = parse_sip_user_id(user_id)
        tenant_id = batch.tenants_by_trunk.get(identity.trunk_number) if identity else None
        batch.tenant_of[user_id] = tenant_id
        return tenant_id


def _add_capped(values, value, cap):
    if value is not None and value not in values and len(values) < cap:
        values.append(value)


def _failure(session, batch, source, event, window, exempt):
    if event.reason in IGNORED_REASONS:
        return Decision(source, "ignored")
    policy, at, user_id = batch.policy, event.at, event.user_id
    # The summary counts every failure, banned or not: it is what GET /auth-failures shows.
    if window.failures == 0:
        window.first_at = at
    window.failures += 1
    window.last_at = max(window.last_at, at)
    window.changed = True
    _add_capped(window.user_ids, user_id, SUMMARY_CAP)
    _add_capped(window.edges, event.edge, SUMMARY_CAP)
    window.reasons[event.reason] = window.reasons.get(event.reason, 0) + 1
    tenant_id = _tenant_of(batch, user_id)
    if tenant_id is None or (tenant_id not in window.tenant_ids and len(window.tenant_ids) >= TENANT_CAP):
        window.unattributed = True
    else:
        _add_capped(window.tenant_ids, tenant_id, TENANT_CAP)

    if not exempt and _active(batch, source, None, at):
        # The source is banned as a whole: the ban answers this failure as it answered
        # those before it (see _ban). It is not kept in recent, nor decided, so the window
        # starts afresh when the ban ends, as after a lift; escalation is the Offender
        # row's. A row written while failures still counted during a ban is emptied here.
        if window.has_recent():
            window.recent = []
        return Decision(source, "recorded")
    ts = at.timestamp()
    cutoff = ts - policy.find_time
    recent = [entry for entry in window.recent if entry[0] > cutoff]
    recent.append([ts, user_id])
    window.recent = recent[-RECENT_CAP:]
    if exempt:
        return Decision(source, "exempt")
    # A policy stored before max_retry was capped may ask for more than is kept: ban at the
    # cap rather than never.
    max_retry = min(policy.max_retry, RECENT_CAP)
    if len(window.recent) < max_retry:
        return Decision(source, "recorded")
    users = {uid for _, uid in window.recent}
    pair_count = sum(1 for _, uid in window.recent if uid == user_id)
    trusted_office = _trusted_by_its_tenants(batch, source, users)
    if len(users) >= policy.scan_user_ids and not trusted_office:
        reason = (f"scan: {len(window.recent)} failed authentications for {len(users)} "
                  f"SIP user IDs within {policy.find_time}s")
        return Decision(source, "banned", _ban(session, batch, source, None, reason, at))
    others_registered = any(
        uid != user_id and until > at for uid, until in batch.registrations.get(source, {}).items()
    )
    if trusted_office or others_registered:
        if pair_count >= max_retry and not _active(batch, source, user_id, at):
            reason = (f"{pair_count} failed authentications for {user_id} within "
                      f"{policy.find_time}s; other phones here stay registered")
            return Decision(source, "locked_out",
                            _ban(session, batch, source, user_id, reason, at))
        return Decision(source, "recorded")
    reason = f"{len(window.recent)} failed authentications within {policy.find_time}s"
    return Decision(source, "banned", _ban(session, batch, source, None, reason, at))


def _trusted_by_its_tenants(batch, source, user_ids):
    """Whether a tenant's trusted network spares this source a whole ban.

    Only while every counted failure is against that one tenant's own user IDs: then the
    failing phone gets a pair lockout and the office stays reachable. Once the failures name
    another tenant's user IDs, or IDs of no tenant at all, the trusted range is banned as a
    whole like any other source. That deviates from "never banned as a whole" on purpose: a
    tenant chooses its trusted ranges alone, and a range it calls trusted must not let it
    (or whoever shares the address) scan other tenants' accounts unpunished. The platform's
    trusted networks, chosen by the platform, are never banned.
    """
    tenants = {_tenant_of(batch, uid) for uid in user_ids}
    if len(tenants) != 1 or None in tenants:
        return False
    return overlaps(source, batch.tenant_networks.get(tenants.pop(), []))


def _ban(session, batch, source, user_id, reason, at, *, manual=False, duration=None,
         window=None):
    policy = batch.policy if batch else get_policy(session)
    key = source if user_id is None else f"{source}|{user_id}"
    if batch is not None:
        offender = batch.offenders.get(key)
    else:
        offender = session.get(Offender, key)
    new_offender = None
    if offender is None:
        offender = new_offender = Offender(key=key, offences=0, last_banned_until=at)
        if batch is not None:
            batch.offenders[key] = offender
        else:
            session.add(offender)
    if duration is None:
        escalated = policy.ban_time * policy.ban_time_factor ** offender.offences
        duration = min(escalated, policy.max_ban_time)
        offender.offences += 1
    until = at + dt.timedelta(seconds=duration)
    offender.last_banned_until = max(offender.last_banned_until, until)
    window = window if window is not None else (batch.windows.get(source) if batch else None)
    ban = Ban(source=source, user_id=user_id, manual=manual, reason=reason,
              offence=max(offender.offences, 1), created_at=at, until=until)
    tenant_ids = []
    if window is not None:
        if user_id is None:
            ban.failures = len(window.recent)
            ban.user_ids, ban.edges = list(window.user_ids), list(window.edges)
            ban.unattributed = window.unattributed
            tenant_ids = list(window.tenant_ids)
            window.recent = []  # the ban answers these failures; count afresh after it
        else:
            ban.failures = sum(1 for _, uid in window.recent if uid == user_id)
            ban.edges = list(window.edges)
            window.recent = [e for e in window.recent if e[1] != user_id]
        ban.first_attempt_at, ban.last_attempt_at = window.first_at, window.last_at
    if user_id is not None:
        # A lockout concerns its user ID alone, with or without failures behind it (by hand).
        tenant_id = _tenant_of(batch, user_id) if batch else _tenant_of_user_id(session, user_id)
        ban.user_ids, ban.unattributed = [user_id], tenant_id is None
        tenant_ids = [tenant_id] if tenant_id is not None else []
    ban.tenants = [BanTenant(tenant_id=t) for t in tenant_ids]
    if batch is not None:
        # Added with the source's other bans once it is settled (apply_auth_events).
        batch.active[(source, user_id)] = until
        batch.pending.setdefault(source, []).append((new_offender, ban))
        return ban
    session.add(ban)
    outbox.record_change(session, "ban", ban)
    return ban


def _tenant_of_user_id(session, user_id):
    identity = parse_sip_user_id(user_id)
    if identity is None:
        return None
    return session.scalar(select(Tenant.id).where(Tenant.trunk_number == identity.trunk_number))


def _success(batch, source, event, window):
    until = event.valid_until or (event.at + dt.timedelta(seconds=batch.policy.find_time))
    registrations = batch.registrations.setdefault(source, {})
    current = registrations.get(event.user_id)
    registrations[event.user_id] = until if current is None else max(current, until)
    batch.registered[(source, event.user_id)] = registrations[event.user_id]
    if window is not None and any(uid == event.user_id for _, uid in window.recent):
        # The phone got it right: its earlier typos are forgiven.
        window.recent = [e for e in window.recent if e[1] != event.user_id]
        window.changed = True
    return Decision(source, "recorded")


# --- maintenance ------------------------------------------------------------------------


def purge(session, now):
    """Forget what no longer matters: quiet failure windows, expired registrations,
    offenders quiet for max_ban_time, bans that ended long ago."""
    policy = get_policy(session)
    quiet = now - dt.timedelta(seconds=policy.find_time)
    session.execute(delete(FailureWindow).where(FailureWindow.last_at < quiet))
    session.execute(delete(SourceRegistration).where(SourceRegistration.valid_until < now))
    session.execute(delete(Offender).where(
        Offender.last_banned_until < now - dt.timedelta(seconds=policy.max_ban_time)))
    old = select(Ban.id).where(or_(Ban.until < now - BAN_HISTORY, Ban.lifted_at < now - BAN_HISTORY))
    session.execute(delete(BanTenant).where(BanTenant.ban_id.in_(old)))
    session.execute(delete(Ban).where(Ban.id.in_(old)))
    commit(session)


# --- the API's view: list, ban by hand, lift --------------------------------------------


def user_id_filter(session, principal):
    """A predicate: may the caller see this SIP user ID in a ban's summary? A ban of a scan
    over several tenants shows each tenant its own user IDs only: the others' would tell it
    their trunk numbers."""
    if principal.role == Role.PLATFORM:
        return lambda user_id: True
    trunks = set(session.scalars(visible_tenants(principal, select(Tenant.trunk_number))))

    def mine(user_id):
        identity = parse_sip_user_id(user_id)
        return identity is not None and identity.trunk_number in trunks

    return mine


def _visible(principal, stmt):
    if principal.role == Role.PLATFORM:
        return stmt
    tenant_ids = visible_tenants(principal, select(Tenant.id))
    return stmt.where(exists().where(BanTenant.ban_id == Ban.id, BanTenant.tenant_id.in_(tenant_ids)))


def list_bans(session, principal, *, now=None, active=True, address=None, user_id=None,
              kind=None, trunk_number=None):
    now = now or utcnow()
    stmt = _visible(principal, select(Ban))
    if active is True:
        stmt = stmt.where(Ban.lifted_at.is_(None), Ban.until > now)
    elif active is False:
        stmt = stmt.where(or_(Ban.lifted_at.isnot(None), Ban.until <= now))
    if address is not None:
        stmt = stmt.where(Ban.source == source_of(address, get_policy(session).ipv6_prefix))
    if user_id is not None:
        stmt = stmt.where(Ban.user_id == user_id)
    if kind == "address":
        stmt = stmt.where(Ban.user_id.is_(None))
    elif kind == "pair":
        stmt = stmt.where(Ban.user_id.isnot(None))
    if trunk_number is not None:
        tenant = get_visible_tenant(session, principal, trunk_number)
        stmt = stmt.where(exists().where(BanTenant.ban_id == Ban.id, BanTenant.tenant_id == tenant.id))
    return stmt.order_by(Ban.created_at.desc(), Ban.id.desc())


@dataclass(frozen=True)
class FailureReport:
    """One source's failure window as the caller may see it."""

    source: str
    failures: int  # since first_attempt_at
    recent_failures: int  # within find_time, still counting towards a ban
    reasons: dict
    user_ids: list  # those of the caller's tenants (all of them for the platform)
    other_user_ids: bool  # the failures also named user IDs outside the caller's tenants
    edges: list
    first_attempt_at: dt.datetime
    last_attempt_at: dt.datetime
    trusted: str | None  # "platform", "tenant" or None
    banned: bool
    locked_out: list  # user IDs (the caller's) locked out from this source


def _names_a_tenant_of(session, column, tenant_ids):
    """SQL: the JSON list of tenant ids in `column` holds one of `tenant_ids` (a select)."""
    if session.get_bind().dialect.name == "postgresql":
        elements = func.json_array_elements_text(column).table_valued("value")
    else:
        elements = func.json_each(column).table_valued("value")
    return exists(select(1).select_from(elements)
                  .where(cast(elements.c.value, Integer).in_(tenant_ids)))


def list_auth_failures(session, principal, *, page, page_size, address=None, now=None):
    """The sources that failed to authenticate within find_time, latest first, scoped like
    the bans: a tenant sees the sources whose failures named its user IDs, a reseller those
    of its tenants, the platform all. Failures from trusted networks are here too.
    Returns (the page's reports, the total)."""
    now = now or utcnow()
    policy = get_policy(session)
    stmt = select(FailureWindow).where(
        FailureWindow.failures > 0,  # a source with only stale nonces counted nothing
        FailureWindow.last_at >= now - dt.timedelta(seconds=policy.find_time),
    )
    if principal.role != Role.PLATFORM:
        stmt = stmt.where(_names_a_tenant_of(session, FailureWindow.tenant_ids,
                                              visible_tenants(principal, select(Tenant.id))))
    if address is not None:
        stmt = stmt.where(FailureWindow.source == source_of(address, policy.ipv6_prefix))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    windows = session.scalars(
        stmt.order_by(FailureWindow.last_at.desc(), FailureWindow.source)
        .limit(page_size).offset((page - 1) * page_size)
    ).all()
    return _reports(session, principal, policy, windows, now), total


def _reports(session, principal, policy, windows, now):
    """What the page shows beyond the windows, with a fixed number of queries."""
    if not windows:
        return []
    named = {t for w in windows for t in w.tenant_ids}
    mine = dict(session.execute(  # id -> trunk number, of the named tenants the caller sees
        visible_tenants(principal, select(Tenant.id, Tenant.trunk_number))
        .where(Tenant.id.in_(sorted(named)))).all()) if named else {}
    my_trunks = set(mine.values())

    def is_mine(user_id):
        if principal.role == Role.PLATFORM:
            return True
        identity = parse_sip_user_id(user_id)
        return identity is not None and identity.trunk_number in my_trunks

    tenant_networks = {}
    if mine:
        for tenant_id, cidr in session.execute(
            select(TrustedNetwork.tenant_id, TrustedNetwork.cidr)
            .where(TrustedNetwork.tenant_id.in_(sorted(mine)))
        ):
            tenant_networks.setdefault(tenant_id, []).append(parse_network(cidr))
    protected = protected_networks(session)
    banned, locked_out = set(), {}
    for source, user_id in session.execute(select(Ban.source, Ban.user_id).where(
        Ban.source.in_([w.source for w in windows]), Ban.lifted_at.is_(None), Ban.until > now,
    )):
        if user_id is None:
            banned.add(source)
        elif is_mine(user_id):
            locked_out.setdefault(source, set()).add(user_id)

    cutoff = now.timestamp() - policy.find_time
    reports = []
    for w in windows:
        if overlaps(w.source, protected):
            trusted = "platform"
        elif any(overlaps(w.source, tenant_networks.get(t, [])) for t in w.tenant_ids):
            trusted = "tenant"
        else:
            trusted = None
        reports.append(FailureReport(
            source=w.source, failures=w.failures,
            recent_failures=sum(1 for ts, _ in w.recent if ts > cutoff),
            reasons=dict(w.reasons),
            user_ids=[uid for uid in w.user_ids if is_mine(uid)],
            other_user_ids=w.unattributed or any(t not in mine for t in w.tenant_ids),
            edges=list(w.edges), first_attempt_at=w.first_at, last_attempt_at=w.last_at,
            trusted=trusted, banned=w.source in banned,
            locked_out=sorted(locked_out.get(w.source, ())),
        ))
    return reports


def ban_by_hand(session, principal, *, address, duration=None, reason=None, user_id=None,
                now=None):
    require_role(principal, Role.PLATFORM)
    now = now or utcnow()
    policy = get_policy(session)
    source = source_of(address, policy.ipv6_prefix)
    if overlaps(source, protected_networks(session)):
        raise Conflict(f"{source} is in a trusted network of the platform",
                       fields={"address": ["is trusted"]})
    if session.scalar(select(Ban.id).where(
        Ban.source == source, Ban.user_id.is_(None) if user_id is None else Ban.user_id == user_id,
        Ban.lifted_at.is_(None), Ban.until > now,
    )) is not None:
        raise Conflict(f"{source} is banned already", fields={"address": ["is banned already"]})
    reason = reason or f"banned by {principal.name}"[:Ban.__table__.c.reason.type.length]
    ban = _ban(session, None, source, user_id, reason, now,
               manual=True, duration=duration or policy.ban_time,
               window=session.get(FailureWindow, source))
    commit(session)
    return ban


def _may_lift(session, principal, ban):
    if principal.role == Role.PLATFORM:
        return True
    if ban.unattributed:
        return False
    allowed = set(session.scalars(visible_tenants(principal, select(Tenant.id))))
    return all(t.tenant_id in allowed for t in ban.tenants) and bool(ban.tenants)


def lift_bans(session, principal, address, *, user_id=None, now=None):
    """Lift the active bans of a source the caller may see; resets the counts behind them."""
    now = now or utcnow()
    source = source_of(address, get_policy(session).ipv6_prefix)
    stmt = _visible(principal, select(Ban)).where(
        Ban.source == source, Ban.lifted_at.is_(None), Ban.until > now)
    if user_id is not None:
        stmt = stmt.where(Ban.user_id == user_id)
    bans = session.scalars(stmt.options(selectinload(Ban.tenants))).all()
    if not bans:
        raise NotFound(f"no active ban of {source}")
    for ban in bans:
        if not _may_lift(session, principal, ban):
            raise Forbidden(f"the ban of {source} also involves user IDs outside your scope")
    window = session.get(FailureWindow, source)
    for ban in bans:
        ban.lifted_at, ban.lifted_by = now, principal.name
        if window is not None:
            window.recent = [] if ban.user_id is None else [
                e for e in window.recent if e[1] != ban.user_id]
        outbox.record_deletion(session, "ban", ban)
    commit(session)
    return bans
