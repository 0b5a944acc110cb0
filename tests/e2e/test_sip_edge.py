"""The seed's story on the wire: the control plane under gunicorn, two `sipedge run` edges,
and real SIP clients (SIPp, baresip) on addresses of their own in 127.0.0.0/8.

Hosts: 127.0.0.1 is the edges' own address; 127.0.0.2 the desk phone (SIPp), 127.0.0.3
the softphone (baresip), 127.0.0.66 and up attackers, each test its own.
"""

import random
import socket
import threading
import time

import pytest

from .sip import Baresip, Edge, Probe, eventually, sipp

pytestmark = pytest.mark.e2e

DESK, SOFTPHONE = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def edges(deployment, server):
    api = deployment.api(server)
    started = [Edge(deployment, api, server.url, deployment.workdir, name).start()
               for name in ("edge-a", "edge-b")]
    yield started
    statuses = [(edge, edge.stop()) for edge in started]
    for edge, status in statuses:
        assert status == 0, f"{edge.name} exited with {status}:\n{edge.log()}"
        leaked = deployment.secrets.found_in(edge.log())
        assert not leaked, f"secrets in the log of {edge.name}: {leaked}"


@pytest.fixture
def extension(api):
    """A tenant with extension 101, Dual Registration on as a SIP peer; its credentials."""
    trunk = api.ok(api.post("/tenants", {"name": "Seed story"}), 201)["trunk_number"]
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "101", "name": "Alice"}), 201)
    dual = api.ok(api.put(f"/tenants/{trunk}/extensions/101/dual-registration",
                          {"enabled": True, "sip_peer": True, "external_number": None,
                           "trunk": None}), 200)
    assert dual["remote_user_id"] == f"{trunk}101r"
    api.ok(api.post(f"/tenants/{trunk}/reload"), 202)
    creds = api.ok(api.get(f"/tenants/{trunk}/extensions/101/sip-credentials"), 200)
    return trunk, creds


def registered(edge, user_id, password, source, workdir, **kw):
    """SIPp registers (retrying while the edge may still be catching up with the feed)."""
    return eventually(lambda: sipp(edge, user_id, password, source=source, workdir=workdir,
                                   **kw)[0] == 0, timeout=10, interval=0.3)


def status_screen(api, trunk):
    return api.ok(api.get(f"/tenants/{trunk}/registrations"), 200)


def test_seed_story_dual_registration_ban_lift_and_rotation(deployment, api, edges, extension):
    trunk, creds = extension
    edge_a, edge_b = edges
    home, remote, password = creds["user_id"], creds["remote_user_id"], creds["password"]
    workdir = deployment.workdir

    # Both endpoints register with the one password: SIPp registers the desk phone's ID on
    # edge A; baresip registers both IDs, the home one on edge A over UDP and the remote
    # one on edge B over TCP.
    assert registered(edge_a, home, password, DESK, workdir)
    softphone = Baresip(workdir, [(edge_a, home, password, "udp"),
                                  (edge_b, remote, password, "tcp")],
                        source=SOFTPHONE).start()
    try:
        assert eventually(softphone.registered, timeout=15), softphone.log()

        # The SIP Status screen shows the extension's entries: the normal user (twice: SIPp
        # and baresip) and the "r" user, each with its edge and transport.
        def entries():
            return {(r["user_id"], r["endpoint"], r["edge"], r["transport"],
                     r["user_agent"].split()[0]) for r in status_screen(api, trunk)}

        expected = {(home, "home", "edge-a", "udp", "SIPp"),
                    (home, "home", "edge-a", "udp", "baresip"),
                    (remote, "remote", "edge-b", "tcp", "baresip")}
        assert eventually(lambda: entries() == expected), entries()
        rows = status_screen(api, trunk)
        homes = {(r["source"].rsplit(":", 1)[0], r["user_agent"].split()[0])
                 for r in rows if r["endpoint"] == "home"}
        assert homes == {(DESK, "SIPp"), (SOFTPHONE, "baresip")}
        # (baresip's TCP connections leave from the host's default address, not its
        # sip_listen one: the source is whatever the connection came from.)
        [soft] = [r for r in rows if r["endpoint"] == "remote"]
        assert soft["source"].startswith("127.")

        # A wrong password from another address: answered like an unknown user, until the
        # address is blocked, on both edges.
        attacker = Probe("127.0.0.66")
        try:
            statuses = [attacker.register(edge_a, home, "not-the-password") for _ in range(5)]
            assert statuses == [403] * 5
            assert attacker.register(edge_a, home, "not-the-password") is None
            assert attacker.options(edge_a) is None
            assert eventually(lambda: attacker.options(edge_b, timeout=0.2) is None, timeout=10)
            [ban] = [b for b in api.ok(api.get("/bans"), 200) if b["address"] == "127.0.0.66"]
            assert home in str(ban)

            # The desk phone and the softphone were never touched.
            assert sipp(edge_a, home, password, source=DESK, workdir=workdir)[0] == 0

            # Lifting the ban in the API lifts it on every edge; the address registers again.
            assert api.delete("/bans/127.0.0.66").status_code == 204
            assert eventually(lambda: attacker.options(edge_a, timeout=0.2) == 200)
            assert eventually(lambda: attacker.options(edge_b, timeout=0.2) == 200)
            assert attacker.register(edge_b, home, password) == 200
        finally:
            attacker.close()

        # Rotating the password: the old one is refused on every edge, the new one works.
        rotated = api.ok(api.post(f"/tenants/{trunk}/extensions/101/sip-credentials/rotate"),
                         200)
        new_password = api.ok(api.get(f"/tenants/{trunk}/extensions/101/sip-credentials"),
                              200)["password"]
        assert new_password != password and rotated is not None
        for edge in edges:
            assert eventually(lambda e=edge: sipp(e, home, password, source=DESK, expect=403,
                                                  workdir=workdir)[0] == 0, timeout=10)
            assert sipp(edge, remote, new_password, source=DESK, workdir=workdir)[0] == 0
    finally:
        softphone.stop()


def test_remote_id_registers_only_while_dual_registration_is_on(deployment, api, edges,
                                                                extension):
    trunk, creds = extension
    edge = edges[0]
    remote, password = creds["remote_user_id"], creds["password"]
    probe = Probe("127.0.0.4")
    try:
        assert eventually(lambda: probe.register(edge, remote, password) == 200)
        api.ok(api.put(f"/tenants/{trunk}/extensions/101/dual-registration",
                       {"enabled": False, "sip_peer": True}), 200)
        # The r user is gone from every edge: refused like any unknown user, its binding
        # removed, and the SIP Status screen no longer lists it.
        assert eventually(lambda: probe.register(edge, remote, password) == 403)
        assert eventually(lambda: not any(r["endpoint"] == "remote"
                                          for r in status_screen(api, trunk)))
        assert probe.register(edge, creds["user_id"], password) == 200
    finally:
        probe.close()


def test_an_office_nat_is_not_banned_for_one_stale_phone(deployment, api, edges, extension):
    trunk, creds = extension
    edge = edges[0]
    api.ok(api.post(f"/tenants/{trunk}/extensions", {"number": "102", "name": "Bob"}), 201)
    bob = api.ok(api.get(f"/tenants/{trunk}/extensions/102/sip-credentials"), 200)
    office = "127.0.0.5"
    good, stale = Probe(office), Probe(office)
    try:
        assert eventually(lambda: good.register(edge, creds["user_id"], creds["password"]) == 200)
        assert eventually(lambda: stale.register(edge, bob["user_id"], "old-password") == 403)
        for _ in range(6):
            stale.register(edge, bob["user_id"], "old-password")
        # Bob's phone is locked out; Alice's, behind the same address, still registers.
        assert good.register(edge, creds["user_id"], creds["password"]) == 200
        assert good.options(edge) == 200
    finally:
        good.close()
        stale.close()


def test_a_restarted_edge_serves_without_the_control_plane(deployment, api, extension):
    trunk, creds = extension
    # A control plane of this test's own (same database), so that stopping it leaves the
    # module's server running.
    own_server = deployment.start_server()
    edge = Edge(deployment, api, own_server.url, deployment.workdir, "edge-alone").start()
    probe = Probe("127.0.0.6")
    try:
        assert eventually(lambda: probe.register(edge, creds["user_id"], creds["password"]) == 200)
        assert eventually(lambda: (edge.state_dir / "config.json").exists())
        time.sleep(2.5)  # the state file is written at most every 2 s
        assert edge.stop() == 0
        assert own_server.stop() == 0
        edge.start(wait_for_config=False)
        assert probe.register(edge, creds["user_id"], creds["password"]) == 200
        assert "sipedge_registrations" in edge.metrics()
    finally:
        probe.close()
        assert edge.stop() == 0
        leaked = deployment.secrets.found_in(edge.log())
        assert not leaked, leaked


def _mutations(seed_messages, rng):
    for _ in range(400):
        message = bytearray(rng.choice(seed_messages))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(message)) if message else 0
            if op < 0.4 and message:
                message[pos] = rng.randrange(256)
            elif op < 0.6:
                message[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            elif op < 0.8 and message:
                del message[pos:pos + rng.randint(1, 40)]
            else:
                message[pos:pos] = rng.choice([b"\r\n", b":", b";", b",", b"\x00", b"<", b">",
                                               b"Content-Length: 99999\r\n", b"%", b"\"",
                                               b"\r\n\r\n"])
        yield bytes(message)
    for _ in range(100):
        yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000)))


def test_garbage_never_stops_the_edge_from_serving(deployment, api, edges, extension):
    """Random and mutated datagrams and TCP streams, while a phone keeps registering."""
    trunk, creds = extension
    edge = edges[1]
    rng = random.Random(4475)
    seeds = [
        b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.70;branch=z9hG4bKx\r\n"
        b"From: <sip:1@x>;tag=1\r\nTo: <sip:1@x>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:1@127.0.0.70>;expires=60\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.70;branch=z9hG4bKy\r\n"
        b"f: <sip:a@x>;tag=2\r\nt: <sip:b@x>\r\ni: d\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.70;branch=z9hG4bKz\r\nCall-ID: e\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ]
    stop = threading.Event()
    sent = {"udp": 0, "tcp": 0}

    def fuzz():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.70", 0))
            for data in _mutations(seeds, rng):
                if stop.is_set():
                    return
                udp.sendto(data[:65000], edge.address)
                sent["udp"] += 1
                if sent["udp"] % 10 == 0:
                    try:
                        with socket.create_connection(edge.address, timeout=1,
                                                      source_address=("127.0.0.71", 0)) as tcp:
                            tcp.sendall(data)
                            tcp.sendall(next(_mutations(seeds, rng)))
                            sent["tcp"] += 1
                    except OSError:
                        pass  # a connection the edge closed on its garbage is fine

    fuzzer = threading.Thread(target=fuzz)
    fuzzer.start()
    try:
        for _ in range(4):
            status, errors = sipp(edge, creds["user_id"], creds["password"], source=DESK,
                                  calls=5, rate=10, workdir=deployment.workdir)
            assert status == 0, errors
    finally:
        stop.set()
        fuzzer.join(30)
    assert sent["udp"] > 50 and sent["tcp"] > 0
    assert edge.process.poll() is None
    metrics = edge.metrics()
    assert "sipedge_malformed_messages_total" in metrics
    assert "sipedge_errors_total 0.0" in metrics, [
        line for line in edge.log().splitlines() if "error" in line][-5:]
