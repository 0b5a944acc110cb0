"""The asyncio shell on real loopback sockets: framing, keep-alives, bans before parsing."""

import asyncio
import datetime as dt
import socket

from sipedge.core import EdgeCore
from sipedge.shell import EdgeServer

OPTIONS = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK1\r\n"
           b"From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def started():
    core = EdgeCore(nonce_secrets=[b"s" * 32], realm="sip.test")
    server = EdgeServer(core, [("udp", "127.0.0.1", 0), ("tcp", "127.0.0.1", 0)])
    await server.start()
    return server


def port_of(server, transport):
    return next(p for t, _, p in server.bound if t == transport)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head


def test_tcp_messages_keepalives_and_pipelining():
    async def scenario():
        server = await started()
        try:
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
        finally:
            await server.stop()

    run(scenario())


def test_a_stream_without_content_length_gets_400_and_is_closed():
    async def scenario():
        server = await started()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server, "tcp"), local_addr=("127.0.0.2", 0))
            writer.write(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
            response = await reader.read()  # until the edge closes
            assert response.startswith(b"SIP/2.0 400")
        finally:
            await server.stop()

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
        server = await started()
        try:
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
        finally:
            await server.stop()

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
