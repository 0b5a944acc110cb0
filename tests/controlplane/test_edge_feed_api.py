"""The edges' link over HTTP: enrollment, tokens, snapshot, long-poll, events, status."""

import json
import threading
import time

import pytest

from tenants.feed import current_version
from tenants.scope import platform_principal
from tests.helpers import ApiClient


@pytest.fixture
def edge(api):
    created = api.ok(api.post("/edges", {"name": "edge-1"}), 201)
    return api.as_(created["token"])


def test_enrollment_shows_the_token_once(api):
    created = api.ok(api.post("/edges", {"name": "edge-1"}), 201)
    assert created["token"].startswith("tle_")
    listed = api.ok(api.get("/edges"), 200)
    assert "token" not in listed[0] and listed[0]["name"] == "edge-1"
    assert api.post("/edges", {"name": "edge-1"}).status_code == 409


def test_only_the_platform_enrolls_edges(api):
    reseller = api.reseller()
    key = api.key("reseller", reseller_id=reseller["id"])
    assert api.as_(key).post("/edges", {"name": "e"}).status_code == 403
    assert api.as_(key).get("/edges").status_code == 403


def test_edge_tokens_reach_only_edge_endpoints_and_keys_never_do(api, edge):
    assert edge.get("/tenants").status_code == 401
    assert api.get("/edge/changes?after=0&wait=0").status_code == 401
    assert edge.get("/edge/changes?after=0&wait=0").status_code == 200
    assert api.as_("tle_nope.nope").get("/edge/changes?after=0&wait=0").status_code == 401


def test_revoked_edge_is_refused(api, edge):
    [listed] = api.ok(api.get("/edges"), 200)
    assert api.delete(f"/edges/{listed['id']}").status_code == 204
    assert edge.get("/edge/changes?after=0&wait=0").status_code == 401


def test_snapshot_is_ndjson_with_the_version(api, edge):
    tenant = api.tenant()
    api.extension(tenant["trunk_number"])
    response = edge.get("/edge/snapshot")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    records = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert records[0]["type"] == "begin" and records[-1]["type"] == "end"
    assert records[-1]["count"] == len(records) - 2
    [ext] = [r for r in records if r.get("kind") == "extension"]
    assert ext["payload"]["identities"][0]["user_id"] == tenant["trunk_number"] + "101"
    changes = api.ok(edge.get(f"/edge/changes?after={records[0]['version']}&wait=0"), 200)
    assert changes["changes"] == []


def test_long_poll_wakes_on_a_change(api, app, edge):
    tenant = api.tenant()
    api.extension(tenant["trunk_number"])
    start = api.ok(edge.get("/edge/changes?after=0&wait=0"), 200)["version"]
    result = {}

    def poll():
        client = ApiClient(app.test_client(), edge.token)
        began = time.monotonic()
        result["response"] = client.get(f"/edge/changes?after={start}&wait=40")
        result["seconds"] = time.monotonic() - began

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)
    api.ok(api.post(f"/tenants/{tenant['trunk_number']}/extensions/101/sip-credentials/rotate"))
    waiter.join(timeout=35)
    assert not waiter.is_alive()
    body = result["response"].get_json()
    # Without a wake-up the poll could only have answered empty, after 40 s.
    assert [c["key"] for c in body["changes"]] == [tenant["trunk_number"] + "101"]
    assert result["seconds"] < 40


def test_a_version_too_old_answers_410(api, app, edge):
    api.tenant()
    from tenants import feed
    from tenants.models import utcnow
    import datetime as dt

    with app.extensions["trunkline"]["sessions"]() as s:
        feed.prune(s, now=utcnow() + dt.timedelta(days=30))
    response = edge.get("/edge/changes?after=0&wait=0")
    assert response.status_code == 410 and "snapshot" in response.get_json()["message"]


@pytest.mark.parametrize("query", ["", "after=-1", "after=x", "after=0&wait=999", "after=0&limit=0"])
def test_bad_change_queries_are_422(edge, query):
    assert edge.get(f"/edge/changes?{query}").status_code == 422


def test_events_register_both_endpoints_for_the_sip_status_screen(api, edge):
    tenant = api.tenant()
    trunk = tenant["trunk_number"]
    api.extension(trunk)
    api.ok(api.put(f"/tenants/{trunk}/extensions/101/dual-registration", {"enabled": True}))
    batch = {"batch_id": "b-1", "events": [
        {"type": "registration", "user_id": f"{trunk}101", "contact": "sip:desk@192.0.2.5",
         "source_address": "192.0.2.5", "source_port": 5062, "transport": "udp", "expires": 300,
         "user_agent": "desk"},
        {"type": "registration", "user_id": f"{trunk}101r", "contact": "sip:soft@[2001:db8::5]",
         "source_address": "2001:db8::5", "source_port": 5060, "transport": "tcp",
         "expires": 300, "user_agent": "baresip"},
    ]}
    assert api.ok(edge.post("/edge/events", batch), 200)["applied"] == 2
    assert api.ok(edge.post("/edge/events", batch), 200)["duplicate"] is True
    status = api.ok(api.get(f"/tenants/{trunk}/registrations"), 200)
    assert [(r["user_id"], r["endpoint"], r["source"], r["edge"]) for r in status] == [
        (f"{trunk}101", "home", "192.0.2.5:5062", "edge-1"),
        (f"{trunk}101r", "remote", "[2001:db8::5]:5060", "edge-1"),
    ]
    assert len(api.ok(api.get(f"/tenants/{trunk}/extensions/101/registrations"), 200)) == 2
    other = api.as_(api.key("tenant", trunk_number=api.tenant("Other")["trunk_number"]))
    assert other.get(f"/tenants/{trunk}/registrations").status_code == 404


@pytest.mark.parametrize("event, field", [
    ({"type": "nope"}, "type"),
    ({"type": "auth_failure", "address": "192.0.2.1", "user_id": "x"}, "reason"),
    ({"type": "registration", "user_id": "1234510"}, "contact"),
    ({"type": "heartbeat", "applied_version": -1}, "applied_version"),
    ({"type": "ring_mode", "user_id": "x", "mode": "loud"}, "mode"),
])
def test_bad_events_name_the_field(edge, event, field):
    response = edge.post("/edge/events", {"batch_id": "b", "events": [event]})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]["events"]["0"]


def test_reload_status_counts_the_edges_that_applied_it(api, edge):
    trunk = api.tenant()["trunk_number"]
    version = api.ok(api.post(f"/tenants/{trunk}/reload"), 202)["version"]
    status = api.ok(api.get(f"/tenants/{trunk}/reloads/{version}"), 200)
    assert (status["applied"], status["total"]) == (0, 1)
    changes = api.ok(edge.get(f"/edge/changes?after={version - 1}&wait=0"), 200)["changes"]
    assert changes[0]["kind"] == "reload" and changes[0]["key"] == trunk
    api.ok(edge.post("/edge/events", {"batch_id": "hb", "events": [
        {"type": "heartbeat", "applied_version": version}]}))
    assert api.ok(api.get(f"/tenants/{trunk}/reloads/{version}"), 200)["applied"] == 1
    [listed] = api.ok(api.get("/edges"), 200)
    assert listed["applied_version"] == version and listed["behind"] == 0


def test_an_edge_reads_while_a_writer_holds_the_database(api, app, edge):
    api.tenant()
    engine = app.extensions["trunkline"]["engine"]
    with engine.connect() as writer:
        # Another process in the middle of a long write: SQLite's write lock, PostgreSQL's
        # exclusive lock on the outbox (writes wait, reads go on).
        if engine.dialect.name == "sqlite":
            writer.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the write lock
        else:
            writer.exec_driver_sql("LOCK TABLE outbox, edges IN EXCLUSIVE MODE")
        response = edge.get("/edge/changes?after=0&wait=0")
        writer.rollback()
    assert response.status_code == 200 and response.get_json()["changes"]


def test_a_bad_auth_event_is_named_by_its_place_in_the_batch(edge):
    events = [{"type": "heartbeat", "applied_version": 0},
              {"type": "auth_failure", "address": "nope", "user_id": "12345101",
               "reason": "wrong_password"}]
    response = edge.post("/edge/events", {"batch_id": "b", "events": events})
    assert response.status_code == 422
    assert "events.1.address" in response.get_json()["errors"]["json"]


# --- wake-ups: the notifier of each worker ------------------------------------------------


def _wait_in_thread(notifier, version, timeout=30):
    result = {}
    waiter = threading.Thread(
        target=lambda: result.setdefault("woken", notifier.wait_beyond(version, timeout)))
    waiter.start()
    return waiter, result


def test_a_commit_wakes_long_polls_in_its_own_worker_without_the_watcher(
        api, app, edge, monkeypatch):
    from controlplane.feed import Notifier

    # No poll thread and no LISTEN: only the commit itself can wake the long-poll.
    monkeypatch.setattr(Notifier, "_ensure_started", lambda self: None)
    tenant = api.tenant()
    api.extension(tenant["trunk_number"])
    start = api.ok(edge.get("/edge/changes?after=0&wait=0"), 200)["version"]
    result = {}

    def poll():
        client = ApiClient(app.test_client(), edge.token)
        result["response"] = client.get(f"/edge/changes?after={start}&wait=40")

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)
    api.ok(api.post(f"/tenants/{tenant['trunk_number']}/extensions/101/sip-credentials/rotate"))
    waiter.join(timeout=35)
    assert not waiter.is_alive()
    body = result["response"].get_json()
    assert [c["key"] for c in body["changes"]] == [tenant["trunk_number"] + "101"]


def test_an_auth_failure_batch_that_bans_wakes_long_polls_in_its_worker(
        api, app, edge, monkeypatch):
    from controlplane.feed import Notifier

    monkeypatch.setattr(Notifier, "_ensure_started", lambda self: None)
    start = api.ok(edge.get("/edge/changes?after=0&wait=0"), 200)["version"]
    result = {}

    def poll():
        client = ApiClient(app.test_client(), edge.token)
        result["response"] = client.get(f"/edge/changes?after={start}&wait=40")

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)
    policy = api.ok(api.get("/ban-policy"), 200)
    failures = [{"type": "auth_failure", "address": "203.0.113.9", "user_id": f"u{i}",
                 "reason": "wrong_password"} for i in range(policy["max_retry"])]
    api.ok(edge.post("/edge/events", {"batch_id": "b-1", "events": failures}), 200)
    waiter.join(timeout=35)
    assert not waiter.is_alive()
    body = result["response"].get_json()
    assert [c["kind"] for c in body["changes"]] == ["ban"]


def test_commits_without_outbox_entries_or_that_failed_wake_no_one(app, monkeypatch):
    from sqlalchemy import event

    from controlplane.feed import Notifier
    from tenants.models import Tenant
    from tenants.outbox import record_change
    from tenants.services.api_keys import create_api_key

    monkeypatch.setattr(Notifier, "_ensure_started", lambda self: None)
    ext = app.extensions["trunkline"]
    notifier, sessions = ext["notifier"], ext["sessions"]
    with sessions() as s:
        create_api_key(s, platform_principal("test"), role="platform", name="no outbox")
        version = current_version(s)
    assert not notifier.wait_beyond(version, 0)

    def fail(_session):
        raise RuntimeError("the commit fails after the outbox was written")

    with sessions() as s:
        s.info["principal"] = platform_principal("test")
        tenant = Tenant(name="Rolled back", trunk_number="55555")
        s.add(tenant)
        record_change(s, "tenant", tenant)
        event.listen(s, "before_commit", fail)
        with pytest.raises(RuntimeError):
            s.commit()
        s.rollback()
        event.remove(s, "before_commit", fail)
        s.commit()  # nothing new: the failed commit's versions must not be published now
    assert not notifier.wait_beyond(version, 0)


def test_a_worker_learns_of_another_workers_commit(api, app, db_url):
    """The watcher thread (data_version poll on SQLite, LISTEN on PostgreSQL) wakes a
    notifier that did not see the commit itself, as in another gunicorn worker."""
    from controlplane.feed import Notifier
    from tests.conftest import engine_for

    tenant = api.tenant()
    other = Notifier(engine_for(db_url))
    try:
        with app.extensions["trunkline"]["sessions"]() as s:
            version = current_version(s)
        waiter, result = _wait_in_thread(other, version)
        time.sleep(0.3)
        api.ok(api.post(f"/tenants/{tenant['trunk_number']}/extensions",
                        {"number": "101", "name": "Desk"}), 201)
        waiter.join(timeout=35)
        assert not waiter.is_alive() and result["woken"] is True
        # Idle again, then a commit while nobody waits: the next wait learns of it at once.
        api.ok(api.post(f"/tenants/{tenant['trunk_number']}/extensions",
                        {"number": "102", "name": "Desk 2"}), 201)
        assert other.wait_beyond(version + 1, 30)
    finally:
        other.stop()


def test_housekeeping_runs_once_the_event_batch_is_answered(edge, monkeypatch):
    # The once-a-minute purge used to run inside the request, before the answer the edge
    # waits for (the answer to a failure batch is when the ban is decided).
    from tenants.services import maintenance

    runs = []
    monkeypatch.setattr(maintenance, "run", lambda session, now: runs.append(session))
    monkeypatch.setitem(maintenance._last_run, "at", float("-inf"))
    batch = {"batch_id": "hk-1", "events": [{"type": "heartbeat", "applied_version": 0}]}
    response = edge.post("/edge/events", batch)
    assert response.status_code == 200
    response.close()  # what the WSGI server does once the answer is sent
    assert len(runs) == 1  # run then, with its own session
    again = edge.post("/edge/events", {**batch, "batch_id": "hk-2"})
    again.close()
    assert again.status_code == 200 and len(runs) == 1  # at most once a minute


def test_housekeeping_that_fails_costs_the_edge_nothing(edge, monkeypatch):
    from tenants.services import maintenance

    def broken(session, now):
        raise RuntimeError("database away")

    monkeypatch.setattr(maintenance, "run", broken)
    monkeypatch.setitem(maintenance._last_run, "at", float("-inf"))
    batch = {"batch_id": "hk-3", "events": [{"type": "heartbeat", "applied_version": 0}]}
    response = edge.post("/edge/events", batch)
    response.close()  # the failure is logged, not raised into the server
    assert response.status_code == 200
