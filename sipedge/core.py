"""The edge's SIP core, sans-IO: bytes and time in, bytes to send and events out.

The asyncio shell (sipedge/shell.py) owns the sockets and the clock and calls:

- ``core.blocked(address, now)`` for every packet or new connection, before anything is
  parsed: a banned source gets no answer at all (and its TCP connection is closed);
- ``core.receive(data, transport=, source=, now=, conn=)`` with one datagram, or one
  message that the stream framer cut out of a TCP connection; it returns the ``Send``s to
  make;
- ``core.tick(now)`` when ``core.next_timer()`` comes (bindings expire, caches age);
- ``core.apply_change(entry, now)``, ``core.snapshot_done(now)`` and
  ``core.replace_config(config, now)`` from the control plane link (sipedge/link.py);
- ``core.drain_events(limit)`` for the events the link reports to the control plane.

REGISTER is the method this part of the edge serves (RFC 3261 §10, digest per
sipedge.sip.digest); OPTIONS is answered (phones and monitors ping with it); other
requests get 501 until call routing lands, and responses are ignored (the edge sends no
requests yet).
"""

import datetime as dt
import email.utils
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
from collections import Counter, OrderedDict
from typing import NamedTuple

from .config import EdgeConfig
from .events import MAX_EVENTS, EventQueue
from .guard import Guard
from .sip import digest
from .sip.message import (
    ParseError, Request, RequestView, copied_fields, list_elements, make_response,
    parse_contact, parse_message, parse_via, read_request_view, unescape,
)
from .sip.registrar import Registrar

log = logging.getLogger("sipedge.core")

SERVER = "Trunkline sipedge"
ALLOW = "REGISTER, OPTIONS"
_SERVER_FIELD = ("Server", SERVER)
_SERVER_LINE = f"Server: {SERVER}"
DEFAULT_REALM = "sip.trunkline.local"
TRANSACTION_LIFETIME = 32.0  # RFC 3261 §17.2.2 Timer J: 64*T1 for retransmissions
MAX_TRANSACTIONS = 50_000
_DIGITS = re.compile(r"[0-9]{1,10}")
# Methods counted by name; any other is "other" (names are the sender's to invent, and a
# metric label per invented name would grow without end).
KNOWN_METHODS = frozenset({"REGISTER", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL", "INFO",
                           "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "UPDATE",
                           "PRACK"})
_REQUEST_STATS = {method: f"request:{method}" for method in KNOWN_METHODS}
MAX_EVENT_TEXT = 64  # user IDs in events: the control plane takes no longer ones
MAX_EVENT_CONTACT = 512
PURGE_EVERY = 60.0  # seconds between sweeps of ended bans and quiet failure windows
# Clients known to give up on a 401 that offers any algorithm besides MD5 (they decode
# every WWW-Authenticate and fail on SHA-256, or take the first one whatever it is):
# baresip 1.x (libre before 3.x), SIPp 3.6. They get the MD5 challenge alone.
MD5_ONLY_AGENTS = r"(?i)^(baresip v?[01]\.|sipp\b)"


def _bad_request_reason(error):
    return f"Bad Request ({error})"[:120].replace("\r", " ").replace("\n", " ")


class Send(NamedTuple):
    """Bytes to send: on UDP to `destination`, on TCP over the connection `conn`."""

    data: bytes
    destination: tuple
    transport: str
    conn: object = None


def _iso(now, _second=[None, ""]):
    """`now` (epoch seconds) in ISO 8601, UTC, to the microsecond. The date and the time of
    day are formatted once a second (a conversion, not a reading of the clock)."""
    second = math.floor(now)
    if _second[0] != second:
        _second[0], _second[1] = second, dt.datetime.fromtimestamp(
            second, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{min(round((now - second) * 1e6), 999_999):06d}+00:00"


@functools.lru_cache(maxsize=4096)  # a phone sends the same Contact every time
def _contact(value):
    """(URI, expires parameter or None) of one Contact element, or "*"."""
    parsed = parse_contact(value)
    if parsed == "*":
        return "*"
    expires = parsed.params.get("expires")
    return str(parsed.uri), None if expires is None else _expires(expires)


def _expires(text):
    """An Expires value or parameter: seconds."""
    text = text.strip()
    if not _DIGITS.fullmatch(text):  # ASCII only: "²".isdigit() is True
        raise ParseError("bad Expires")
    return int(text)


class EdgeCore:
    def __init__(self, *, nonce_secrets=None, realm=None, domains=(), own_addresses=(),
                 nonce_lifetime=300.0, registrar=None, max_events=MAX_EVENTS,
                 algorithms=digest.ALGORITHMS, md5_only_agents=MD5_ONLY_AGENTS):
        self.config = EdgeConfig()
        self.algorithms = tuple(algorithms)
        self._md5_only = re.compile(md5_only_agents) if md5_only_agents else None
        self._realm = realm
        self.domains = {d.lower() for d in domains}
        self.nonces = digest.NonceManager(secrets=nonce_secrets or [os.urandom(32)],
                                          lifetime=nonce_lifetime)
        self.counts = digest.NonceCounts()
        self.registrar = registrar or Registrar()
        self.guard = Guard(own_addresses=own_addresses)
        self._own_addresses = list(own_addresses)
        self.events = EventQueue(max_events)  # bounded, and coalesced (sipedge/events.py)
        self.urgent = False  # events queued that the link should send at once
        # (branch, method, source) -> (expires, answer bytes): tuples of plain values, which
        # the garbage collector stops tracking, so 50,000 of them cost its passes nothing.
        self._transactions = OrderedDict()
        # source -> the user ID with bindings from there, or a Counter of them when several
        # (or several bindings): most sources are one phone, and a Counter per phone would
        # be most of a binding's memory.
        self._users_at = {}
        self.stats = Counter()  # requests by method, responses by status, failures...
        self._started_at = None
        self._next_purge = 0.0
        self._echo = ""  # what the response to the message being handled copies of it
        self._served = {}  # Request-URI host -> (realm, whether it is served here)
        self._agents = {}  # User-Agent -> the digest algorithms it is offered
        self._date = (None, "")  # the Date of responses, made once a second

    # --- configuration ---

    @property
    def realm(self):
        if self._realm:
            return self._realm
        for identity in self.config.identities.values():
            return identity.realm
        return DEFAULT_REALM

    def listen_addresses(self):
        return list(self._own_addresses)

    def set_listen_addresses(self, addresses, *, reported=None):
        """`addresses`: every address the edge answers on (never banned here);
        `reported`: those the heartbeat names (default: the same)."""
        self._own_addresses = list(addresses if reported is None else reported)
        self.guard.set_own_addresses(addresses)

    def replace_config(self, config, now):
        before = set(self.config.identities)
        self.config = config
        self._drop_users(before - set(config.identities), now)
        self.guard.load(config)
        self._reindex()

    def apply_change(self, entry, now):
        changed = self.config.apply_change(entry)
        self._drop_users(changed.removed_user_ids, now)
        kind = entry["kind"]
        if kind == "ban":  # one at a time: an attack brings thousands
            self.guard.apply_ban(entry["key"],
                                 None if entry["op"] == "delete" else entry.get("payload"))
        elif kind in ("ban_policy", "trusted_network"):
            self.guard.load(self.config)
            self._reindex()

    def snapshot_done(self, now):
        changed = self.config.end_snapshot()
        self._drop_users(changed.removed_user_ids, now)
        self.guard.load(self.config)
        self._reindex()

    def _drop_users(self, user_ids, now):
        for user_id in user_ids:
            removed = self.registrar.remove_user(user_id)
            for binding in removed:
                self._unindex(binding)
            if removed:
                self._event("unregistration", now, user_id=user_id)

    # --- events for the control plane ---

    def _event(self, kind, now, **fields):
        if "user_id" in fields:
            fields["user_id"] = fields["user_id"][:MAX_EVENT_TEXT]
        if fields.get("contact") is not None:  # push parameters make long ones
            fields["contact"] = fields["contact"][:MAX_EVENT_CONTACT]
        self.events.append({"type": kind, "at": _iso(now), **fields})

    def drain_events(self, limit):
        return self.events.drain(limit)

    @property
    def events_dropped(self):
        return self.events.dropped

    # --- time ---

    def next_timer(self):
        expiry = self.registrar.next_expiry()
        oldest = next(iter(self._transactions.values()), None)
        candidates = [t for t in (expiry, oldest[0] if oldest else None) if t is not None]
        return min(candidates) if candidates else None

    def tick(self, now):
        for binding in self.registrar.expire(now):
            self._unindex(binding)
            self._event("unregistration", now, user_id=binding.user_id,
                        contact=binding.contact)
        while self._transactions:
            key, (expires, _) = next(iter(self._transactions.items()))
            if expires > now:
                break
            del self._transactions[key]
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY
            self.guard.purge(now)
            self.config.purge_bans(now)
            self.registrar.compact()

    # --- packets ---

    def blocked(self, address, now):
        return self.guard.blocked(address, now)

    def receive(self, data, *, transport, source, now, conn=None):
        """Handle one message; returns the list of Sends it calls for."""
        if self._started_at is None:
            # Nonce counts from before now are not known; nonces carry milliseconds.
            self._started_at = math.floor(now * 1000) / 1000
        stats = self.stats
        stats["messages"] += 1
        # The usual request is read in one pass; anything else by the full parser.
        view = read_request_view(data) if type(data) is bytes else None
        if view is None:
            try:
                message = parse_message(data)
            except ParseError as error:
                stats["malformed"] += 1
                return self._bad_request(error, transport, source, conn)
            if not isinstance(message, Request):
                stats["responses_ignored"] += 1
                return []
            view = RequestView.of(message)
        method = view.method
        if method == "ACK":
            return []  # never answered (RFC 3261 §17.2.1); no INVITEs are served yet
        stats[_REQUEST_STATS.get(method, "request:other")] += 1
        top = view.top
        # Only REGISTER needs its answer kept for retransmissions (a second nonce count
        # would be a replay); OPTIONS is answered afresh, and costs no memory.
        branch = top.params.get("branch")
        key = (branch, method, source) if branch and method == "REGISTER" else None
        if key is not None:
            cached = self._transactions.get(key)
            if cached is not None:  # a retransmission: the same answer again
                stats["retransmissions"] += 1
                return [Send(cached[1], tuple(source), transport, conn)]
        # What every response to this request copies of it, the top Via with received and
        # rport (set per message: the core handles one message at a time).
        self._echo = "\r\n".join([f"{name}: {value}" for name, value in copied_fields(
            view.index, self._to_tag(view.index), self._received_via(top, source),
            view.to_has_tag)])
        try:
            answer = self._handle(view, transport, source, now)
        except (ParseError, ValueError) as error:  # ParseError is a ValueError too
            stats["malformed"] += 1
            answer = self._response(400, _bad_request_reason(error))
        if key is not None:
            transactions = self._transactions
            transactions[key] = (now + TRANSACTION_LIFETIME, answer)
            if len(transactions) > MAX_TRANSACTIONS:
                transactions.popitem(last=False)
        return [Send(answer, tuple(source), transport, conn)]

    def unframeable(self, error, transport, source):
        """A stream that cannot be framed (the shell then closes it): a 400 if possible."""
        self.stats["malformed"] += 1
        return self._bad_request(error, transport, source, None)

    def _bad_request(self, error, transport, source, conn):
        headers = error.headers
        if headers is None or not headers.get_all("Via") or "CSeq" not in headers:
            return []  # nothing to address a response to: dropped (RFC 3261 §16.3 spirit)
        try:
            start = headers.get("CSeq", "").split()
            if len(start) == 2 and start[1].upper() == "ACK":
                return []
            top = parse_via(headers.get_all("Via")[0])
            response = make_response(headers, 400, _bad_request_reason(error), [_SERVER_FIELD],
                                     to_tag=self._to_tag(headers._index),
                                     top_via=self._received_via(top, source))
            self.stats["response:400"] += 1
            return [Send(response.to_bytes(), tuple(source), transport, conn)]
        except (ParseError, ValueError):
            return []

    @staticmethod
    def _received_via(top, source):
        """The top Via of a response: RFC 3261 §18.2.1 received, RFC 3581 rport."""
        params = top.params
        rport = "rport" in params
        if rport or top.host.strip("[]") != source[0]:
            params = dict(params)
            params["received"] = source[0]
            if rport:
                params["rport"] = str(source[1])
        text = f"{top.protocol}/{top.transport} {top.host}"
        if top.port is not None:
            text = f"{text}:{top.port}"
        return text + "".join([f";{k}={v}" if v != "" else f";{k}" for k, v in params.items()])

    @staticmethod
    def _to_tag(index):
        # The same tag for every response of a dialog-less request: stateless, and the
        # same again for a retransmission.
        call_id, sender = index.get("call-id"), index.get("from")
        text = (call_id[0] if call_id else "") + (sender[0] if sender else "")
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]

    def _response(self, status, reason, extra=()):
        """The bytes of the response to the request being handled, with the core's own
        `extra` fields (canonical names, values without CR or LF)."""
        self.stats[f"response:{status}"] += 1
        lines = [f"SIP/2.0 {status} {reason}", self._echo, _SERVER_LINE]
        lines += [f"{name}: {value}" for name, value in extra]
        lines.append("Content-Length: 0\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")

    # --- requests ---

    def _handle(self, request, transport, source, now):
        if request.method == "REGISTER":
            return self._register(request, transport, source, now)
        if request.method == "OPTIONS":
            return self._response(200, "OK", [("Allow", ALLOW), ("Accept", "application/sdp")])
        return self._response(501, "Not Implemented", [("Allow", ALLOW)])

    def _serves(self, host, realm):
        served = self._served.get(host)
        if served is None or served[0] != realm:
            bare = host.strip("[]").lower()
            if bare in self.domains or bare == realm.lower():
                known = True
            else:
                try:
                    ipaddress.ip_address(bare)
                    known = True  # phones configured with the edge's address
                except ValueError:
                    known = False
            if len(self._served) >= 1024:  # hosts are a handful; a scan makes up more
                self._served.clear()
            served = self._served[host] = (realm, known)
        return served[1]

    def _register(self, request, transport, source, now):
        if request.uri_host is None:
            raise ParseError("not a sip: or sips: URI")  # a 400
        realm = self.realm
        if not self._serves(request.uri_host, realm):
            return self._response(404, "Domain Not Served Here")
        user_id = unescape(request.to_user)
        if not user_id:
            return self._response(404, "Not Found")
        source_key = self.guard.source(source[0])
        index = request.index

        authorization = self._authorization(index.get("authorization"), realm)
        if authorization is None:
            return self._challenge(request, realm, now, source_key)
        try:
            creds = digest.parse_credentials(authorization)
        except digest.DigestError as error:
            return self._response(400, _bad_request_reason(error))
        if creds.realm != realm:
            return self._challenge(request, realm, now, source_key)
        if self.guard.locked_out(source_key, user_id, now):
            self.stats["locked_out"] += 1
            return self._response(403, "Forbidden")
        status, issued_at = self.nonces.verify(creds.nonce, now, realm, bound=source_key)
        if status == "invalid":  # forged, of another edge, or obtained from another source
            return self._challenge(request, realm, now, source_key)
        if status == "stale":
            # Whatever the digest says: checking it would answer "right password" and
            # "wrong password" differently, an uncounted guess per stale nonce.
            return self._challenge(request, realm, now, source_key, stale=True)
        identity = self.config.identity(user_id)
        try:
            right = digest.verify(creds, identity.ha1 if identity else None, "REGISTER")
        except digest.DigestError as error:
            return self._response(400, _bad_request_reason(error))
        # The digest username must be the SIP user ID being registered (no separate
        # "authorization user"): a mismatch is as wrong as a wrong password.
        if right and creds.username != user_id:
            right = False
        if not right:
            return self._failure(source, source_key, user_id, identity, now)
        if self.counts.forgotten_before is None:
            self.counts.forget_before(self._started_at)
        if not self.counts.accept(creds.nonce, creds.nc, issued_at):
            # A replay, or a nonce whose count this edge no longer knows: a fresh nonce.
            self.stats["replays"] += 1
            return self._challenge(request, realm, now, source_key, stale=True)
        self.stats["auth_success"] += 1
        self.guard.success(source_key, user_id)
        address = self.guard.address_text(source[0])
        at = _iso(now)
        self.events.append({"type": "auth_success", "at": at, "address": address,
                            "user_id": user_id[:MAX_EVENT_TEXT]})
        # RFC 3261 §10.3: the Contacts are read once the request is authenticated (step 6
        # after step 3); a malformed one then gets its 400.
        contacts = self._contacts(index.get("contact"))
        expires = index.get("expires")
        expires_header = _expires(expires[0]) if expires else None
        return self._bind(request, user_id, contacts, expires_header, transport, source,
                          address, now, at)

    @staticmethod
    def _authorization(values, realm):
        # Whole fields: credentials hold commas, so they are never split like list headers.
        if not values:
            return None
        if len(values) > 1:
            for value in values:
                if f'realm="{realm}"' in value or f"realm={realm}" in value:
                    return value
        return values[0]

    def _challenge(self, request, realm, now, source_key, *, stale=False):
        self.stats["challenges"] += 1
        nonce = self.nonces.issue(now, realm, bound=source_key)
        agent = request.index.get("user-agent")
        algorithms = self._algorithms_for(agent[0] if agent else None)
        extra = [("WWW-Authenticate", value)
                 for value in digest.challenge(realm, nonce, stale=stale, algorithms=algorithms)]
        return self._response(401, "Unauthorized", extra)

    def _algorithms_for(self, agent):
        """The algorithms offered to a User-Agent (looked up once per agent text)."""
        if not agent or self._md5_only is None:
            return self.algorithms
        algorithms = self._agents.get(agent)
        if algorithms is None:
            algorithms = ("MD5",) if self._md5_only.search(agent) else self.algorithms
            if len(self._agents) >= 1024:  # a few models per platform; made-up ones are not
                self._agents.clear()
            self._agents[agent] = algorithms
        return algorithms

    def _failure(self, source, source_key, user_id, identity, now):
        reason = "wrong_password" if identity is not None else "unknown_user"
        self.stats["auth_failures"] += 1
        self._event("auth_failure", now, address=self.guard.address_text(source[0]),
                    user_id=user_id, reason=reason)
        self.urgent = True
        sheltered = [u for u in self._users_from(source_key) if u != user_id]
        verdict = self.guard.failure(source_key, user_id, now, sheltered_by=sheltered)
        if verdict.action is not None:
            self.stats[f"local_{verdict.action}s"] += 1
            log.warning("%s of %s%s after repeated authentication failures",
                        verdict.action, source_key,
                        f" for {user_id}" if verdict.action == "lockout" else "")
        # A wrong password and an unknown user ID get the same answer.
        return self._response(403, "Forbidden")

    # --- bindings ---

    @staticmethod
    def _contacts(fields):
        """[(contact URI, expires parameter or None)] of the Contact fields, or "*"."""
        if not fields:
            return []
        if len(fields) == 1 and fields[0] and "," not in fields[0]:
            values = fields  # one element, stripped by the parser: nothing to split
        else:
            values = list_elements(fields)
        contacts = []
        for value in values:
            contact = _contact(value)
            if contact == "*":
                if len(values) != 1:
                    raise ParseError("Contact * must stand alone")
                return "*"
            contacts.append(contact)
        return contacts

    def _bind(self, request, user_id, contacts, expires_header, transport, source, address,
              now, at):
        registrar = self.registrar
        if contacts == []:
            bindings = registrar.bindings(user_id, now)  # a query (RFC 3261 §10.2.3)
            return self._ok(bindings, now)
        index = request.index
        agent = index.get("user-agent")
        agent = agent[0] if agent else None
        before = registrar.current(user_id)
        result = registrar.update(
            user_id, contacts, expires_header=expires_header, call_id=index["call-id"][0],
            cseq=request.cseq, now=now, source=tuple(source), transport=transport,
            user_agent=agent)
        if result.status == 423:
            return self._response(423, "Interval Too Brief",
                                  [("Min-Expires", str(result.min_expires))])
        if result.status != 200:
            return self._response(result.status, result.reason)
        for binding in result.removed:
            self._unindex(binding)
            self._event("unregistration", now, user_id=user_id, contact=binding.contact)
        events = self.events
        for binding in result.added:
            old = before.get(binding.contact)
            if old is not None:  # a refresh: the binding may come from elsewhere now
                if old.source != binding.source:
                    self._unindex(old)
                    self._index(binding)
            else:
                self._index(binding)
            events.append({
                "type": "registration", "at": at, "user_id": user_id[:MAX_EVENT_TEXT],
                "contact": binding.contact[:MAX_EVENT_CONTACT], "source_address": address,
                "source_port": source[1], "transport": transport,
                "expires": binding.expires_in(now),
                "user_agent": (binding.user_agent or "")[:200] or None})
        return self._ok(result.bindings, now)

    def _ok(self, bindings, now):
        extra = [("Contact", f"<{b.contact}>;expires={b.expires_in(now)}") for b in bindings]
        extra.append(("Date", self._date_text(now)))
        return self._response(200, "OK", extra)

    def _date_text(self, now):
        second = int(now)
        if self._date[0] != second:
            self._date = (second, email.utils.formatdate(second, usegmt=True))
        return self._date[1]

    def _users_from(self, source):
        users = self._users_at.get(source)
        if users is None:
            return ()
        return (users,) if isinstance(users, str) else tuple(users)

    def _index(self, binding):
        source = self.guard.source(binding.source[0])
        users = self._users_at.get(source)
        if users is None:
            self._users_at[source] = binding.user_id
            return
        if isinstance(users, str):
            users = self._users_at[source] = Counter({users: 1})
        users[binding.user_id] += 1

    def _unindex(self, binding):
        source = self.guard.source(binding.source[0])
        users = self._users_at.get(source)
        if users is None:
            return
        if isinstance(users, str):
            if users == binding.user_id:
                del self._users_at[source]
            return
        users[binding.user_id] -= 1
        if users[binding.user_id] <= 0:
            del users[binding.user_id]
        if len(users) == 1:
            [(user_id, count)] = users.items()
            if count == 1:
                self._users_at[source] = user_id
        elif not users:
            del self._users_at[source]

    def _reindex(self):
        """Sources are counted with the policy's IPv6 prefix: when it changes, count anew."""
        self._users_at = {}
        for binding in self.registrar.all_bindings():
            self._index(binding)
