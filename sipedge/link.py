"""The edge's client of the control plane: configuration in, events out.

Runs in the edge's event loop beside SIP, and never stops the edge from serving: while the
control plane is away the core keeps the last configuration, this link retries with
backoff, and the configuration is kept on disk so that a restart without the control plane
still serves.

Configuration follows list-then-watch: a streamed snapshot (applied only when it arrived
whole), then long-polls of the change feed after the applied version; a 410 means the
feed no longer reaches back that far, so take a snapshot again. A "reload" entry fetches
that tenant's snapshot.

Events go out in batches, each with a batch id the control plane applies once. A batch that
failed is sent again as it was (same id, same events) before any new event is taken; the
core's bounded queue is what bounds memory while the control plane is down. Authentication
failures go out at once (``wake``): when they come while a batch of failures is still on its
way, a second batch takes them at once beside it instead of waiting for that answer (the
fleet's ban must not wait for two round trips). Only batches whose order does not matter go
side by side: failures and heartbeats; a batch of registrations or ring modes is answered
before anything later is sent.

The link speaks to the core only through: ``core.config`` (an EdgeConfig) and its
``begin_snapshot`` / ``add_snapshot_record``, ``core.snapshot_done(now)``,
``core.apply_change(entry, now)``, ``core.replace_config(config, now)``,
``core.drain_events(limit)`` and ``core.listen_addresses()``.
"""

import asyncio
import contextlib
import datetime as dt
import email.utils
import gc
import json
import logging
import os
import random
import tempfile
import time
import uuid

import httpx

from sipedge.config import EdgeConfig

log = logging.getLogger("sipedge.link")


def _settled():
    """A whole configuration was just loaded: it lives until the next one. Out of the
    garbage collector's sight (gc.freeze), a full collection no longer walks it: with
    100,000 user IDs that walk took about 150 ms, a pause in answering every phone. The
    configuration holds no reference cycles, so nothing frozen waits on the collector to be
    freed; what it replaces is freed by reference counting as before."""
    gc.collect()  # what is already garbage goes first, never to be frozen
    gc.freeze()

API = "/api/v1/edge"
MAX_POLL_WAIT = 55  # the control plane's own cap on `wait`
MAX_BATCH = 5000  # the control plane's cap on events per batch
MAX_ADDRESSES = 32  # ... and on addresses per heartbeat
MAX_RETRY_AFTER = 300.0  # a Retry-After beyond this is taken as this
RETRYABLE_4XX = {401, 408, 429}
# Events whose batches may be applied in either order: failures count by their time, and
# heartbeats come only from the main sender, one at a time.
COMMUTING = frozenset({"auth_failure", "heartbeat"})


class Backoff:
    """Exponential backoff with jitter: each delay lies in [d/2, d], d doubling up to a cap.

    Half of the delay is kept so a fleet that lost the control plane at once comes back
    spread out, yet never hammers it with near-zero waits.
    """

    def __init__(self, initial=0.5, maximum=30.0, rng=None):
        self.initial, self.maximum = initial, maximum
        self._rng = rng or random.Random()
        self._next = initial

    def reset(self):
        self._next = self.initial

    def delay(self):
        ceiling = self._next
        self._next = min(self._next * 2, self.maximum)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


class _Refused(Exception):
    """The control plane answered, but not with what was asked."""

    def __init__(self, status, message, retry_after=None):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.retry_after = status, message, retry_after


class _Gone(Exception):
    """410 from the change feed: what comes after our version is pruned."""


class _Broken(Exception):
    """A snapshot that did not arrive whole (no end record, wrong count, bad line)."""


class ControlPlaneLink:
    """Keeps ``core`` configured from the control plane at ``base_url`` and reports its
    events there, authenticated with the edge's ``token``.

    ``await run()`` until cancelled (or ``await stop()``); ``async with`` stops on exit.
    Every interval and backoff is a parameter so tests can run in milliseconds.
    """

    def __init__(self, core, base_url, token, *, state_path=None, client=None,
                 heartbeat_interval=10.0, poll_wait=25.0, events_interval=0.2,
                 batch_size=500, backoff_initial=0.5, backoff_max=30.0,
                 unauthorized_retry=60.0, save_interval=2.0, timeout=10.0,
                 snapshot_read_timeout=60.0, yield_every=1000, clock=time.time, rng=None):
        token = (token or "").strip()
        if not token:
            raise ValueError("an edge token is required")
        if not 0 <= poll_wait <= MAX_POLL_WAIT:
            raise ValueError(f"poll_wait must be within 0..{MAX_POLL_WAIT} seconds")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be within 1..{MAX_BATCH}")
        self.core = core
        self.base_url = base_url.rstrip("/")
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.heartbeat_interval, self.poll_wait = heartbeat_interval, poll_wait
        self.events_interval, self.batch_size = events_interval, batch_size
        self.unauthorized_retry, self.save_interval = unauthorized_retry, save_interval
        self._timeout = httpx.Timeout(timeout)
        # The long-poll legitimately stays silent for `wait`; only beyond that is it lost.
        self._poll_timeout = httpx.Timeout(timeout, read=poll_wait + max(5.0, timeout))
        self._snapshot_timeout = httpx.Timeout(timeout, read=snapshot_read_timeout)
        self._yield_every = yield_every
        self._clock = clock
        rng = rng or random.Random()
        self._config_backoff = Backoff(backoff_initial, backoff_max, rng)
        self._events_backoff = Backoff(backoff_initial, backoff_max, rng)

        self._need_snapshot = True
        self._reloads = {}  # trunk number -> version of its first reload entry not yet done
        self._batch = None  # the batch being delivered, kept as it is until it is
        self._posting = None  # the main sender's batch while its POST is out
        self._aside = None  # the batch of failures sent beside it, while its POST is out
        self._aside_done = asyncio.Event()
        self._aside_done.set()
        self._held = []  # batches sent aside that failed: sent again, as they were, first
        self._urgent = asyncio.Event()
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._writing = None  # the state file write in flight
        self._task = None
        self._state_loaded = False

        # Status, for metrics.
        self.connected = False
        self.last_applied_at = None
        self.latest_version = None  # the newest version the control plane told of
        self.snapshots_applied = 0
        self.changes_applied = 0
        self.batches_sent = 0
        self.events_sent = 0
        self.batches_dropped = 0
        self.events_dropped = 0
        self.unauthorized = False

    def __repr__(self):
        return f"<ControlPlaneLink {self.base_url} connected={self.connected}>"

    # --- status ---

    @property
    def feed_lag(self):
        """How many versions the control plane is ahead of what is applied (None: unknown)."""
        if self.latest_version is None:
            return None
        return max(0, self.latest_version - self.core.config.version)

    @property
    def applied_version(self):
        """The version the edge reports as applied. A reload counts as applied only once
        its tenant's snapshot is in, though config.version moved past its entry."""
        version = self.core.config.version
        if self._reloads:
            version = min(version, min(self._reloads.values()) - 1)
        return max(version, 0)

    def status(self):
        return {
            "connected": self.connected, "unauthorized": self.unauthorized,
            "applied_version": self.applied_version, "feed_lag": self.feed_lag,
            "last_applied_at": self.last_applied_at,
            "snapshots_applied": self.snapshots_applied,
            "changes_applied": self.changes_applied, "batches_sent": self.batches_sent,
            "events_sent": self.events_sent, "batches_dropped": self.batches_dropped,
            "events_dropped": self.events_dropped,
            "batch_pending": sum(len(b["events"]) for b in self._pending_batches()),
        }

    # --- running ---

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.stop()

    async def run(self):
        """Load the state file (unless done already), then follow the configuration and
        send events until cancelled."""
        if self._task is not None:
            raise RuntimeError("this link is running already")
        self._task = asyncio.current_task()
        try:
            if not self._state_loaded:
                await self.load_state()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_config(), name="sipedge.link.config")
                tasks.create_task(self._send_events(), name="sipedge.link.events")
                tasks.create_task(self._send_aside(), name="sipedge.link.events-aside")
                tasks.create_task(self._keep_state(), name="sipedge.link.state")
        finally:
            self._task = None
            await self._final_save()

    async def stop(self, flush_timeout=2.0):
        """Stop running, try once to deliver what events are left, save, close."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})
        await self._flush_events(flush_timeout)
        await self._final_save()
        if self._own_client:
            await self._client.aclose()

    aclose = stop

    # --- the state file ---

    async def load_state(self):
        """Serve the configuration saved on disk, if there is one that reads. Returns
        whether one was loaded. The shell may call this before opening its sockets."""
        self._state_loaded = True
        if self.state_path is None:
            return False
        try:
            config = await asyncio.to_thread(_read_state, self.state_path)
        except FileNotFoundError:
            _log(logging.INFO, "no state file; waiting for the control plane",
                 path=self.state_path)
            return False
        except Exception as exc:  # noqa: BLE001 - any damage means: not usable
            # Never the content in the log: it holds HA1 values.
            _log(logging.WARNING, "state file unreadable; ignored", path=self.state_path,
                 error=type(exc).__name__)
            return False
        self.core.replace_config(config, self._clock())
        _settled()
        _log(logging.INFO, "serving the configuration saved on disk", path=self.state_path,
             version=config.version, user_ids=len(config.identities))
        return True

    async def _keep_state(self):
        # Debounced: the first change is saved at once, then at most once per interval.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            began = time.monotonic()
            await self._save_state()
            # Serialising blocks the loop (and SIP with it): a large configuration is
            # saved less often, so saving never takes more than a twentieth of the time.
            await asyncio.sleep(max(self.save_interval, 20 * (time.monotonic() - began)))

    async def _save_state(self):
        if self.state_path is None:
            return
        await self._settle_write()
        try:
            # Serialised here in the loop: to_json shares the live dicts the loop mutates.
            data = json.dumps(self.core.config.to_json(), separators=(",", ":")).encode()
        except (TypeError, ValueError):
            log.error("the configuration does not serialise; state file not saved",
                      exc_info=True)
            return
        version = self.core.config.version
        self._writing = asyncio.ensure_future(
            asyncio.to_thread(_write_atomically, self.state_path, data))
        # Shielded: cancelling the run must not abandon a write midway; the final save
        # waits for it. _settle_write reports a failure.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._writing)
        if self._writing.exception() is None:
            _log(logging.DEBUG, "state file saved", path=self.state_path, version=version,
                 bytes=len(data))
        await self._settle_write()

    async def _settle_write(self):
        """Wait for the write in flight, if any; a failed one leaves the state dirty."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        await asyncio.wait({writing})
        exc = None if writing.cancelled() else writing.exception()
        if exc is not None:
            self._dirty.set()  # try again next interval
            _log(logging.ERROR, "could not save the state file", path=self.state_path,
                 error=_describe(exc))

    async def _final_save(self):
        await self._settle_write()
        if self._dirty.is_set():
            self._dirty.clear()
            await self._save_state()

    # --- configuration ---

    async def _follow_config(self):
        while True:
            pause = 0.0
            try:
                if self._need_snapshot:
                    await self._take_snapshot()
                    self._need_snapshot = False
                await self._apply_reloads()
                pause = await self._poll_changes()
                self._config_backoff.reset()
            except _Gone:
                _log(logging.WARNING, "change feed does not follow on from our version; "
                     "taking a new snapshot", version=self.core.config.version)
                self._need_snapshot = True
            except Exception as exc:  # noqa: BLE001 - whatever it was, keep serving
                pause = self._failed("configuration", exc, self._config_backoff)
                if not _expected(exc):
                    # A record we could not apply may have left part of a batch applied:
                    # start again from a whole snapshot.
                    self._need_snapshot = True
            if pause:
                await asyncio.sleep(pause)

    async def _take_snapshot(self, trunk_number=None):
        """Stream a snapshot (of one tenant, or everything) into the config; hand it to the
        core only if it arrived whole."""
        params = {"trunk_number": trunk_number} if trunk_number else None
        config = self.core.config
        count, begun, end = 0, None, None
        async with self._client.stream("GET", f"{self.base_url}{API}/snapshot", params=params,
                                       headers=self._headers,
                                       timeout=self._snapshot_timeout) as response:
            await self._check(response, streamed=True)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise _Broken("a snapshot line is not JSON") from None
                if begun is None:
                    if record.get("type") != "begin" or record.get("trunk_number") != trunk_number:
                        raise _Broken("the snapshot does not start with its begin record")
                    begun = record
                    # Replaces whatever a broken earlier snapshot left pending.
                    config.begin_snapshot(record["version"], trunk_number)
                    self._saw_version(record["version"])
                elif record.get("type") == "end":
                    end = record
                    break
                else:
                    config.add_snapshot_record(record)
                    count += 1
                    if count % self._yield_every == 0:
                        await asyncio.sleep(0)  # let SIP be served meanwhile
        if begun is None or end is None:
            raise _Broken(f"the snapshot ended after {count} records without its end record")
        if end.get("count") != count or end.get("version") != begun["version"]:
            raise _Broken(f"the snapshot's end record says {end.get('count')} records at "
                          f"version {end.get('version')}; got {count} at {begun['version']}")
        now = self._clock()
        self.core.snapshot_done(now)
        _settled()
        self._connected()
        self.last_applied_at = now
        self.snapshots_applied += 1
        if trunk_number is None:
            self._reloads.clear()  # a whole snapshot taken after them covers them all
        self._dirty.set()
        _log(logging.INFO, "snapshot applied", version=begun["version"], records=count,
             trunk_number=trunk_number)

    async def _apply_reloads(self):
        for trunk in list(self._reloads):
            await self._take_snapshot(trunk)
            self._reloads.pop(trunk, None)

    async def _poll_changes(self):
        """One long-poll; applies what came. Returns how long to pause before the next."""
        after = self.core.config.version
        started = time.monotonic()
        response = await self._client.get(
            f"{self.base_url}{API}/changes", params={"after": after, "wait": self.poll_wait},
            headers=self._headers, timeout=self._poll_timeout)
        await self._check(response, gone=True)
        try:
            body = response.json()
            latest, entries = body["version"], body["changes"]
        except (ValueError, KeyError, TypeError):
            raise _Broken("the change feed answered with something else than its JSON") from None
        self._connected()
        if latest < after:
            # Behind us: the control plane's feed started over (a restored database). Our
            # version means nothing there any more.
            _log(logging.WARNING, "control plane's version is behind ours", version=after,
                 latest=latest)
            raise _Gone()
        self._saw_version(latest)
        entries = [e for e in entries if e["version"] > after]
        for index, entry in enumerate(entries, 1):
            self.core.apply_change(entry, self._clock())
            if entry["kind"] == "reload":
                self._reloads.setdefault(entry["key"], entry["version"])
            if index % self._yield_every == 0:
                await asyncio.sleep(0)
        if entries:
            self.last_applied_at = self._clock()
            self.changes_applied += len(entries)
            self._dirty.set()
            _log(logging.DEBUG, "changes applied", count=len(entries),
                 version=self.core.config.version, latest=latest)
        await self._apply_reloads()
        retry_after = _retry_after(response)
        if retry_after is not None:
            return retry_after
        if body.get("more"):
            return 0.0
        if not entries and time.monotonic() - started < self.poll_wait / 2:
            # An empty answer long before the wait was up: something between us and the
            # control plane does not hold long-polls. Do not spin on it.
            return self._config_backoff.initial
        return 0.0

    def _saw_version(self, version):
        if self.latest_version is None or version > self.latest_version:
            self.latest_version = version

    # --- events ---

    async def _send_events(self):
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time()  # at once: tells the control plane we are up
        while True:
            try:
                if self._batch is None and self._held:
                    self._batch = self._held.pop(0)
                if self._batch is None:
                    if self._aside is not None and not _commutes(self._aside):
                        # Later events must not overtake it.
                        await self._aside_done.wait()
                        continue
                    # The heartbeat first: should it fail, no drained event is lost with it.
                    beat = self._heartbeat() if loop.time() >= next_heartbeat else None
                    room = self.batch_size - (beat is not None)
                    events = list(self.core.drain_events(room)) if room else []
                    if beat is not None:
                        events.append(beat)
                        next_heartbeat = loop.time() + self.heartbeat_interval
                    if not events:
                        await self._idle(max(0.0, min(self.events_interval,
                                                      next_heartbeat - loop.time())))
                        continue
                    self._batch = {"batch_id": uuid.uuid4().hex, "events": events}
                full = len(self._batch["events"]) >= self.batch_size
                pause = await self._deliver()
                if pause is None:
                    pause = 0.0 if full else self.events_interval
                    if pause:
                        await self._idle(pause)
                        continue
            except Exception as exc:  # noqa: BLE001 - keep the batch, keep serving
                pause = self._failed("events", exc, self._events_backoff)
            if pause:
                await asyncio.sleep(pause)

    def wake(self):
        """Events that must not wait for the next interval (authentication failures: the
        rest of the fleet should ban an attacker within milliseconds)."""
        self._wake.set()
        self._urgent.set()

    async def _send_aside(self):
        """Urgent events that come while the main sender waits for the answer to a batch of
        failures go out at once in a batch of their own, beside it. A batch that fails here
        is handed to the main sender, which sends it again, as it was, before new events."""
        while True:
            await self._urgent.wait()
            self._urgent.clear()
            posting = self._posting
            # Idle, the main sender takes the events itself at once (wake() woke it too).
            if posting is None or self._held or not _commutes(posting):
                continue
            events = list(self.core.drain_events(self.batch_size))
            if not events:
                continue
            batch = {"batch_id": uuid.uuid4().hex, "events": events}
            self._aside_done.clear()
            try:
                while batch is not None:
                    self._aside = batch
                    batch = await self._post(batch)
            except BaseException as exc:
                self._held.append(batch)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the final flush sends it
                self.connected = False
                _log(logging.WARNING, "control plane exchange failed; the batch goes again",
                     part="events", batch_id=batch["batch_id"], error=_describe(exc))
                self._wake.set()  # the main sender takes it on (and backs off if it fails)
            finally:
                self._aside = None
                self._aside_done.set()

    def _pending_batches(self):
        return [b for b in (self._batch, self._aside, *self._held) if b]

    async def _idle(self, seconds):
        # asyncio.timeout, not wait_for: no task of its own, so a wake resumes the sender
        # in the loop's next round.
        if not self._wake.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()

    def _heartbeat(self):
        addresses = [a for a in self.core.listen_addresses() if 0 < len(a) <= 64]
        return {"type": "heartbeat", "at": _iso(self._clock()),
                "applied_version": self.applied_version, "addresses": addresses[:MAX_ADDRESSES]}

    async def _deliver(self):
        """POST the current batch. Returns None when done with it (delivered or given up
        on), else how long to wait before sending the very same batch again."""
        self._posting = self._batch
        try:
            rest = await self._post(self._batch)
        finally:
            self._posting = None
        self._batch = rest
        return None if rest is None else 0.0

    async def _post(self, batch):
        """POST one batch. Returns None when done with it (delivered or given up on), or
        the batch to send next in its place (the rest of a batch some events of which were
        rejected). Raises when the very same batch must be sent again."""
        try:
            response = await self._client.post(f"{self.base_url}{API}/events", json=batch,
                                               headers=self._headers, timeout=self._timeout)
            await self._check(response)
        except _Refused as exc:
            if exc.status >= 500 or exc.status in RETRYABLE_4XX or exc.status < 400:
                raise
            self._connected()  # it answered; the batch is what is wrong
            return self._reject(batch, exc, response)
        self._connected()
        self._events_backoff.reset()
        self.batches_sent += 1
        self.events_sent += len(batch["events"])
        result = _json_or_none(response) or {}
        ignored = result.get("ignored")
        _log(logging.DEBUG, "event batch delivered", batch_id=batch["batch_id"],
             events=len(batch["events"]), duplicate=bool(result.get("duplicate")),
             ignored=len(ignored) if isinstance(ignored, list) else 0)
        return None

    def _reject(self, batch, exc, response):
        """A 4xx: sending the batch again cannot help. When the 422 names the bad events,
        only they are dropped and the rest goes again under a new batch id (a 422 batch was
        not applied at all); otherwise the whole batch is dropped."""
        events = batch["events"]
        bad = _bad_event_indexes(response, len(events)) if exc.status == 422 else set()
        if bad and len(bad) < len(events):
            rest = {"batch_id": uuid.uuid4().hex,
                    "events": [e for i, e in enumerate(events) if i not in bad]}
            self.events_dropped += len(bad)
            _log(logging.ERROR, "control plane rejected events; dropped them, sending the rest",
                 status=exc.status, batch_id=batch["batch_id"], dropped=len(bad),
                 types=sorted({events[i].get("type", "?") for i in bad}), error=exc.message)
            return rest
        self.batches_dropped += 1
        self.events_dropped += len(events)
        _log(logging.ERROR, "control plane rejected an event batch; dropped it",
             status=exc.status, batch_id=batch["batch_id"], events=len(events),
             error=exc.message)
        return None

    async def _flush_events(self, timeout):
        """One attempt, within `timeout`, at the batch in flight and what is queued."""
        if timeout <= 0:
            return
        try:
            async with asyncio.timeout(timeout):
                for _ in range(2 + len(self._held)):
                    if self._batch is None and self._held:
                        self._batch = self._held.pop(0)
                    if self._batch is None:
                        events = list(self.core.drain_events(self.batch_size))
                        if not events:
                            return
                        self._batch = {"batch_id": uuid.uuid4().hex, "events": events}
                    await self._deliver()
                    if self._batch is not None:
                        return
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            _log(logging.WARNING, "events left undelivered at stop",
                 events=sum(len(b["events"]) for b in self._pending_batches()),
                 error=_describe(exc))

    # --- answers ---

    async def _check(self, response, *, streamed=False, gone=False):
        if response.is_success:
            return
        if gone and response.status_code == 410:
            raise _Gone()
        if streamed:
            await response.aread()
        body = _json_or_none(response)
        message = body.get("message") if isinstance(body, dict) else None
        raise _Refused(response.status_code, str(message or response.reason_phrase)[:500],
                       _retry_after(response))

    def _connected(self):
        if not self.connected:
            _log(logging.INFO, "control plane reachable", url=self.base_url)
        if self.unauthorized:
            _log(logging.INFO, "control plane accepts the edge token again")
        self.connected, self.unauthorized = True, False

    def _failed(self, what, exc, backoff):
        """Note a failed exchange and log it; returns the pause before trying again."""
        self.connected = False
        if isinstance(exc, _Refused) and exc.status == 401:
            self.unauthorized = True
            # Loud and repeated: the edge serves its last configuration but learns nothing
            # new and reports nothing until someone enrolls it again.
            _log(logging.ERROR, "control plane refuses the edge token (revoked?); serving "
                 "the last configuration, retrying", part=what, delay=self.unauthorized_retry)
            return self.unauthorized_retry
        delay = backoff.delay()
        if isinstance(exc, _Refused) and exc.retry_after is not None:
            delay = exc.retry_after
        if _expected(exc):
            _log(logging.WARNING, "control plane exchange failed; retrying", part=what,
                 error=_describe(exc), delay=round(delay, 3))
        else:
            log.error("unexpected error in the link (%s); retrying in %.3f s", what, delay,
                      exc_info=True)
        return delay


def _commutes(batch):
    """May this batch be applied before or after another? (see COMMUTING)"""
    return all(e.get("type") in COMMUTING for e in batch["events"])


def _expected(exc):
    """Failures of the network or of the control plane, as opposed to bugs of ours."""
    return isinstance(exc, (httpx.HTTPError, _Refused, _Broken))


def _read_state(path):
    with open(path, "rb") as f:
        return EdgeConfig.from_json(json.load(f))


def _write_atomically(path, data):
    """Write `data` to `path` so that a crash leaves either the old file or the new one:
    a temporary file in the same folder (mode 0600: HA1 values), fsync, rename, fsync the
    folder."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # not every platform lets a folder be opened
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _retry_after(response):
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _bad_event_indexes(response, size):
    """The indexes of the events a 422 names ({"errors": {"json": {"events": {"3": ...}}}})."""
    body = _json_or_none(response)
    try:
        fields = body["errors"]["json"]
        indexes = {int(i) for i in fields.get("events", {})}
        # Rules the service checks name fields "events.7.address".
        indexes |= {int(name.split(".")[1]) for name in fields
                    if name.startswith("events.") and name.split(".")[1].isdigit()}
    except (TypeError, KeyError, ValueError, AttributeError, IndexError):
        return set()
    return indexes if indexes and all(0 <= i < size for i in indexes) else set()


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def _iso(timestamp):
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat()


def _describe(exc):
    # httpx messages name the URL, never the headers: no token in them.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _log(level, message, **fields):
    """One event per line: the message, then key=value; the fields also ride on the record
    (record.fields) for a structured formatter."""
    if log.isEnabledFor(level):
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        log.log(level, "%s%s%s", message, " " if text else "", text,
                extra={"fields": fields})
