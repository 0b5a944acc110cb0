"""An HTTP client plays an edge against the real server (gunicorn, several workers): the
snapshot, long-polls that wake on a change in whichever worker holds them, events, the SIP
Status screen and a reload."""

import json
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.e2e

POLLERS = 8  # more than gunicorn's workers, so the polls sit in several of them


@pytest.fixture
def edge(api):
    created = api.ok(api.post("/edges", {"name": f"edge-{time.monotonic_ns()}"}), 201)
    return api.as_(created["token"]), created["name"]


@pytest.fixture
def tenant(api):
    trunk = api.ok(api.post("/tenants", {"name": "Edge link"}), 201)["trunk_number"]
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Desk"}), 201)
    api.ok(api.put(f"/tenants/{trunk}/extensions/101/dual-registration",
                   {"enabled": True, "sip_peer": True}), 200)
    return trunk


def snapshot(edge_api):
    response = edge_api.get("/edge/snapshot", stream=True)
    assert response.status_code == 200
    records = [json.loads(line) for line in response.iter_lines() if line]
    assert records[0]["type"] == "begin" and records[-1]["type"] == "end"
    return records


def test_snapshot_then_long_polls_in_every_worker_wake_on_a_change(api, edge, tenant):
    edge_api, _name = edge
    records = snapshot(edge_api)
    version = records[0]["version"]
    users = {i["user_id"] for r in records if r.get("kind") == "extension"
             for i in r["payload"]["identities"]}
    assert {f"{tenant}101", f"{tenant}101r"} <= users

    results = [None] * POLLERS

    def poll(index):
        with requests.Session() as http:
            response = http.get(f"{edge_api.base_url}/api/v1/edge/changes",
                                params={"after": version, "wait": 40},
                                headers={"Authorization": f"Bearer {edge_api.key}"}, timeout=60)
            results[index] = response.json()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(POLLERS)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the polls are waiting now
    # Ordinary requests are served while the long-polls wait.
    assert api.get(f"/tenants/{tenant}").status_code == 200
    api.ok(api.post(f"/tenants/{tenant}/extensions/101/sip-credentials/rotate"), 200)
    for t in threads:
        t.join(timeout=50)
    assert not any(t.is_alive() for t in threads)
    for body in results:
        # A poll that was not woken could only answer empty after 40 s.
        keys = [c["key"] for c in body["changes"]]
        assert f"{tenant}101" in keys, body


def test_events_fill_the_sip_status_screen(api, edge, tenant):
    edge_api, name = edge
    events = [
        {"type": "registration", "user_id": f"{tenant}101", "contact": "sip:desk@127.0.0.21:5060",
         "source_address": "127.0.0.21", "source_port": 5060, "transport": "udp",
         "expires": 120, "user_agent": "desk phone"},
        {"type": "registration", "user_id": f"{tenant}101r",
         "contact": "sip:soft@127.0.0.22:5062;transport=tcp", "source_address": "127.0.0.22",
         "source_port": 5062, "transport": "tcp", "expires": 120, "user_agent": "softphone"},
        {"type": "ring_mode", "user_id": f"{tenant}101r", "mode": "remote"},
    ]
    body = {"batch_id": f"b-{time.monotonic_ns()}", "events": events}
    assert edge_api.ok(edge_api.post("/edge/events", json=body), 200)["applied"] == 3
    # Sent again after a "timeout": acknowledged, not applied twice.
    assert edge_api.ok(edge_api.post("/edge/events", json=body), 200)["duplicate"] is True
    status = api.ok(api.get(f"/tenants/{tenant}/registrations"), 200)
    assert [(r["user_id"], r["endpoint"], r["edge"]) for r in status] == [
        (f"{tenant}101", "home", name), (f"{tenant}101r", "remote", name)]
    assert api.ok(api.get(f"/tenants/{tenant}/extensions/101/ring-mode"), 200)["mode"] == "remote"


def test_reload_is_seen_by_the_edge_and_its_application_reported(api, edge, tenant):
    edge_api, name = edge
    start = snapshot(edge_api)[0]["version"]
    version = api.ok(api.post(f"/tenants/{tenant}/reload"), 202)["version"]
    changes = edge_api.ok(edge_api.get(f"/edge/changes?after={start}&wait=5"), 200)["changes"]
    assert [(c["kind"], c["key"]) for c in changes] == [("reload", tenant)]
    records = [json.loads(line) for line in edge_api.get(
        f"/edge/snapshot?trunk_number={tenant}").text.splitlines()]
    assert {r.get("key") for r in records} >= {tenant, f"{tenant}101"}
    edge_api.ok(edge_api.post("/edge/events", json={"batch_id": f"hb-{version}", "events": [
        {"type": "heartbeat", "applied_version": version, "addresses": ["127.0.0.1"]}]}), 200)
    status = api.ok(api.get(f"/tenants/{tenant}/reloads/{version}"), 200)
    assert {"name": name, "applied": True} in [
        {"name": e["name"], "applied": e["applied"]} for e in status["edges"]]
    [listed] = [e for e in api.ok(api.get("/edges?page_size=1000"), 200) if e["name"] == name]
    assert listed["applied_version"] == version and listed["last_seen"] is not None


def test_edge_tokens_and_api_keys_stay_in_their_lanes(api, edge):
    edge_api, _name = edge
    assert edge_api.get("/tenants").status_code == 401
    assert api.get("/edge/changes?after=0&wait=0").status_code == 401


def test_a_stopping_server_answers_waiting_long_polls_and_exits_cleanly(deployment, api):
    own = deployment.start_server()
    created = api.ok(api.post("/edges", {"name": f"edge-{time.monotonic_ns()}"}), 201)
    deployment.secrets.add(created["token"])
    headers = {"Authorization": f"Bearer {created['token']}"}
    version = requests.get(f"{own.url}/api/v1/edge/changes", params={"after": 0, "wait": 0},
                           headers=headers, timeout=10).json()["version"]
    result = {}

    def poll():
        try:
            result["response"] = requests.get(
                f"{own.url}/api/v1/edge/changes", params={"after": version, "wait": 50},
                headers=headers, timeout=70)
        except requests.RequestException as exc:
            result["error"] = exc

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(1.0)  # the poll is waiting in a worker now
    # Longer than gunicorn's graceful_timeout: without the wake-up the worker would be
    # killed in the middle of the poll.
    assert own.stop() == 0
    waiter.join(70)
    assert "error" not in result, result
    assert result["response"].status_code == 200
    assert result["response"].json()["changes"] == []
