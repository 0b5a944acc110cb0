"""Registrar bindings (RFC 3261 §10.3), sans-IO: every call takes `now` (seconds).

One record per SIP user ID: the home endpoint `12345101` and the remote one `12345101r`
are separate users here, as they are to phones. The registrar only decides; the edge
core turns results into responses and events.
"""

import heapq
from dataclasses import dataclass, field


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# five times the cost, on every registration. The registrar never changes a Binding: a
# refresh replaces it.
@dataclass(slots=True)
class Binding:
    user_id: str
    contact: str  # the Contact URI, as the phone gave it
    expires_at: float
    call_id: str
    cseq: int
    source: tuple  # (address, port) the REGISTER came from
    transport: str
    user_agent: str | None

    def expires_in(self, now):
        return max(int(self.expires_at - now + 0.5), 0)


@dataclass(slots=True)
class RegisterResult:
    status: int  # 200, or 400 / 423 / 500 / 403 with `reason`
    reason: str = "OK"
    bindings: list = field(default_factory=list)  # all bindings after the request
    added: list = field(default_factory=list)  # new or refreshed
    removed: list = field(default_factory=list)
    min_expires: int | None = None


class Registrar:
    def __init__(self, *, min_expires=60, max_expires=3600, default_expires=3600,
                 max_bindings=10):
        self.min_expires, self.max_expires = min_expires, max_expires
        self.default_expires, self.max_bindings = default_expires, max_bindings
        self._by_user = {}  # user_id -> {contact: Binding}
        self._timers = []  # heap of (expires_at, user_id, contact); stale entries skipped

    def __len__(self):
        return sum(len(b) for b in self._by_user.values())

    def bindings(self, user_id, now):
        return [b for b in self._by_user.get(user_id, {}).values() if b.expires_at > now]

    def update(self, user_id, contacts, *, expires_header, call_id, cseq, now, source,
               transport, user_agent=None):
        """Apply a REGISTER of an authenticated user ID.

        contacts: a list of (contact URI, expires parameter or None), or the string "*".
        """
        current = self._by_user.get(user_id, {})
        if contacts == "*":
            # §10.3 step 6: "*" only with Expires: 0 and no other Contact
            if expires_header != 0:
                return RegisterResult(400, "Contact * needs Expires: 0")
            for binding in current.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return RegisterResult(500, "CSeq out of order")
            removed = list(current.values())
            self._by_user.pop(user_id, None)
            return RegisterResult(200, removed=removed)

        plan = []
        for contact, expires_param in contacts:
            expires = expires_param if expires_param is not None else expires_header
            expires = self.default_expires if expires is None else expires
            if 0 < expires < self.min_expires:
                # §10.3 step 7: too brief to be worth keeping: tell the phone the minimum
                return RegisterResult(423, "Interval Too Brief", min_expires=self.min_expires)
            plan.append((contact, min(expires, self.max_expires)))

        updated = dict(current)
        added, removed = [], []
        for contact, expires in plan:
            existing = updated.get(contact)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return RegisterResult(500, "CSeq out of order")
            if expires == 0:
                if existing is not None:
                    removed.append(updated.pop(contact))
                continue
            binding = Binding(user_id, contact, now + expires, call_id, cseq, tuple(source),
                              transport, user_agent)
            updated[contact] = binding
            added.append(binding)
        if len(updated) > self.max_bindings:
            return RegisterResult(403, f"At most {self.max_bindings} contacts per user")
        if updated:
            self._by_user[user_id] = updated
        else:
            self._by_user.pop(user_id, None)
        for binding in added:
            heapq.heappush(self._timers, (binding.expires_at, user_id, binding.contact))
        return RegisterResult(200, bindings=list(updated.values()), added=added, removed=removed)

    def current(self, user_id):
        """{contact: Binding} as stored (expired ones not yet collected included)."""
        return dict(self._by_user.get(user_id, {}))

    def remove_user(self, user_id):
        """The user ID is gone from the configuration: drop its bindings."""
        return list(self._by_user.pop(user_id, {}).values())

    def expire(self, now):
        """Remove and return the bindings whose time has come."""
        expired = []
        while self._timers and self._timers[0][0] <= now:
            expires_at, user_id, contact = heapq.heappop(self._timers)
            binding = self._by_user.get(user_id, {}).get(contact)
            if binding is not None and binding.expires_at == expires_at:
                del self._by_user[user_id][contact]
                if not self._by_user[user_id]:
                    del self._by_user[user_id]
                expired.append(binding)
        return expired

    def next_expiry(self):
        """When expire() next has work (aioquic's get_timer)."""
        while self._timers:
            expires_at, user_id, contact = self._timers[0]
            binding = self._by_user.get(user_id, {}).get(contact)
            if binding is not None and binding.expires_at == expires_at:
                return expires_at
            heapq.heappop(self._timers)
        return None

    def compact(self):
        """Drop the timers of refreshed or removed bindings, when they outnumber the live
        ones: every refresh pushes a timer, and the old one only goes when it comes due."""
        live = len(self)
        if len(self._timers) <= 2 * live + 64:
            return
        self._timers = [(at, user_id, contact) for at, user_id, contact in self._timers
                        if (b := self._by_user.get(user_id, {}).get(contact)) is not None
                        and b.expires_at == at]
        heapq.heapify(self._timers)

    def all_bindings(self):
        for bindings in self._by_user.values():
            yield from bindings.values()
