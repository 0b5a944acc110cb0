"""The events an edge owes the control plane, queued until the link takes them.

Bounded: beyond ``max_events`` the oldest are dropped (and counted), so an edge whose
control plane is away cannot run out of memory.

Coalesced: an event that only says what the state of something is now replaces the one
before it about the same thing, if that one is still queued. A phone that re-registers
ten times while the control plane is away is one registration event, not ten; a
re-registration storm after an outage queues at most one event per binding, which the
control plane then catches up with, instead of filling the queue and dropping older
events that the SIP Status screen would never show.

What is coalesced, and what never is:

- ``registration`` and ``unregistration`` of one (user ID, contact): the latest says
  whether the binding exists and until when. An unregistration of every binding of a user
  ID (no contact) is kept as it is.
- ``auth_success`` of one (address, user ID), but not across a failure of that pair:
  the ban engine forgives the failures before a success, so "fail, fail, success, fail,
  success" must not become "fail, fail, fail, success".
- ``auth_failure`` never: the ban engine counts every one.

Sans-IO: plain data in and out, no clock, no sockets.
"""

from collections import deque

MAX_EVENTS = 100_000


def _key(event):
    kind = event["type"]
    if kind in ("registration", "unregistration"):
        contact = event.get("contact")
        return None if contact is None else ("binding", event["user_id"], contact)
    if kind == "auth_success":
        return ("auth", event["address"], event["user_id"])
    return None


class EventQueue:
    def __init__(self, max_events=MAX_EVENTS):
        self.max_events = max_events
        self.dropped = 0  # events lost to the bound
        self.coalesced = 0  # events replaced by a later one about the same thing
        self._queue = deque()  # events in order; a replaced one is left as an empty dict
        self._latest = {}  # key -> the queued event with that key
        self._replaced = 0  # empty dicts in _queue

    def __len__(self):
        return len(self._queue) - self._replaced

    def __bool__(self):
        return len(self) > 0

    def __iter__(self):
        return (event for event in self._queue if event)

    def append(self, event):
        key = _key(event)
        if event["type"] == "auth_failure":
            # A success queued before this failure must stay before it.
            self._latest.pop(("auth", event["address"], event["user_id"]), None)
        elif key is not None:
            before = self._latest.get(key)
            if before is not None:
                before.clear()  # stays in the queue as a hole, skipped when drained
                self._replaced += 1
                self.coalesced += 1
            self._latest[key] = event
        if len(self) >= self.max_events:
            self._make_room()
        self._queue.append(event)
        if self._replaced > 1024 and self._replaced * 2 > len(self._queue):
            self._compact()

    def drain(self, limit):
        """Up to `limit` events, oldest first, taken out of the queue."""
        out = []
        queue = self._queue
        while queue and len(out) < limit:
            event = queue.popleft()
            if not event:
                self._replaced -= 1
                continue
            self._forget(event)
            out.append(event)
        return out

    def _forget(self, event):
        key = _key(event)
        if key is not None and self._latest.get(key) is event:
            del self._latest[key]

    def _make_room(self):
        queue = self._queue
        while queue:
            event = queue.popleft()
            if not event:
                self._replaced -= 1
                continue
            self._forget(event)
            self.dropped += 1
            return

    def _compact(self):
        self._queue = deque(event for event in self._queue if event)
        self._replaced = 0
