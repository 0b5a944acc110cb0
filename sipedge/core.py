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
import hashlib
import ipaddress
import logging
import math
import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass

from .config import EdgeConfig
from .events import MAX_EVENTS, EventQueue
from .guard import Guard
from .sip import digest
from .sip.message import (
    ParseError, Request, make_response, parse_contact, parse_message, parse_name_addr,
    parse_uri, parse_via, split_list, unescape,
)
from .sip.registrar import Registrar

log = logging.getLogger("sipedge.core")

SERVER = "Trunkline sipedge"
ALLOW = "REGISTER, OPTIONS"
DEFAULT_REALM = "sip.trunkline.local"
TRANSACTION_LIFETIME = 32.0  # RFC 3261 §17.2.2 Timer J: 64*T1 for retransmissions
MAX_TRANSACTIONS = 50_000
_DIGITS = re.compile(r"[0-9]{1,10}")
# Methods counted by name; any other is "other" (names are the sender's to invent, and a
# metric label per invented name would grow without end).
KNOWN_METHODS = frozenset({"REGISTER", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL", "INFO",
                           "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "UPDATE",
                           "PRACK"})
MAX_EVENT_TEXT = 64  # user IDs in events: the control plane takes no longer ones
MAX_EVENT_CONTACT = 512
PURGE_EVERY = 60.0  # seconds between sweeps of ended bans and quiet failure windows
# Clients known to give up on a 401 that offers any algorithm besides MD5 (they decode
# every WWW-Authenticate and fail on SHA-256, or take the first one whatever it is):
# baresip 1.x (libre before 3.x), SIPp 3.6. They get the MD5 challenge alone.
MD5_ONLY_AGENTS = r"(?i)^(baresip v?[01]\.|sipp\b)"


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to send: on UDP to `destination`, on TCP over the connection `conn`."""

    data: bytes
    destination: tuple
    transport: str
    conn: object = None


def _iso(now, _last=[None, ""]):
    # The events of one message share its time: formatted once.
    if _last[0] != now:
        _last[0], _last[1] = now, dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat()
    return _last[1]


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
        self._answer_via = None
        self._literals = {}  # Request-URI host -> whether it is an IP address
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
        self.stats["messages"] += 1
        try:
            message = parse_message(data)
        except ParseError as error:
            self.stats["malformed"] += 1
            return self._bad_request(error, transport, source, conn)
        if not isinstance(message, Request):
            self.stats["responses_ignored"] += 1
            return []
        if message.method == "ACK":
            return []  # never answered (RFC 3261 §17.2.1); no INVITEs are served yet
        method = message.method if message.method in KNOWN_METHODS else "other"
        self.stats[f"request:{method}"] += 1
        top = message.parts.vias[0]  # parse_message checked every Via
        # The top Via of every response to this request (set per message: the core
        # handles one message at a time).
        self._answer_via = self._received_via(top, source)
        # Only REGISTER needs its answer kept for retransmissions (a second nonce count
        # would be a replay); OPTIONS is answered afresh, and costs no memory.
        key = ((top.branch, message.method, source)
               if top.branch and message.method == "REGISTER" else None)
        if key is not None:
            cached = self._transactions.get(key)
            if cached is not None:  # a retransmission: the same answer again
                self.stats["retransmissions"] += 1
                return [Send(cached[1], tuple(source), transport, conn)]
        try:
            response = self._handle(message, transport, source, now)
        except (ParseError, ValueError) as error:  # ParseError is a ValueError too
            self.stats["malformed"] += 1
            reason = f"Bad Request ({error})"[:120].replace("\r", " ").replace("\n", " ")
            response = self._response(message, 400, reason)
        sends = [self._send(response, source, transport, conn)]
        if key is not None:
            self._transactions[key] = (now + TRANSACTION_LIFETIME, sends[0].data)
            if len(self._transactions) > MAX_TRANSACTIONS:
                self._transactions.popitem(last=False)
        return sends

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
            reason = f"Bad Request ({error})"[:120].replace("\r", " ").replace("\n", " ")
            response = make_response(headers, 400, reason, [("Server", SERVER)],
                                     to_tag=self._to_tag(headers),
                                     top_via=self._received_via(top, source))
            return [self._send(response, source, transport, conn)]
        except (ParseError, ValueError):
            return []

    def _send(self, response, source, transport, conn):
        self.stats[f"response:{response.status}"] += 1
        return Send(response.to_bytes(), tuple(source), transport, conn)

    @staticmethod
    def _received_via(top, source):
        """The top Via of a response: RFC 3261 §18.2.1 received, RFC 3581 rport."""
        params = dict(top.params)
        host = top.host.strip("[]")
        if host != source[0] or "rport" in params:
            params["received"] = source[0]
        if "rport" in params:
            params["rport"] = str(source[1])
        text = f"{top.protocol}/{top.transport} {top.host}"
        if top.port is not None:
            text += f":{top.port}"
        return text + "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())

    def _to_tag(self, headers):
        # The same tag for every response of a dialog-less request: stateless, and the
        # same again for a retransmission.
        return hashlib.sha256(
            (headers.get("Call-ID", "") + headers.get("From", "")).encode(
                "utf-8", "surrogateescape")).hexdigest()[:16]

    def _response(self, request, status, reason, extra=()):
        return make_response(request, status, reason, [("Server", SERVER), *extra],
                             to_tag=self._to_tag(request.headers),
                             top_via=self._answer_via)

    # --- requests ---

    def _handle(self, request, transport, source, now):
        if request.method == "REGISTER":
            return self._register(request, transport, source, now)
        if request.method == "OPTIONS":
            return self._response(request, 200, "OK", [("Allow", ALLOW),
                                                       ("Accept", "application/sdp")])
        return self._response(request, 501, "Not Implemented", [("Allow", ALLOW)])

    def _serves(self, host):
        host = host.strip("[]").lower()
        if host in self.domains or host == self.realm.lower():
            return True
        known = self._literals.get(host)
        if known is None:
            try:
                ipaddress.ip_address(host)
                known = True  # phones configured with the edge's address
            except ValueError:
                known = False
            if len(self._literals) >= 1024:  # hosts are a handful; a scan makes up more
                self._literals.clear()
            self._literals[host] = known
        return known

    def _register(self, request, transport, source, now):
        uri = request.parts.uri or parse_uri(request.uri)  # not sip: -> ParseError, a 400
        if not self._serves(uri.host):
            return self._response(request, 404, "Domain Not Served Here")
        to = request.parts.to
        user_id = unescape(to.uri.user)
        if not user_id:
            return self._response(request, 404, "Not Found")
        source_key = self.guard.source(source[0])
        realm = self.realm

        authorization = self._authorization(request, realm)
        if authorization is None:
            return self._challenge(request, realm, now, source_key)
        try:
            creds = digest.parse_credentials(authorization)
        except digest.DigestError as error:
            return self._response(request, 400, f"Bad Request ({error})"[:120])
        if creds.realm != realm:
            return self._challenge(request, realm, now, source_key)
        if self.guard.locked_out(source_key, user_id, now):
            self.stats["locked_out"] += 1
            return self._response(request, 403, "Forbidden")
        status = self.nonces.check(creds.nonce, now, realm, bound=source_key)
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
            return self._response(request, 400, f"Bad Request ({error})"[:120])
        # The digest username must be the SIP user ID being registered (no separate
        # "authorization user"): a mismatch is as wrong as a wrong password.
        if right and creds.username != user_id:
            right = False
        if not right:
            return self._failure(request, source, source_key, user_id, identity, now)
        if self.counts.forgotten_before is None:
            self.counts.forget_before(self._started_at)
        if not self.counts.accept(creds.nonce, creds.nc, self.nonces.issued_at(creds.nonce)):
            # A replay, or a nonce whose count this edge no longer knows: a fresh nonce.
            self.stats["replays"] += 1
            return self._challenge(request, realm, now, source_key, stale=True)
        self.stats["auth_success"] += 1
        self.guard.success(source_key, user_id)
        self._event("auth_success", now, address=self.guard.address_text(source[0]),
                    user_id=user_id)
        # RFC 3261 §10.3: the Contacts are read once the request is authenticated (step 6
        # after step 3); a malformed one then gets its 400.
        contacts = self._contacts(request)
        expires_header = self._expires(request.headers.get("Expires"))
        return self._bind(request, user_id, contacts, expires_header, transport, source, now)

    def _authorization(self, request, realm):
        # Whole fields: credentials hold commas, so they are never split like list headers.
        values = request.headers.get_all("Authorization")
        if not values:
            return None
        for value in values:
            if f'realm="{realm}"' in value or f"realm={realm}" in value:
                return value
        return values[0]

    def _challenge(self, request, realm, now, source_key, *, stale=False):
        self.stats["challenges"] += 1
        nonce = self.nonces.issue(now, realm, bound=source_key)
        algorithms = self.algorithms
        agent = request.headers.get("User-Agent")
        if agent and self._md5_only is not None and self._md5_only.search(agent):
            algorithms = ("MD5",)
        extra = [("WWW-Authenticate", value)
                 for value in digest.challenge(realm, nonce, stale=stale, algorithms=algorithms)]
        return self._response(request, 401, "Unauthorized", extra)

    def _failure(self, request, source, source_key, user_id, identity, now):
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
        return self._response(request, 403, "Forbidden")

    # --- bindings ---

    def _contacts(self, request):
        values = request.headers.get_all("Contact")
        contacts = []
        for value in values:
            parsed = parse_contact(value)
            if parsed == "*":
                if len(values) != 1:
                    raise ParseError("Contact * must stand alone")
                return "*"
            expires = parsed.params.get("expires")
            contacts.append((str(parsed.uri), self._expires(expires)))
        return contacts

    @staticmethod
    def _expires(text):
        if text is None:
            return None
        text = text.strip()
        if not _DIGITS.fullmatch(text):  # ASCII only: "²".isdigit() is True
            raise ParseError("bad Expires")
        return int(text)

    def _bind(self, request, user_id, contacts, expires_header, transport, source, now):
        if contacts == []:
            bindings = self.registrar.bindings(user_id, now)  # a query (RFC 3261 §10.2.3)
            return self._ok(request, bindings, now)
        call_id = request.headers.get("Call-ID")
        cseq = int(request.headers.get("CSeq").split()[0])
        before = self.registrar.current(user_id)
        result = self.registrar.update(
            user_id, contacts, expires_header=expires_header, call_id=call_id, cseq=cseq,
            now=now, source=tuple(source), transport=transport,
            user_agent=request.headers.get("User-Agent"))
        if result.status == 423:
            return self._response(request, 423, "Interval Too Brief",
                                  [("Min-Expires", str(result.min_expires))])
        if result.status != 200:
            return self._response(request, result.status, result.reason)
        for binding in result.removed:
            self._unindex(binding)
            self._event("unregistration", now, user_id=user_id, contact=binding.contact)
        for binding in result.added:
            old = before.get(binding.contact)
            if old is not None:  # a refresh: the binding may come from elsewhere now
                self._unindex(old)
            self._index(binding)
            self._event("registration", now, user_id=user_id, contact=binding.contact,
                        source_address=self.guard.address_text(source[0]),
                        source_port=source[1],
                        transport=transport, expires=binding.expires_in(now),
                        user_agent=(binding.user_agent or "")[:200] or None)
        return self._ok(request, result.bindings, now)

    def _ok(self, request, bindings, now):
        extra = [("Contact", f"<{b.contact}>;expires={b.expires_in(now)}") for b in bindings]
        extra.append(("Date", self._date_text(now)))
        return self._response(request, 200, "OK", extra)

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
