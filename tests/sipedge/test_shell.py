"""The asyncio shell on real loopback sockets: framing, keep-alives, bans before parsing,
TCP timeouts and the connection cap."""

import asyncio
import contextlib
import datetime as dt
import socket

import pytest

from sipedge.core import EdgeCore
from sipedge.metrics import render_metrics
from sipedge import shell
from sipedge.shell import EdgeServer, machine_addresses, own_addresses
from tests.helpers import expected_core_build

OPTIONS = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK1\r\n"
           b"From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def started(**options):
    core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
    server = EdgeServer(core, [("udp", "127.0.0.1", 0), ("tcp", "127.0.0.1", 0)], **options)
    await server.start()
    return server


@contextlib.asynccontextmanager
async def serving(**options):
    """An edge on loopback for the test's body, stopped whatever happens."""
    server = await started(**options)
    try:
        yield server
    finally:
        await server.stop()


def port_of(server, transport):
    return next(p for t, _, p in server.bound if t == transport)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head


def options(n):
    return OPTIONS.replace(b"c1", b"c%d" % n).replace(b"bK1", b"bK%d" % n)


async def connect(server, address):
    return await asyncio.open_connection("127.0.0.1", port_of(server, "tcp"),
                                         local_addr=(address, 0))


async def closed_by_edge(reader, within=5.0):
    """Whether the edge closes the connection (reset or end of stream) within a generous
    bound; whatever it sends before (pongs) is read and dropped."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def until(condition, within=5.0):
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


def open_from(server, address):
    return [c for c in server.connections if c.source[0] == address]


def test_tcp_messages_keepalives_and_pipelining():
    async def scenario():
        async with serving() as server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server, "tcp"), local_addr=("127.0.0.2", 0))
            writer.write(b"\r\n\r\n")  # RFC 5626 ping
            assert await reader.readexactly(2) == b"\r\n"
            # Two requests in one segment, the second split across writes.
            writer.write(OPTIONS + OPTIONS.replace(b"c1", b"c2").replace(b"bK1", b"bK2")[:40])
            await writer.drain()
            first = await read_response(reader)
            writer.write(OPTIONS.replace(b"c1", b"c2").replace(b"bK1", b"bK2")[40:])
            second = await read_response(reader)
            assert first.startswith(b"SIP/2.0 200") and b"Call-ID: c1" in first
            assert second.startswith(b"SIP/2.0 200") and b"Call-ID: c2" in second
            writer.close()

    run(scenario())


def test_a_stream_without_content_length_gets_400_and_is_closed():
    async def scenario():
        async with serving() as server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server, "tcp"), local_addr=("127.0.0.2", 0))
            writer.write(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
            response = await reader.read()  # until the edge closes
            assert response.startswith(b"SIP/2.0 400")

    run(scenario())


def test_banned_sources_get_nothing_on_udp_and_tcp():
    async def scenario():
        server = await started()
        core = server.core
        core.apply_change({"version": 1, "kind": "ban", "key": "127.0.0.9", "op": "upsert",
                           "payload": {"source": "127.0.0.9", "user_id": None,
                                       "until": "2030-01-01T00:00:00+00:00", "reason": "t"}},
                          0)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server, "tcp"), local_addr=("127.0.0.9", 0))
            writer.write(OPTIONS)
            assert await reader.read() == b""  # closed without a word
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.9", 0))
                udp.setblocking(False)
                await loop.sock_sendto(udp, OPTIONS.replace(b"TCP", b"UDP"),
                                       ("127.0.0.1", port_of(server, "udp")))
                try:
                    await asyncio.wait_for(loop.sock_recv(udp, 65535), 0.5)
                    answered = True
                except asyncio.TimeoutError:
                    answered = False
            assert not answered and server.dropped >= 2
        finally:
            await server.stop()

    run(scenario())


def test_udp_keepalives_are_ignored_and_requests_answered():
    async def scenario():
        async with serving() as server:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.2", 0))
                udp.setblocking(False)
                target = ("127.0.0.1", port_of(server, "udp"))
                await loop.sock_sendto(udp, b"\r\n\r\n", target)
                request = OPTIONS.replace(b"TCP", b"UDP").replace(b"bK1", b"bK1;rport")
                await loop.sock_sendto(udp, request, target)
                reply = await asyncio.wait_for(loop.sock_recv(udp, 65535), 5)
                port = udp.getsockname()[1]
            assert reply.startswith(b"SIP/2.0 200")
            assert f"rport={port};received=127.0.0.2".encode() in reply
            assert server.core.stats["messages"] == 1

    run(scenario())


def test_a_burst_of_datagrams_larger_than_a_batch_is_all_answered():
    # The UDP socket is drained UDP_BATCH datagrams per wake-up: a burst of several
    # batches, queued before the edge reads any, must all be answered, in order.
    from sipedge.shell import UDP_BATCH

    count = 3 * UDP_BATCH + 5

    async def scenario():
        async with serving() as server:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.2", 0))
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                target = ("127.0.0.1", port_of(server, "udp"))
                for n in range(count):  # blocking sends: the edge reads none meanwhile
                    udp.sendto(options(n).replace(b"TCP", b"UDP"), target)
                udp.setblocking(False)
                replies = [await asyncio.wait_for(loop.sock_recv(udp, 65535), 5)
                           for _ in range(count)]
            assert all(reply.startswith(b"SIP/2.0 200") for reply in replies)
            assert [reply.split(b"Call-ID: ")[1].split(b"\r\n")[0] for reply in replies] == [
                b"c%d" % n for n in range(count)]
            assert b"sipedge_udp_answers_dropped_total 0.0" in render_metrics(server)

    run(scenario())


def test_metrics_are_served_in_prometheus_text_format():
    async def scenario():
        core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = EdgeServer(core, [("udp", "127.0.0.1", 0)], metrics=("127.0.0.1", port))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = (await reader.read()).decode()
            assert body.startswith("HTTP/1.1 200")
            assert "# TYPE sipedge_registrations gauge" in body
            assert "sipedge_auth_failures_total 0.0" in body
            assert f'sipedge_core_info{{build="{expected_core_build()}"}} 1.0' in body
        finally:
            await server.stop()

    run(scenario())


def test_expired_bans_from_the_feed_let_the_source_back():
    async def scenario():
        server = await started()
        past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).isoformat()
        server.core.apply_change({"version": 1, "kind": "ban", "key": "127.0.0.8", "op": "upsert",
                                  "payload": {"source": "127.0.0.8", "user_id": None,
                                              "until": past, "reason": "t"}}, 0)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server, "tcp"), local_addr=("127.0.0.8", 0))
            writer.write(OPTIONS)
            assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            writer.close()
        finally:
            await server.stop()

    run(scenario())


def test_a_trickled_message_is_cut_at_its_deadline_while_a_pinging_phone_stays():
    async def scenario():
        async with serving(message_timeout=0.5, first_message_timeout=0.5) as server:
            phone_reader, phone = await connect(server, "127.0.0.2")
            slow_reader, slow = await connect(server, "127.0.0.3")
            slow.write(options(1))
            assert (await read_response(slow_reader)).startswith(b"SIP/2.0 200")
            phone.write(options(1)[:40])  # a message in pieces, finished in time
            await asyncio.sleep(0.05)
            phone.write(options(1)[40:])
            assert (await read_response(phone_reader)).startswith(b"SIP/2.0 200")

            async def trickle():  # a byte every 50 ms: 10 s for the whole message
                for byte in options(2):
                    slow.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            async def ping():  # 1.2 s of RFC 5626 pings, past both short timeouts
                for _ in range(12):
                    phone.write(b"\r\n\r\n")
                    assert await phone_reader.readexactly(2) == b"\r\n"
                    await asyncio.sleep(0.1)

            trickling = asyncio.create_task(trickle())
            pinging = asyncio.create_task(ping())
            assert await closed_by_edge(slow_reader)
            trickling.cancel()
            await pinging
            phone.write(options(3))
            assert (await read_response(phone_reader)).startswith(b"SIP/2.0 200")
            assert server.tcp_timeouts == {"message": 1, "first_message": 0, "idle": 0}
            phone.close()

    run(scenario())


def test_lone_crlf_keepalives_are_not_an_unfinished_message():
    async def scenario():
        async with serving(message_timeout=0.3) as server:
            reader, writer = await connect(server, "127.0.0.2")
            writer.write(options(1))
            assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            for _ in range(9):  # every second CRLF makes a ping; the last one waits alone
                writer.write(b"\r\n")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.6)
            assert await reader.readexactly(8) == b"\r\n" * 4
            writer.write(options(2))
            assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            assert server.tcp_timeouts["message"] == 0
            writer.close()

    run(scenario())


def test_a_body_that_never_arrives_is_cut_at_the_message_deadline():
    async def scenario():
        async with serving(message_timeout=0.3) as server:
            reader, writer = await connect(server, "127.0.0.2")
            writer.write(options(1))
            assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            writer.write(options(2).replace(b"Content-Length: 0", b"Content-Length: 10")
                         + b"abc")
            assert await closed_by_edge(reader)
            assert server.tcp_timeouts["message"] == 1

    run(scenario())


@pytest.mark.parametrize("sent", [b"", b"\r\n\r\n", OPTIONS[:30]],
                         ids=["silent", "pings only", "part of a head"])
def test_a_new_connection_without_a_complete_message_is_closed(sent):
    async def scenario():
        async with serving(first_message_timeout=0.3, message_timeout=60) as server:
            reader, writer = await connect(server, "127.0.0.2")
            writer.write(sent)
            assert await closed_by_edge(reader)
            assert server.tcp_timeouts == {"message": 0, "first_message": 1, "idle": 0}

    run(scenario())


def test_a_connection_silent_past_the_idle_timeout_is_closed():
    async def scenario():
        async with serving(idle_timeout=0.3) as server:
            reader, writer = await connect(server, "127.0.0.2")
            writer.write(options(1))
            assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            assert await closed_by_edge(reader)
            assert server.tcp_timeouts["idle"] == 1

    run(scenario())


def test_tcp_timeouts_and_reclaims_are_in_the_metrics():
    async def scenario():
        async with serving(first_message_timeout=0.3) as server:
            reader, _writer = await connect(server, "127.0.0.2")
            assert await closed_by_edge(reader)
            text = render_metrics(server).decode()
            assert 'sipedge_tcp_timeouts_total{reason="first_message"} 1.0' in text
            assert 'sipedge_tcp_timeouts_total{reason="message"} 0.0' in text
            assert "sipedge_tcp_reclaimed_total 0.0" in text

    run(scenario())


def test_at_the_cap_the_oldest_connection_without_a_message_makes_room():
    async def scenario():
        async with serving(max_connections=3) as server:
            phone_reader, phone = await connect(server, "127.0.0.2")
            phone.write(options(1))
            assert (await read_response(phone_reader)).startswith(b"SIP/2.0 200")
            oldest_reader, _oldest = await connect(server, "127.0.0.3")
            await until(lambda: len(server.connections) == 2)
            _younger = await connect(server, "127.0.0.4")  # held: collected, it would close
            await until(lambda: len(server.connections) == 3)

            new_reader, newcomer = await connect(server, "127.0.0.5")
            assert await closed_by_edge(oldest_reader)
            newcomer.write(options(2))
            assert (await read_response(new_reader)).startswith(b"SIP/2.0 200")
            phone.write(options(3))
            assert (await read_response(phone_reader)).startswith(b"SIP/2.0 200")
            assert open_from(server, "127.0.0.4") and server.tcp_reclaimed == 1

    run(scenario())


def test_at_the_cap_without_a_connection_to_reclaim_a_new_one_is_refused():
    async def scenario():
        async with serving(max_connections=2) as server:
            phones = []
            for n, address in enumerate(("127.0.0.2", "127.0.0.3")):
                reader, writer = await connect(server, address)
                writer.write(options(n))
                assert (await read_response(reader)).startswith(b"SIP/2.0 200")
                phones.append((reader, writer))
            refused_reader, _refused = await connect(server, "127.0.0.4")
            assert await closed_by_edge(refused_reader)
            for n, (reader, writer) in enumerate(phones, start=10):
                writer.write(options(n))
                assert (await read_response(reader)).startswith(b"SIP/2.0 200")
            assert server.tcp_reclaimed == 0 and len(server.connections) == 2

    run(scenario())


# --- the edge's own addresses ---------------------------------------------------------------

FOREVER = "2100-01-01T00:00:00+00:00"
MACHINE = ["127.0.0.1", "10.1.2.3", "169.254.7.7", "::1", "2001:db8::5", "fe80::1"]


def test_a_wildcard_stands_for_the_machines_addresses_of_its_families():
    assert own_addresses(["0.0.0.0"], MACHINE) == (
        ["10.1.2.3", "127.0.0.1", "169.254.7.7"], ["10.1.2.3"])
    # :: is dual-stack on UDP: the IPv4 addresses answer through it too.
    assert own_addresses(["::"], MACHINE) == (
        ["10.1.2.3", "127.0.0.1", "169.254.7.7", "2001:db8::5", "::1", "fe80::1"],
        ["10.1.2.3", "2001:db8::5"])


def test_an_edge_on_the_ipv6_wildcard_never_bans_its_ipv4_addresses_seen_mapped():
    async def body():
        core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
        server = EdgeServer(core, [("udp", "::", 0)])
        await server.start()
        try:
            core.guard.apply_ban("127.0.0.1", {"until": FOREVER})
            assert not core.blocked("::ffff:127.0.0.1", 1e9)
            core.guard.apply_ban("127.0.0.9", {"until": FOREVER})
            assert core.blocked("::ffff:127.0.0.9", 1e9)
        finally:
            await server.stop()

    run(body())


def test_an_address_given_on_purpose_is_reported_even_on_loopback():
    assert own_addresses(["127.0.0.1"], MACHINE) == (["127.0.0.1"], ["127.0.0.1"])
    assert own_addresses(["127.0.0.1", "0.0.0.0"], []) == (["127.0.0.1"], ["127.0.0.1"])


def test_machine_addresses_include_loopback_without_zones():
    addresses = machine_addresses()
    assert "127.0.0.1" in addresses
    assert not any("%" in a for a in addresses)


def test_an_edge_on_the_wildcard_never_bans_its_own_addresses_but_bans_the_others():
    async def body():
        core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
        server = EdgeServer(core, [("udp", "0.0.0.0", 0), ("tcp", "0.0.0.0", 0)])
        await server.start()
        try:
            # What the heartbeat reports: no wildcard, no loopback.
            assert "0.0.0.0" not in core.listen_addresses()
            assert "127.0.0.1" not in core.listen_addresses()
            core.guard.apply_ban("127.0.0.1", {"until": FOREVER})
            core.guard.apply_ban("127.0.0.9", {"until": FOREVER})
            assert not core.blocked("127.0.0.1", 1e9)
            assert core.blocked("127.0.0.9", 1e9)
            # Answered on loopback through the wildcard, from the edge's own address.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, options(1).replace(b"/TCP", b"/UDP"),
                                   ("127.0.0.1", port_of(server, "udp")))
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            assert data.startswith(b"SIP/2.0 200 OK")
            sock.close()
        finally:
            await server.stop()

    run(body())


def test_the_machines_addresses_are_read_again(monkeypatch):
    async def body():
        core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
        server = EdgeServer(core, [("udp", "0.0.0.0", 0)])
        addresses = ["127.0.0.1", "10.1.2.3"]
        monkeypatch.setattr(shell, "machine_addresses", lambda: list(addresses))
        await server.start()
        try:
            assert core.listen_addresses() == ["10.1.2.3"]
            addresses.append("10.9.9.9")  # a new address on the machine (DHCP, a VIP)
            server._next_address_refresh = 0.0  # due now
            await until(lambda: core.listen_addresses() == ["10.1.2.3", "10.9.9.9"])
            core.guard.apply_ban("10.9.9.9", {"until": FOREVER})
            assert not core.blocked("10.9.9.9", 1e9)  # its own now: never banned
        finally:
            await server.stop()

    run(body())
