"""The link against a control plane played by httpx.MockTransport: no sockets, no server.

Every interval and backoff is shrunk to milliseconds; each test runs the link until what it
waits for has happened (or fails after a short timeout) and then stops it.
"""

import asyncio
import collections
import inspect
import json
import logging
import os
import random
import stat
import time

import httpx
import pytest

from controlplane.api.edge_feed import BatchSchema
from sipedge.config import EdgeConfig
from sipedge.link import Backoff, ControlPlaneLink

TOKEN = "edge-token-SECRET-1234"
BASE = "http://cp.test"
HA1_MD5 = "5ecre7" * 5 + "aa"


def ext(number="101", trunk="12345"):
    return {"trunk_number": trunk, "number": number, "realm": "r", "ring_mode": "home",
            "identities": [{"user_id": f"{trunk}{number}", "endpoint": "home",
                            "ha1_md5": HA1_MD5, "ha1_sha256": "b" * 64}]}


def ext_record(number="101", trunk="12345"):
    return {"kind": "extension", "key": f"{trunk}{number}", "op": "upsert",
            "payload": ext(number, trunk)}


def tenant_record(trunk="12345"):
    return {"kind": "tenant", "key": trunk, "op": "upsert", "payload": {"trunk_number": trunk}}


def change(version, kind, key, payload=None, op="upsert"):
    return {"version": version, "kind": kind, "key": key, "op": op, "payload": payload}


def ndjson(version, records, *, trunk=None, end=True, count=None):
    lines = [{"type": "begin", "version": version, "trunk_number": trunk}, *records]
    if end:
        lines.append({"type": "end", "version": version,
                      "count": len(records) if count is None else count})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def changes(version, entries, more=False, headers=None):
    return httpx.Response(200, json={"version": version, "changes": entries, "more": more},
                          headers=headers)


def auth_failure(address):
    return {"type": "auth_failure", "at": "2026-11-28T12:00:00+00:00", "address": address,
            "user_id": "12345101", "reason": "wrong_password"}


class FakeCore:
    """The interface the link needs of the edge core, and a record of what it was given."""

    def __init__(self, events=()):
        self.config = EdgeConfig()
        self.queue = collections.deque(events)
        self.applied = []  # change entries, in the order given
        self.snapshots = []  # (version, user IDs) after each snapshot_done
        self.replaced = []

    def snapshot_done(self, now):
        self.config.end_snapshot()
        self.snapshots.append((self.config.version, set(self.config.identities)))

    def apply_change(self, entry, now):
        self.applied.append(entry)
        self.config.apply_change(entry)

    def replace_config(self, config, now):
        self.replaced.append(config)
        self.config = config

    def drain_events(self, limit):
        return [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]

    def listen_addresses(self):
        return ["udp:192.0.2.1:5060", "tcp:192.0.2.1:5060"]


class ControlPlane:
    """Plays the edge endpoints. Each endpoint answers from its script first (a Response, an
    exception to raise, or a function of the request), then as a healthy control plane:
    the default snapshot, an empty long-poll after `wait`, a 200 for every batch."""

    def __init__(self, version=10, records=(ext_record(),)):
        self.version = version
        self.records = list(records)
        self.script = {"snapshot": [], "changes": [], "events": []}
        self.log = []  # (time, endpoint, request) of every request, in order

    def requests(self, endpoint):
        return [r for _, e, r in self.log if e == endpoint]

    def params(self, endpoint, name):
        return [r.url.params.get(name) for r in self.requests(endpoint)]

    def posted(self):
        return [json.loads(r.content) for r in self.requests("events")]

    async def __call__(self, request):
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.log.append((time.monotonic(), endpoint, request))
        script = self.script[endpoint]
        if script:
            answer = script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            if callable(answer):
                answer = answer(request)
                if inspect.isawaitable(answer):
                    answer = await answer
            if isinstance(answer, bytes):
                answer = httpx.Response(200, content=answer)
            return answer
        if endpoint == "snapshot":
            return httpx.Response(200, content=ndjson(self.version, self.records))
        if endpoint == "changes":
            await asyncio.sleep(float(request.url.params["wait"]))
            return changes(self.version, [])
        return httpx.Response(200, json={"duplicate": False, "applied": 1, "ignored": []})


def make_link(core, cp, **options):
    client = httpx.AsyncClient(transport=httpx.MockTransport(cp))
    settings = dict(heartbeat_interval=60.0, poll_wait=0.05, events_interval=0.005,
                    backoff_initial=0.01, backoff_max=0.04, unauthorized_retry=0.1,
                    save_interval=0.01, rng=random.Random(5))
    return ControlPlaneLink(core, BASE, TOKEN, client=client, **{**settings, **options})


def drive(link, until, timeout=1.5, during=None):
    """Run the link until `until()` holds (fail after `timeout`), then stop it. `during`,
    a coroutine function, runs beside it."""
    async def main():
        task = asyncio.create_task(link.run())
        side = asyncio.create_task(during()) if during else None
        try:
            async with asyncio.timeout(timeout):
                while not until():
                    if task.done():
                        task.result()
                        pytest.fail("the link stopped by itself")
                    await asyncio.sleep(0.002)
        finally:
            if side:
                side.cancel()
            await link.stop(flush_timeout=0)

    asyncio.run(main())


def write_state(path, records, version):
    config = EdgeConfig()
    config.begin_snapshot(version)
    for record in records:
        config.add_snapshot_record(record)
    config.end_snapshot()
    path.write_text(json.dumps(config.to_json()))


# --- configuration ---


def test_snapshot_then_changes_apply_in_order():
    cp, core = ControlPlane(version=10, records=[tenant_record(), ext_record("101")]), FakeCore()
    cp.script["changes"] = [
        changes(13, [change(11, "extension", "12345102", ext("102")),
                     change(12, "extension", "12345101", op="delete")], more=True),
        changes(13, [change(13, "extension", "12345103", ext("103"))]),
    ]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.requests("changes")) >= 3)
    assert core.snapshots == [(10, {"12345101"})]
    assert [e["version"] for e in core.applied] == [11, 12, 13]
    assert set(core.config.identities) == {"12345102", "12345103"}
    assert cp.params("changes", "after")[:3] == ["10", "12", "13"]
    assert link.connected and link.feed_lag == 0 and link.last_applied_at is not None
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for _, _, r in cp.log)


async def _dropped_stream():
    yield ndjson(10, [ext_record("102")], end=False)
    raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("broken", [
    ndjson(10, [ext_record("102"), ext_record("103")], end=False),
    ndjson(10, [ext_record("102"), ext_record("103")], count=3),
    ndjson(10, [ext_record("102")])[:-30],
    lambda request: httpx.Response(200, content=_dropped_stream()),
], ids=["no end record", "count mismatch", "cut mid-line", "connection dropped"])
def test_truncated_snapshot_is_not_applied(broken):
    cp, core = ControlPlane(version=11, records=[ext_record("101")]), FakeCore()
    cp.script["snapshot"] = [broken]
    drive(make_link(core, cp), lambda: core.snapshots)
    assert len(cp.requests("snapshot")) == 2
    assert core.snapshots == [(11, {"12345101"})]
    assert cp.params("changes", "after")[0] == "11"


def test_snapshot_yields_to_the_loop_while_it_streams():
    ticks, seen = [0], []

    class Watched(EdgeConfig):
        def add_snapshot_record(self, record):
            seen.append(ticks[0])
            super().add_snapshot_record(record)

    async def ticker():
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    records = [{"kind": "trusted_network", "key": str(i), "payload": {"cidr": "192.0.2.0/24"}}
               for i in range(100)]
    cp, core = ControlPlane(records=records), FakeCore()
    core.config = Watched()
    drive(make_link(core, cp, yield_every=10), lambda: core.snapshots, during=ticker)
    assert len(seen) == 100 and len(set(seen)) >= 10


def test_gone_takes_a_new_snapshot():
    cp, core = ControlPlane(), FakeCore()
    cp.script["snapshot"] = [ndjson(10, [ext_record("101")]), ndjson(20, [ext_record("102")])]
    cp.script["changes"] = [httpx.Response(410, json={"code": 410, "message": "gone"})]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.requests("changes")) >= 2)
    assert core.snapshots == [(10, {"12345101"}), (20, {"12345102"})]
    assert cp.params("changes", "after")[:2] == ["10", "20"]


def test_a_feed_that_restarted_below_our_version_takes_a_new_snapshot():
    cp, core = ControlPlane(), FakeCore()
    cp.script["snapshot"] = [ndjson(50, [ext_record("101")]), ndjson(3, [ext_record("102")])]
    cp.script["changes"] = [changes(3, [])]
    drive(make_link(core, cp), lambda: len(core.snapshots) == 2)
    assert core.config.version == 3 and set(core.config.identities) == {"12345102"}


def test_reload_entry_fetches_the_tenant_snapshot():
    cp = ControlPlane(records=[tenant_record("12345"), tenant_record("54321"),
                               ext_record("101", "12345"), ext_record("101", "54321")])
    cp.script["changes"] = [changes(11, [change(11, "reload", "12345")])]
    cp.script["snapshot"] = [ndjson(10, cp.records),
                             ndjson(11, [tenant_record("12345"), ext_record("102", "12345")],
                                    trunk="12345")]
    core = FakeCore()
    link = make_link(core, cp)
    drive(link, lambda: len(core.snapshots) == 2)
    assert cp.params("snapshot", "trunk_number") == [None, "12345"]
    assert set(core.config.identities) == {"12345102", "54321101"}
    assert core.config.version == 11 and link.applied_version == 11


def test_reload_counts_as_applied_only_once_its_snapshot_is_in():
    cp = ControlPlane(records=[tenant_record(), ext_record("101")])
    cp.script["changes"] = [changes(11, [change(11, "reload", "12345")])]
    cp.script["snapshot"] = [ndjson(10, cp.records), httpx.Response(503), httpx.ReadError("x"),
                             ndjson(11, [ext_record("102")], trunk="12345")]
    core = FakeCore()
    link = make_link(core, cp, heartbeat_interval=0.005, backoff_initial=0.05)
    drive(link, lambda: any(e["applied_version"] == 11 for b in cp.posted()
                            for e in b["events"]))
    done_at = [t for t, e, r in cp.log if e == "snapshot"][3]
    early = [json.loads(r.content) for t, e, r in cp.log if e == "events" and t < done_at]
    assert early and all(e["applied_version"] <= 10 for b in early for e in b["events"])
    assert set(core.config.identities) == {"12345102"}


def test_unreachable_control_plane_keeps_the_saved_configuration_and_retries(tmp_path):
    state = tmp_path / "state.json"
    write_state(state, [ext_record("101")], version=7)
    saved = state.read_bytes()
    cp, core = ControlPlane(), FakeCore()
    cp.script["snapshot"] = [httpx.ConnectError("refused")] * 6
    cp.script["events"] = [httpx.ConnectError("refused")] * 100
    link = make_link(core, cp, state_path=state, backoff_max=0.2)
    drive(link, lambda: len(cp.requests("snapshot")) >= 6)
    assert len(core.replaced) == 1 and core.snapshots == []
    assert core.config.version == 7 and set(core.config.identities) == {"12345101"}
    assert not link.connected and link.status()["batch_pending"] == 1
    at = [t for t, e, _ in cp.log if e == "snapshot"]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert gaps[4] > 2 * gaps[0]  # backing off, not hammering
    assert state.read_bytes() == saved  # nothing new to save


def test_state_file_is_written_atomically_mode_0600_and_reloaded(tmp_path):
    state = tmp_path / "state.json"
    cp, core = ControlPlane(records=[ext_record("101")]), FakeCore()
    cp.script["changes"] = [changes(11, [change(11, "extension", "12345102", ext("102"))])]

    def saved_version():
        try:
            return json.loads(state.read_text())["version"]
        except (OSError, ValueError):
            return None

    drive(make_link(core, cp, state_path=state), lambda: saved_version() == 11)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind

    unreachable = ControlPlane()
    fresh = FakeCore()
    loaded = asyncio.run(make_link(fresh, unreachable, state_path=state).load_state())
    assert loaded and unreachable.log == []
    assert set(fresh.config.identities) == {"12345101", "12345102"}
    assert fresh.config.version == 11
    assert fresh.config.identity("12345101").ha1["MD5"] == HA1_MD5


def test_a_failed_write_leaves_the_previous_state_file(tmp_path, monkeypatch, caplog):
    state = tmp_path / "state.json"
    write_state(state, [ext_record("101")], version=7)
    saved = state.read_bytes()
    failures = []

    def full_disk(fd):
        failures.append(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    cp, core = ControlPlane(version=10, records=[ext_record("102")]), FakeCore()
    with caplog.at_level(logging.ERROR, logger="sipedge.link"):
        drive(make_link(core, cp, state_path=state), lambda: len(failures) >= 2)
    assert state.read_bytes() == saved
    assert os.listdir(tmp_path) == ["state.json"]
    assert "could not save the state file" in caplog.text


def test_unreadable_state_file_is_ignored(tmp_path):
    state = tmp_path / "state.json"
    state.write_text('{"version": 3, "tenants": {')
    cp, core = ControlPlane(), FakeCore()
    drive(make_link(core, cp, state_path=state), lambda: core.snapshots)
    assert core.replaced == [] and core.snapshots == [(10, {"12345101"})]


# --- events ---


def test_a_failed_batch_is_sent_again_whole_with_its_batch_id():
    core = FakeCore([auth_failure("192.0.2.7"), auth_failure("192.0.2.8")])

    def failing(request):
        core.queue.append(auth_failure("192.0.2.9"))  # arrives while the batch is stuck
        return httpx.Response(503)

    cp = ControlPlane()
    cp.script["events"] = [failing, httpx.ConnectError("refused"),
                           httpx.ReadTimeout("slow")]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.posted()) >= 5)
    posted = cp.posted()
    first = posted[0]
    assert [e.get("address") for e in first["events"]] == ["192.0.2.7", "192.0.2.8", None]
    assert posted[1] == first and posted[2] == first and posted[3] == first
    assert posted[4]["batch_id"] != first["batch_id"]
    assert [e["address"] for e in posted[4]["events"]] == ["192.0.2.9"]
    delivered = {b["batch_id"]: b for b in posted[3:]}  # the ones answered 200
    addresses = [e.get("address") for b in delivered.values() for e in b["events"]]
    assert sorted(filter(None, addresses)) == ["192.0.2.7", "192.0.2.8", "192.0.2.9"]
    assert link.batches_sent >= 2 and link.events_sent >= 4


def test_a_rejected_batch_is_dropped():
    core = FakeCore([auth_failure("192.0.2.7")])

    def rejecting(request):
        core.queue.append(auth_failure("192.0.2.8"))
        return httpx.Response(422, json={"code": 422, "message": "invalid input: batch_id",
                                         "errors": {"json": {"batch_id": ["too long"]}}})

    cp = ControlPlane()
    cp.script["events"] = [rejecting]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.posted()) >= 2)
    first, second = cp.posted()[:2]
    assert second["batch_id"] != first["batch_id"]
    assert [e["address"] for e in second["events"]] == ["192.0.2.8"]
    assert (link.batches_dropped, link.events_dropped) == (1, 2)  # the event and a heartbeat


def test_a_422_naming_events_drops_only_those():
    bad = {**auth_failure("192.0.2.8"), "reason": "nope"}
    core = FakeCore([auth_failure("192.0.2.7"), bad, auth_failure("192.0.2.9")])
    cp = ControlPlane()
    cp.script["events"] = [httpx.Response(422, json={
        "code": 422, "message": "invalid input",
        "errors": {"json": {"events": {"1": {"reason": ["Must be one of: ..."]}}}}})]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.posted()) >= 2)
    first, second = cp.posted()[:2]
    assert second["batch_id"] != first["batch_id"]
    assert second["events"] == [e for i, e in enumerate(first["events"]) if i != 1]
    assert (link.batches_dropped, link.events_dropped) == (0, 1)


def test_a_422_from_the_service_naming_events_by_dotted_path_drops_only_those():
    core = FakeCore([auth_failure("192.0.2.7"), auth_failure("fe80::1%eth0")])
    cp = ControlPlane()
    cp.script["events"] = [httpx.Response(422, json={
        "code": 422, "message": "invalid input",
        "errors": {"json": {"events.1.address": ["not an IP address"]}}})]
    link = make_link(core, cp)
    drive(link, lambda: len(cp.posted()) >= 2)
    assert [e["address"] for e in cp.posted()[1]["events"] if e["type"] == "auth_failure"] \
        == ["192.0.2.7"]
    assert (link.batches_dropped, link.events_dropped) == (0, 1)


def test_heartbeats_carry_the_applied_version():
    async def later(request):
        await asyncio.sleep(0.1)  # time for heartbeats at version 10
        return changes(11, [change(11, "extension", "12345102", ext("102"))])

    cp, core = ControlPlane(version=10), FakeCore()
    cp.script["changes"] = [later]
    drive(make_link(core, cp, heartbeat_interval=0.01),
          lambda: any(e["applied_version"] == 11 for b in cp.posted() for e in b["events"]))
    beats = [e for b in cp.posted() for e in b["events"]]
    assert all(e["type"] == "heartbeat" for e in beats)
    versions = [e["applied_version"] for e in beats]
    assert versions == sorted(versions) and 10 in versions
    assert beats[-1]["addresses"] == core.listen_addresses()
    for batch in cp.posted():
        BatchSchema().load(batch)  # what the control plane accepts


def test_full_batches_go_out_without_waiting():
    core = FakeCore([auth_failure(f"192.0.2.{i}") for i in range(25)])
    cp = ControlPlane()
    link = make_link(core, cp, batch_size=10, events_interval=10.0)
    drive(link, lambda: link.events_sent >= 26)
    assert [len(b["events"]) for b in cp.posted()[:3]] == [10, 10, 6]


def test_a_wake_sends_queued_events_without_waiting_for_the_interval():
    core, cp = FakeCore(), ControlPlane()
    link = make_link(core, cp, events_interval=30.0)

    async def attack():
        while link.batches_sent < 1:  # the first heartbeat is out; now the link idles
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        core.queue.append(auth_failure("192.0.2.66"))
        link.wake()

    drive(link, lambda: link.events_sent >= 2, timeout=2.0, during=attack)
    assert cp.posted()[1]["events"][0]["address"] == "192.0.2.66"


def registration(user_id="12345101"):
    return {"type": "registration", "at": "2026-11-28T12:00:00+00:00", "user_id": user_id,
            "contact": f"<sip:{user_id}@192.0.2.9:5060>", "source_address": "192.0.2.9",
            "source_port": 5060, "transport": "udp", "expires": 60}


def held_answer(release):
    """An events answer that waits for `release` (the control plane deciding slowly)."""
    async def answer(_request):
        await release.wait()
        return httpx.Response(200, json={"duplicate": False, "applied": 1, "ignored": []})
    return answer


def test_a_failure_while_a_batch_of_failures_is_on_its_way_goes_out_beside_it():
    core, cp = FakeCore(), ControlPlane()
    link = make_link(core, cp, events_interval=30.0)
    release = asyncio.Event()

    async def attack():
        while link.batches_sent < 1:  # the first heartbeat is out; now the link idles
            await asyncio.sleep(0.002)
        cp.script["events"] = [held_answer(release)]
        core.queue.append(auth_failure("192.0.2.66"))
        link.wake()
        while len(cp.posted()) < 2:
            await asyncio.sleep(0.002)
        core.queue.append(auth_failure("192.0.2.66"))  # the deciding one, say
        link.wake()
        while len(cp.posted()) < 3:
            await asyncio.sleep(0.002)
        release.set()

    # The second failure is posted while the first batch still waits for its answer.
    drive(link, lambda: link.events_sent >= 3, timeout=2.0, during=attack)
    posted = cp.posted()
    assert [len(b["events"]) for b in posted[1:3]] == [1, 1]
    assert posted[1]["batch_id"] != posted[2]["batch_id"]
    assert link.batches_sent == 3 and link.status()["batch_pending"] == 0


def test_nothing_goes_beside_a_batch_whose_order_matters():
    core, cp = FakeCore(), ControlPlane()
    link = make_link(core, cp, events_interval=30.0)
    release = asyncio.Event()

    async def attack():
        while link.batches_sent < 1:
            await asyncio.sleep(0.002)
        cp.script["events"] = [held_answer(release)]
        core.queue.append(registration())
        link.wake()
        while len(cp.posted()) < 2:
            await asyncio.sleep(0.002)
        core.queue.append(auth_failure("192.0.2.66"))
        link.wake()
        await asyncio.sleep(0.05)
        assert len(cp.posted()) == 2  # the failure waits for the registration's answer
        release.set()

    drive(link, lambda: link.events_sent >= 3, timeout=2.0, during=attack)
    assert [b["events"][0]["type"] for b in cp.posted()[1:]] == ["registration",
                                                                  "auth_failure"]


def test_a_batch_sent_beside_that_failed_goes_again_as_it_was():
    core, cp = FakeCore(), ControlPlane()
    link = make_link(core, cp, events_interval=30.0)
    release = asyncio.Event()

    async def attack():
        while link.batches_sent < 1:
            await asyncio.sleep(0.002)
        cp.script["events"] = [held_answer(release), httpx.Response(503)]
        core.queue.append(auth_failure("192.0.2.66"))
        link.wake()
        while len(cp.posted()) < 2:
            await asyncio.sleep(0.002)
        core.queue.append(auth_failure("192.0.2.67"))
        link.wake()
        while len(cp.posted()) < 3:  # the one beside it, answered 503
            await asyncio.sleep(0.002)
        core.queue.append(registration())  # later: must go after the failed batch
        release.set()

    drive(link, lambda: link.events_sent >= 3, timeout=2.0, during=attack)
    posted = cp.posted()
    assert posted[3] == posted[2]  # the same id, the same events
    assert [b["events"][0]["type"] for b in posted[4:]] in ([], ["registration"])


def test_stop_delivers_what_is_queued():
    core, cp = FakeCore(), ControlPlane()
    link = make_link(core, cp, events_interval=10.0)

    async def main():
        task = asyncio.create_task(link.run())
        while not cp.posted():  # the first heartbeat
            await asyncio.sleep(0.002)
        core.queue.append({"type": "unregistration", "at": "2026-11-28T12:00:00+00:00",
                           "user_id": "12345101"})
        await link.stop(flush_timeout=1.0)
        assert task.done()

    asyncio.run(main())
    assert cp.posted()[-1]["events"][0]["type"] == "unregistration"


# --- the control plane's answers ---


def test_revoked_token_is_logged_and_retried_slowly(caplog):
    cp, core = ControlPlane(), FakeCore()
    seen = []  # the link's status as the third attempt arrives

    def revoked(request):
        if len(cp.requests("snapshot")) == 3:
            seen.append((link.unauthorized, link.connected))
        return httpx.Response(401, json={"code": 401, "message": "a valid edge token is needed"})

    cp.script["snapshot"] = [revoked] * 3
    cp.script["events"] = [httpx.Response(401, json={"code": 401, "message": "no"})] * 3
    link = make_link(core, cp, unauthorized_retry=0.1)
    with caplog.at_level(logging.INFO, logger="sipedge.link"):
        drive(link, lambda: core.snapshots)
    assert seen == [(True, False)]
    at = [t for t, e, _ in cp.log if e == "snapshot"]
    assert len(at) == 4 and min(b - a for a, b in zip(at, at[1:])) >= 0.1
    assert any(r.levelno == logging.ERROR and "token" in r.getMessage() for r in caplog.records)
    assert not link.unauthorized and link.connected


def test_retry_after_pauses_the_next_poll():
    cp, core = ControlPlane(), FakeCore()
    cp.script["changes"] = [changes(10, [], headers={"Retry-After": "0.3"})]
    drive(make_link(core, cp), lambda: len(cp.requests("changes")) >= 2)
    first, second = [t for t, e, _ in cp.log if e == "changes"][:2]
    assert second - first >= 0.3


def test_feed_lag_counts_the_versions_not_yet_applied():
    cp, core = ControlPlane(), FakeCore()
    cp.script["changes"] = [changes(15, [change(11, "extension", "12345102", ext("102"))],
                                    more=True)] + [httpx.Response(503)] * 50
    link = make_link(core, cp)
    drive(link, lambda: len(cp.requests("changes")) >= 3)
    assert core.config.version == 11 and link.feed_lag == 4 and not link.connected
    assert link.status()["feed_lag"] == 4


def test_secrets_never_reach_the_log(tmp_path, caplog):
    state = tmp_path / "state.json"
    write_state(state, [ext_record("101")], version=7)
    cp, core = ControlPlane(records=[ext_record("101")]), FakeCore([auth_failure("192.0.2.7")])
    cp.script["changes"] = [changes(11, [change(11, "extension", "12345102", ext("102"))]),
                            httpx.Response(401, json={"message": "a valid edge token"}),
                            httpx.ConnectError("refused")]
    cp.script["events"] = [httpx.Response(500), httpx.Response(422, json={"message": "bad"})]
    with caplog.at_level(logging.DEBUG):
        drive(make_link(core, cp, state_path=state), lambda: len(cp.requests("changes")) >= 4)
    assert "control plane" in caplog.text  # it did log
    assert TOKEN not in caplog.text and HA1_MD5 not in caplog.text


# --- pieces ---


def test_backoff_doubles_with_jitter_up_to_its_cap():
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.delay() <= 0.5
