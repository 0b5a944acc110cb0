"""`controlplane serve` for real: gunicorn on a free port, driven over HTTP only.

The seed's story, end to end: a reseller signs up a tenant, the tenant gets a desk phone
(extension 101) and a second, remote endpoint (101r) that shares its password, and chooses
which of them rings. The deployment fixtures (conftest.py) hold every server to a clean
SIGTERM exit and a log without a single secret seen here.
"""

import os
import re
import stat
import uuid

import pytest

from .conftest import REALM, SIP_SERVER, last_line

pytestmark = pytest.mark.e2e


def reseller_with_tenant(api, name="Acme"):
    """A reseller, its key, and a tenant created through that key: (reseller api, trunk)."""
    # Tests share a server: reseller names are unique on the platform.
    unique = uuid.uuid4().hex[:8]
    reseller = api.ok(api.post("/resellers", {"name": f"{name} Telecom {unique}"}), 201)
    key = api.ok(api.post("/api-keys", {"role": "reseller", "name": f"{name} portal",
                                        "reseller_id": reseller["id"]}), 201)["key"]
    as_reseller = api.as_(key)
    tenant = as_reseller.ok(as_reseller.post("/tenants", {"name": name}), 201)
    assert tenant["reseller_id"] == reseller["id"]
    return as_reseller, tenant["trunk_number"]


def extension_url(trunk, number="101"):
    return f"/tenants/{trunk}/extensions/{number}"


def test_dual_registration_as_sip_peer_follows_the_seed(api):
    reseller, trunk = reseller_with_tenant(api)
    assert len(trunk) == 5 and trunk.isdigit() and 10000 <= int(trunk) <= 99999
    reseller.ok(reseller.post(f"/tenants/{trunk}/trunks",
                              {"name": "carrier", "gateway": "gw.carrier.example:5060"}), 201)

    ext = reseller.ok(reseller.post(f"/tenants/{trunk}/extensions",
                                    {"number": "101", "name": "Alice"}), 201)
    assert ext["sip_user_id"] == f"{trunk}101"
    assert ext["remote_user_id"] is None

    # The Advanced tab: Enable, Sip Peer, external number and trunk left blank.
    dual = reseller.ok(reseller.put(f"{extension_url(trunk)}/dual-registration",
                                    {"enabled": True, "sip_peer": True}), 200)
    assert dual["remote_user_id"] == f"{trunk}101r"
    shown = reseller.ok(reseller.get(extension_url(trunk)), 200)
    assert shown["remote_user_id"] == f"{trunk}101r"
    assert shown["dual_registration"]["enabled"] and shown["dual_registration"]["sip_peer"]

    # The SIP & Dialing tab: one password for both user IDs.
    creds = reseller.ok(reseller.get(f"{extension_url(trunk)}/sip-credentials"), 200)
    assert creds["user_id"] == f"{trunk}101"
    assert creds["remote_user_id"] == f"{trunk}101r"
    assert len(creds["password"]) >= 16
    assert creds["realm"] == REALM and creds["sip_server"] == SIP_SERVER

    # The ring behaviour the feature code would set, through the API.
    for mode in ("remote", "both"):
        assert reseller.ok(reseller.put(f"{extension_url(trunk)}/ring-mode",
                                        {"mode": mode}), 200) == {"mode": mode}
    assert reseller.ok(reseller.get(f"{extension_url(trunk)}/ring-mode"), 200) == {"mode": "both"}

    rotated = reseller.ok(reseller.post(f"{extension_url(trunk)}/sip-credentials/rotate"), 200)
    assert rotated["password"] != creds["password"] and len(rotated["password"]) >= 16
    again = reseller.ok(reseller.get(f"{extension_url(trunk)}/sip-credentials"), 200)
    assert again["password"] == rotated["password"]
    assert again["remote_user_id"] == f"{trunk}101r"


def test_dual_registration_to_an_external_number_rings_through_a_trunk(api):
    reseller, trunk = reseller_with_tenant(api, "Globex")
    reseller.ok(reseller.post(f"/tenants/{trunk}/trunks",
                              {"name": "carrier", "gateway": "203.0.113.10"}), 201)
    reseller.ok(reseller.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Bob"}),
                201)

    dual = reseller.ok(reseller.put(f"{extension_url(trunk)}/dual-registration", {
        "enabled": True, "sip_peer": False, "external_number": "+15551230101",
        "trunk": "carrier"}), 200)
    assert dual["external_number"] == "+15551230101" and dual["trunk"] == "carrier"
    assert dual["remote_user_id"] is None

    shown = reseller.ok(reseller.get(extension_url(trunk)), 200)
    assert shown["remote_user_id"] is None
    assert shown["dual_registration"]["trunk"] == "carrier"
    creds = reseller.ok(reseller.get(f"{extension_url(trunk)}/sip-credentials"), 200)
    assert creds["remote_user_id"] is None
    assert reseller.ok(reseller.put(f"{extension_url(trunk)}/ring-mode", {"mode": "both"}),
                       200) == {"mode": "both"}


def test_ring_mode_remote_without_dual_registration_is_a_409(api):
    _reseller, trunk = reseller_with_tenant(api, "Initech")
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Carol"}), 201)
    response = api.put(f"{extension_url(trunk)}/ring-mode", {"mode": "remote"})
    assert response.status_code == 409, response.text
    assert response.json()["code"] == 409


def test_tenant_key_gets_404_for_another_tenant(api):
    reseller, mine = reseller_with_tenant(api, "Umbrella")
    theirs = reseller.ok(reseller.post("/tenants", {"name": "Umbrella East"}), 201)["trunk_number"]
    for trunk in (mine, theirs):
        reseller.ok(reseller.post(f"/tenants/{trunk}/extensions",
                                  {"number": "101", "name": "Dave"}), 201)
    key = reseller.ok(reseller.post("/api-keys", {"role": "tenant", "name": "Umbrella admin",
                                                  "trunk_number": mine}), 201)["key"]
    tenant = api.as_(key)

    assert tenant.get(extension_url(mine)).status_code == 200
    for path in (f"/tenants/{theirs}", extension_url(theirs),
                 f"{extension_url(theirs)}/sip-credentials"):
        response = tenant.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == 404
    listed = tenant.ok(tenant.get("/tenants"), 200)
    assert [t["trunk_number"] for t in listed] == [mine]


def test_reseller_key_gets_404_for_another_resellers_tenant(api):
    reseller, _mine = reseller_with_tenant(api, "Soylent")
    _other, theirs = reseller_with_tenant(api, "Cyberdyne")
    response = reseller.get(f"/tenants/{theirs}")
    assert response.status_code == 404, response.text


@pytest.mark.parametrize(("suffix", "method", "body", "field"), [
    ("/extensions", "post", {"number": "1", "name": "Eve"}, "number"),
    ("/extensions", "post", {"number": "102", "name": "Eve", "colour": "red"}, "colour"),
    ("/extensions/101/ring-mode", "put", {"mode": "sideways"}, "mode"),
    ("/extensions/101/dual-registration", "put",
     {"enabled": True, "sip_peer": True, "external_number": "+15550000000"}, "external_number"),
    ("/extensions/101/dual-registration", "put",
     {"enabled": True, "sip_peer": False, "external_number": "+15550000000"}, "trunk"),
])
def test_invalid_input_is_a_422_naming_the_field(api, suffix, method, body, field):
    _reseller, trunk = reseller_with_tenant(api, "Hooli")
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Eve"}), 201)
    response = getattr(api, method)(f"/tenants/{trunk}{suffix}", body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == 422
    assert field in error["errors"]["json"], error


def test_audit_events_show_the_reveal(api):
    reseller, trunk = reseller_with_tenant(api, "Stark")
    reseller.ok(reseller.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Tony"}),
                201)
    reseller.ok(reseller.get(f"{extension_url(trunk)}/sip-credentials"), 200)

    events = reseller.ok(reseller.get("/audit-events", params={"trunk_number": trunk}), 200)
    reveals = [e for e in events if e["action"] == "sip_credentials.reveal"]
    assert len(reveals) == 1, events
    assert reveals[0]["actor_role"] == "reseller"
    assert reveals[0]["actor_name"] == "Stark portal"


def test_openapi_json_is_served_without_a_key(server, deployment):
    anonymous = deployment.api(server, anonymous=True)
    spec = anonymous.ok(anonymous.get("/openapi.json"), 200)
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    assert any(p.endswith("/extensions/{number}/dual-registration") for p in paths), paths
    assert any(p.endswith("/extensions/{number}/ring-mode") for p in paths), paths


def test_each_worker_rehearses_the_edge_intake_before_serving(server):
    log = server.log()
    booted = set(re.findall(r"Booting worker with pid: (\d+)", log))
    rehearsed = set(re.findall(r"\[(\d+)\] \[INFO\] edge intake rehearsed in \d+ ms "
                               r"\(rolled back; 9 events, ban decided: True\)", log))
    assert booted and rehearsed == booted, log


def test_request_without_a_key_is_a_401(server, deployment):
    anonymous = deployment.api(server, anonymous=True)
    assert anonymous.get("/tenants").status_code == 401
    assert anonymous.as_("tlk_nothing.wrong").get("/tenants").status_code == 401


def test_ring_mode_survives_a_restart_of_the_server(server, api):
    _reseller, trunk = reseller_with_tenant(api, "Wayne")
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Bruce"}), 201)
    api.ok(api.put(f"{extension_url(trunk)}/dual-registration",
                   {"enabled": True, "sip_peer": True}), 200)
    api.ok(api.put(f"{extension_url(trunk)}/ring-mode", {"mode": "remote"}), 200)

    api.close()  # no kept-alive connection across the restart
    assert server.stop() == 0, server.log()
    server.start()

    assert api.ok(api.get(f"{extension_url(trunk)}/ring-mode"), 200) == {"mode": "remote"}
    assert api.ok(api.get(extension_url(trunk)), 200)["remote_user_id"] == f"{trunk}101r"


def test_init_twice_prints_one_platform_key(fresh_install):
    first = fresh_install.run("init")
    key = last_line(first)
    second = fresh_install.run("init")
    assert key not in second

    secret_keys = fresh_install.workdir / "data" / "secret-keys"
    assert secret_keys.exists(), sorted(os.listdir(secret_keys.parent))
    assert stat.S_IMODE(secret_keys.stat().st_mode) == 0o600

    server = fresh_install.start_server()
    api = fresh_install.api(server, key)
    assert api.get("/tenants").status_code == 200
    # The second run printed no key: its last line authenticates nothing.
    assert api.as_(last_line(second)).get("/tenants").status_code == 401
