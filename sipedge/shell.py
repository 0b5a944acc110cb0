"""The asyncio shell around the sans-IO core: sockets, the clock, timers, metrics.

UDP and TCP listen on the same address and port. Every packet and every new connection is
checked against the bans before anything is parsed: a banned source gets no answer (its
TCP connection is closed). Any error in handling one message is logged and counted; it
never takes the worker down.
"""

import asyncio
import logging
import time

from .metrics import render_metrics
from .sip.message import KEEPALIVE, PONG, ParseError, StreamFramer

log = logging.getLogger("sipedge.shell")

MAX_TCP_CONNECTIONS = 10_000
MAX_TCP_PER_SOURCE = 64  # per source as bans count them: an IPv6 /64 is one
MAX_WRITE_BUFFER = 256 * 1024  # a client that reads none of its responses is cut off
TCP_IDLE_TIMEOUT = 900.0  # longer than any phone's keep-alive or re-registration interval
TIMER_CAP = 1.0  # look at the clock at least this often


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        server = self.server
        now = time.time()
        source = (addr[0], addr[1])
        if server.core.blocked(source[0], now):
            server.dropped += 1
            return
        if not data.strip(b"\r\n"):
            return  # a CRLF keep-alive on UDP needs no answer
        for send in server.handle(data, "udp", source, now, None):
            self.transport.sendto(send.data, send.destination)

    def error_received(self, exc):
        log.debug("udp error: %s", exc)


class TcpConnection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.transport = None
        self.framer = StreamFramer()
        self.source = None
        self.key = None  # the source as bans count it
        self.last_activity = time.monotonic()

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.source = (peer[0], peer[1])
        server = self.server
        if server.core.blocked(self.source[0], time.time()) or not server.admit(self):
            server.dropped += 1
            transport.abort()
            return
        server.connections.add(self)

    def connection_lost(self, exc):
        self.server.forget(self)

    def data_received(self, data):
        server, now = self.server, time.time()
        if server.core.blocked(self.source[0], now):  # banned while connected
            server.dropped += 1
            self.transport.abort()
            return
        self.last_activity = time.monotonic()
        for item in self.framer.feed(data):
            if item is KEEPALIVE:
                self.transport.write(PONG)  # RFC 5626 §4.4.1
            elif isinstance(item, ParseError):
                # The stream cannot be framed any more: answer 400 if possible, then close.
                for send in server.core.unframeable(item, "tcp", self.source):
                    self.transport.write(send.data)
                self.transport.close()
                return
            else:
                for send in server.handle(item, "tcp", self.source, now, self):
                    if not self.transport.is_closing():
                        self.transport.write(send.data)
                if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    self.transport.abort()
                if self.transport.is_closing():
                    return


class EdgeServer:
    """Runs the core on its listening addresses until stopped."""

    def __init__(self, core, listens, *, metrics=None, link=None):
        self.core = core
        self.listens = listens  # [(transport, host, port)]
        self.metrics_address = metrics
        self.link = link
        self.connections = set()
        self._per_source = {}
        self.dropped = 0
        self.errors = 0
        self.started_at = time.time()
        self._servers = []
        self._udp = []
        self._tasks = []
        self.bound = []  # [(transport, host, port)] actually bound (port 0 resolved)

    # --- lifecycle ---

    async def start(self):
        loop = asyncio.get_running_loop()
        for transport, host, port in self.listens:
            if transport == "udp":
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: UdpEndpoint(self), local_addr=(host, port))
                self._udp.append(udp)
                bound = udp.get_extra_info("sockname")
            else:
                server = await loop.create_server(lambda: TcpConnection(self), host, port,
                                                  reuse_address=True, backlog=1024)
                self._servers.append(server)
                bound = server.sockets[0].getsockname()
            self.bound.append((transport, bound[0], bound[1]))
            log.info("listening", extra={"fields": {"transport": transport,
                                                    "address": f"{bound[0]}:{bound[1]}"}})
        self.core.set_listen_addresses(sorted({host for _, host, _ in self.bound}))
        if self.metrics_address is not None:
            host, port = self.metrics_address
            self._servers.append(await asyncio.start_server(self._serve_metrics, host, port))
        self._tasks.append(asyncio.create_task(self._timers(), name="sipedge-timers"))
        self._tasks.append(asyncio.create_task(self._reap_idle(), name="sipedge-idle"))
        if self.link is not None:
            self._tasks.append(asyncio.create_task(self.link.run(), name="sipedge-link"))

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that had failed: say so, and go on stopping
                log.exception("%s had failed", task.get_name())
        for udp in self._udp:
            udp.close()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.transport.abort()
        if self.link is not None:
            await self.link.stop()

    # --- messages ---

    def handle(self, data, transport, source, now, conn):
        core = self.core
        try:
            sends = core.receive(data, transport=transport, source=source, now=now, conn=conn)
        except Exception:  # a bug must cost one message, never the worker
            self.errors += 1
            log.exception("error handling a message from %s:%s", *source)
            return []
        if core.urgent:
            core.urgent = False
            if self.link is not None:
                self.link.wake()
        return sends

    def admit(self, conn):
        if len(self.connections) >= MAX_TCP_CONNECTIONS:
            return False
        conn.key = self.core.guard.source(conn.source[0])
        count = self._per_source.get(conn.key, 0)
        if count >= MAX_TCP_PER_SOURCE:
            return False
        self._per_source[conn.key] = count + 1
        return True

    def forget(self, conn):
        if conn in self.connections:
            self.connections.discard(conn)
            left = self._per_source.get(conn.key, 1) - 1
            if left <= 0:
                self._per_source.pop(conn.key, None)
            else:
                self._per_source[conn.key] = left

    # --- time ---

    async def _timers(self):
        while True:
            now = time.time()
            try:
                self.core.tick(now)
            except Exception:
                self.errors += 1
                log.exception("timer failed")
            due = self.core.next_timer()
            delay = TIMER_CAP if due is None else min(max(due - time.time(), 0.01), TIMER_CAP)
            await asyncio.sleep(delay)

    async def _reap_idle(self):
        while True:
            await asyncio.sleep(30)
            limit = time.monotonic() - TCP_IDLE_TIMEOUT
            for conn in [c for c in self.connections if c.last_activity < limit]:
                conn.transport.abort()

    # --- metrics ---

    async def _serve_metrics(self, reader, writer):
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path.split(b"?")[0] == b"/metrics":
                body, status = render_metrics(self), b"200 OK"
                ctype = b"text/plain; version=0.0.4; charset=utf-8"
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                         + b"\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
