"""Who may talk to the edge: fleet bans, the edge's own quick bans, pair lockouts. Sans-IO.

The control plane decides bans for the whole fleet (tenants/services/bans.py) and the
feed brings them here. An attacker must not get a free run while its failures travel to
the control plane and the ban travels back, so the edge applies the same policy at once to
the failures it sees itself: a *provisional* ban, which the fleet's ban then confirms (with
the escalated duration), or which ends by itself after PROVISIONAL seconds. Lifting a ban
in the API deletes the fleet's ban, and that ends the edge's own for the same source too.

Sources are counted as the control plane counts them (tenants/addresses.py): an IPv4
address, or the /prefix network of an IPv6 address.
"""

import datetime as dt
import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass

PROVISIONAL = 60.0  # seconds an edge's own ban lasts unless the fleet's confirms it
MAX_TRACKED = 100_000  # sources with recent failures kept; the oldest is forgotten first
DEFAULT_POLICY = {"max_retry": 5, "find_time": 600, "ban_time": 3600, "scan_user_ids": 3,
                  "ipv6_prefix": 64}


def _epoch(value):
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the edge decided about a failure: "ban", "lockout" or None (keep counting)."""

    action: str | None
    source: str
    user_id: str | None = None
    until: float | None = None


class Guard:
    def __init__(self, *, own_addresses=()):
        self.policy = dict(DEFAULT_POLICY)
        self._own = set()
        self.set_own_addresses(own_addresses)
        self._fleet_bans = {}  # source -> until (epoch)
        self._fleet_lockouts = {}  # (source, user_id) -> until
        self._local_bans = {}
        self._local_lockouts = {}
        self._trusted = []  # ip_network: the platform's and the tenants' trusted networks
        self._platform_trusted = []  # the platform's alone: never banned nor locked out
        self._failures = OrderedDict()  # source -> deque[(at, user_id)]
        self._canonical = OrderedDict()  # IPv6 address text -> source (a small cache)

    # --- configuration ---

    def set_own_addresses(self, addresses):
        self._own = {self._source_of(a) for a in addresses if self._valid(a)}

    def load(self, config):
        """Take the fleet's bans, policy and trusted networks from an EdgeConfig."""
        if config.policy:
            self.policy = {**DEFAULT_POLICY, **config.policy}
        self._canonical.clear()
        self._fleet_bans, self._fleet_lockouts = {}, {}
        for ban in config.bans.values():
            until = _epoch(ban.until)
            if ban.user_id is None:
                self._fleet_bans[ban.source] = until
            else:
                self._fleet_lockouts[(ban.source, ban.user_id)] = until
        # A source whose fleet ban is gone (lifted) loses the edge's own ban too.
        for source in [s for s in self._local_bans if s not in self._fleet_bans]:
            if self._local_bans[source][1]:  # confirmed once by the fleet, now lifted
                del self._local_bans[source]
                self._failures.pop(source, None)
        for key in [k for k in self._local_lockouts if k not in self._fleet_lockouts]:
            if self._local_lockouts[key][1]:
                del self._local_lockouts[key]
                self._failures.pop(key[0], None)
        for source in self._fleet_bans:
            if source in self._local_bans:
                self._local_bans[source] = (self._local_bans[source][0], True)
        for key in self._fleet_lockouts:
            if key in self._local_lockouts:
                self._local_lockouts[key] = (self._local_lockouts[key][0], True)
        trusted, platform = [], []
        for network in config.trusted.values():
            try:
                net = ipaddress.ip_network(network["cidr"], strict=False)
            except (KeyError, TypeError, ValueError):
                continue
            (platform if network.get("trunk_number") is None else trusted).append(net)
        self._trusted, self._platform_trusted = trusted + platform, platform

    def apply_ban(self, key, payload):
        """One ban entry of the change feed: `payload` None when it was deleted (lifted)."""
        source, _, user_id = key.partition("|")
        user_id = user_id or None
        if payload is None:
            if user_id is None:
                self._fleet_bans.pop(source, None)
            else:
                self._fleet_lockouts.pop((source, user_id), None)
            self.lifted(source, user_id)
            return
        until = _epoch(dt.datetime.fromisoformat(payload["until"]))
        if user_id is None:
            self._fleet_bans[source] = until
            if source in self._local_bans:
                self._local_bans[source] = (self._local_bans[source][0], True)
        else:
            self._fleet_lockouts[(source, user_id)] = until
            if (source, user_id) in self._local_lockouts:
                local = self._local_lockouts[(source, user_id)]
                self._local_lockouts[(source, user_id)] = (local[0], True)

    def lifted(self, source, user_id=None):
        """The fleet's ban of `source` (or lockout of the pair) was deleted: forgive it here."""
        if user_id is None:
            self._local_bans.pop(source, None)
        else:
            self._local_lockouts.pop((source, user_id), None)
        self._failures.pop(source, None)

    # --- the hot path ---

    def source(self, address):
        """The canonical source of a socket address text."""
        return self._source_of(address)

    def blocked(self, address, now):
        """Should a packet from `address` be dropped before parsing?"""
        source = self._source_of(address)
        if source in self._own:
            return False
        until = self._fleet_bans.get(source)
        if until is not None and until > now:
            return True
        local = self._local_bans.get(source)
        if local is not None:
            if local[0] > now:
                return True
            del self._local_bans[source]
        return False

    def locked_out(self, source, user_id, now):
        until = self._fleet_lockouts.get((source, user_id))
        if until is not None and until > now:
            return True
        local = self._local_lockouts.get((source, user_id))
        return local is not None and local[0] > now

    def failure(self, source, user_id, now, *, sheltered_by=()):
        """Count a failed authentication; returns the Verdict.

        sheltered_by: other SIP user IDs holding valid registrations from this source on this
        edge (an office NAT): failures of one phone lock out only that phone, unless they
        spread over several user IDs (a scan).
        """
        if source in self._own or self._within(source, self._platform_trusted):
            return Verdict(None, source)
        policy = self.policy
        find_time = float(policy["find_time"])
        recent = self._failures.get(source)
        if recent is None:
            recent = self._failures[source] = deque(maxlen=max(int(policy["max_retry"]), 1) * 4)
            if len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(source)
        recent.append((now, user_id))
        while recent and recent[0][0] <= now - find_time:
            recent.popleft()
        if len(recent) < int(policy["max_retry"]):
            return Verdict(None, source)
        until = now + min(float(policy["ban_time"]), PROVISIONAL)
        user_ids = {u for _, u in recent}
        scan = len(user_ids) >= int(policy["scan_user_ids"])
        sheltered = any(u != user_id for u in sheltered_by)
        # A trusted network is never banned as a whole here; the control plane, which sees
        # whose user IDs were tried, may still decide otherwise for the fleet.
        whole = (scan or not sheltered) and not self._trusted_source(source)
        if whole:
            self._local_bans[source] = (until, False)
            recent.clear()
            return Verdict("ban", source, None, until)
        mine = [u for _, u in recent if u == user_id]
        if len(mine) >= int(policy["max_retry"]):
            self._local_lockouts[(source, user_id)] = (until, False)
            # Its failures are settled by the lockout; left in the window they would make
            # a whole-address ban of the next few typos of other phones (as the control
            # plane, which drops them too, would not).
            kept = [(at, u) for at, u in recent if u != user_id]
            recent.clear()
            recent.extend(kept)
            return Verdict("lockout", source, user_id, until)
        return Verdict(None, source)

    def purge(self, now):
        """Forget bans and lockouts that have ended, and quiet failure windows."""
        for table in (self._fleet_bans, self._fleet_lockouts):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
        for table in (self._local_bans, self._local_lockouts):
            for key in [k for k, (until, _) in table.items() if until <= now]:
                del table[key]
        horizon = now - float(self.policy["find_time"])
        for source in [s for s, recent in self._failures.items()
                       if not recent or recent[-1][0] <= horizon]:
            del self._failures[source]

    def success(self, source, user_id):
        """A correct answer to a challenge: that user's failures from here are forgiven."""
        recent = self._failures.get(source)
        if recent:
            kept = [(at, u) for at, u in recent if u != user_id]
            recent.clear()
            recent.extend(kept)

    def counts(self, now):
        return {
            "fleet_bans": sum(1 for u in self._fleet_bans.values() if u > now),
            "local_bans": sum(1 for u, _ in self._local_bans.values() if u > now),
            "lockouts": sum(1 for u in self._fleet_lockouts.values() if u > now)
            + sum(1 for u, _ in self._local_lockouts.values() if u > now),
            "tracked_sources": len(self._failures),
        }

    # --- addresses ---

    def _trusted_source(self, source):
        return self._within(source, self._trusted)

    @staticmethod
    def _within(source, networks):
        if not networks:
            return False
        net = ipaddress.ip_network(source if "/" in source else source + "/32", strict=False)
        return any(net.version == n.version and (net.subnet_of(n) or n.subnet_of(net))
                   for n in networks)

    @staticmethod
    def _valid(address):
        try:
            ipaddress.ip_address(str(address).strip("[]"))
        except ValueError:
            return False
        return True

    @staticmethod
    def address_text(address):
        """The address as the control plane takes it: no zone, IPv4-mapped unwrapped."""
        if ":" not in address:
            return address
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        return str(ip.ipv4_mapped) if ip.version == 6 and ip.ipv4_mapped else str(ip)

    def _source_of(self, address):
        if ":" not in address:
            return address  # an IPv4 address from a socket is canonical already
        cached = self._canonical.get(address)
        if cached is not None:
            return cached
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            source = str(ip.ipv4_mapped)
        elif ip.version == 6:
            prefix = int(self.policy.get("ipv6_prefix") or 64)
            source = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        else:
            source = str(ip)
        self._canonical[address] = source
        if len(self._canonical) > 10_000:
            self._canonical.popitem(last=False)
        return source
