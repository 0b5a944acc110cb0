"""The asyncio shell around the sans-IO core: sockets, the clock, timers, metrics.

UDP and TCP listen on the same address and port. Every packet and every new connection is
checked against the bans before anything is parsed: a banned source gets no answer (its
TCP connection is closed). Any error in handling one message is logged and counted; it
never takes the worker down.
"""

import asyncio
import ipaddress
import logging
import socket
import time

import psutil

from .metrics import render_metrics
from .sip.message import KEEPALIVE, PONG, ParseError, StreamFramer

log = logging.getLogger("sipedge.shell")

MAX_TCP_CONNECTIONS = 10_000
MAX_TCP_PER_SOURCE = 64  # per source as bans count them: an IPv6 /64 is one
MAX_WRITE_BUFFER = 256 * 1024  # a client that reads none of its responses is cut off
TCP_IDLE_TIMEOUT = 900.0  # longer than any phone's keep-alive or re-registration interval
# RFC 3261 §17.1.1.2: 64*T1, the longest a client waits for a transaction; a message that
# takes longer from its first byte to its last is not being sent by a client worth waiting for.
TCP_MESSAGE_TIMEOUT = 32.0
TCP_FIRST_MESSAGE_TIMEOUT = 32.0  # a phone sends its REGISTER as soon as it has connected
TIMER_CAP = 1.0  # look at the clock at least this often
UDP_BATCH = 64  # datagrams handled per wake-up before the loop serves its other work
UDP_MAX_DATAGRAM = 65_535
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
# A listen host that stands for every address: 0.0.0.0 for the IPv4 ones, :: for those
# of both families (its UDP socket is dual-stack: IPv4 phones come as ::ffff:a.b.c.d,
# which bans count as a.b.c.d).
WILDCARDS = {"0.0.0.0": (4,), "::": (4, 6)}
ADDRESS_REFRESH = 30.0  # seconds between readings of the machine's addresses (DHCP, VIPs)


def machine_addresses():
    """Every IP address of the machine's interfaces (getifaddrs(3), through psutil)."""
    addresses = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addresses.append(entry.address.split("%", 1)[0])  # no IPv6 zone
    return addresses


def own_addresses(hosts, machine=()):
    """(own, reported) for an edge bound to `hosts`.

    A wildcard host stands for the machine's addresses (`machine`) of its families
    (WILDCARDS). `own` is every address the edge answers on: never banned on this edge.
    `reported` is what the heartbeat tells the control plane (which then never bans those
    addresses anywhere): the same without the loopback and link-local addresses a wildcard
    brings, which name no edge from anywhere else. An address given on purpose stays.
    """
    own, reported = set(), set()
    for host in hosts:
        families = WILDCARDS.get(host)
        if families is None:
            own.add(host)
            reported.add(host)
            continue
        for address in machine:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            if ip.version not in families:
                continue
            own.add(address)
            if not (ip.is_loopback or ip.is_link_local):
                reported.add(address)
    return sorted(own), sorted(reported)


def _holds_partial_message(framer):
    """Whether the framer holds the start of a message it has not handed back yet.

    The framer shows no more than its buffer (what it has not handed back), so the shell
    reads that. A prefix of a CRLFCRLF ping is not a message: phones that send a lone CRLF keep-alive
    (it waits there for the next one) must not be cut.
    """
    pending = framer._buffer
    return bool(pending) and not b"\r\n\r\n".startswith(pending)


class UdpSocket:
    """One UDP socket, read by the event loop directly.

    Each time the socket is readable, up to UDP_BATCH datagrams are read and answered
    before the loop looks at anything else (asyncio's datagram transport reads one per loop
    iteration, which under load costs a loop iteration per datagram). Answers go out with
    sendto at once; when the kernel's send buffer is full the answer is dropped and
    counted, as a router would drop it: the phone retransmits (RFC 3261 §17.1.1).
    """

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.send_dropped = 0
        self._loop = None

    @classmethod
    def bind(cls, server, host, port):
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:  # room for a burst while a batch is handled (capped by net.core.rmem_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            except OSError:
                pass
            sock.bind(address)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return cls(server, sock)

    def start(self, loop):
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self):
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def sockname(self):
        return self.sock.getsockname()

    def _readable(self):
        server, core = self.server, self.server.core
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp error: %s", exc)
                return
            now = time.time()
            source = (addr[0], addr[1])
            if core.blocked(source[0], now):
                server.dropped += 1
                continue
            if not data.strip(b"\r\n"):
                continue  # a CRLF keep-alive on UDP needs no answer
            for send in server.handle(data, "udp", source, now, None):
                try:
                    sendto(send.data, send.destination)
                except (BlockingIOError, InterruptedError):
                    self.send_dropped += 1
                except OSError as exc:  # unreachable destination and the like
                    log.debug("udp send to %s:%s failed: %s", *send.destination[:2], exc)


class TcpConnection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.transport = None
        self.framer = StreamFramer()
        self.source = None
        self.key = None  # the source as bans count it
        self.opened_at = self.last_activity = time.monotonic()
        self.message_started = None  # when the first byte of the unfinished message came
        self.completed_message = False  # pings do not count

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.source = (peer[0], peer[1])
        server = self.server
        if server.core.blocked(self.source[0], time.time()) or not server.admit(self):
            server.dropped += 1
            transport.abort()

    def connection_lost(self, exc):
        self.server.forget(self)

    def data_received(self, data):
        server, now = self.server, time.time()
        if server.core.blocked(self.source[0], now):  # banned while connected
            server.dropped += 1
            self.transport.abort()
            return
        self.last_activity = clock = time.monotonic()
        finished = False
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
                finished = True
                if not self.completed_message:
                    self.completed_message = True
                    server.settle(self)
                for send in server.handle(item, "tcp", self.source, now, self):
                    if not self.transport.is_closing():
                        self.transport.write(send.data)
                if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    self.transport.abort()
                if self.transport.is_closing():
                    return
        if not _holds_partial_message(self.framer):
            self.message_started = None
        elif finished or self.message_started is None:
            self.message_started = clock  # the next message began in this segment


class EdgeServer:
    """Runs the core on its listening addresses until stopped."""

    def __init__(self, core, listens, *, metrics=None, link=None,
                 max_connections=MAX_TCP_CONNECTIONS, message_timeout=TCP_MESSAGE_TIMEOUT,
                 first_message_timeout=TCP_FIRST_MESSAGE_TIMEOUT, idle_timeout=TCP_IDLE_TIMEOUT):
        self.core = core
        self.listens = listens  # [(transport, host, port)]
        self.metrics_address = metrics
        self.link = link
        self.connections = set()
        self._per_source = {}
        self._unproven = {}  # connections without a complete message yet, oldest first
        self.max_connections = max_connections
        self.message_timeout = message_timeout
        self.first_message_timeout = first_message_timeout
        self.idle_timeout = idle_timeout
        self.tcp_timeouts = {"message": 0, "first_message": 0, "idle": 0}
        self.tcp_reclaimed = 0
        self.dropped = 0
        self.errors = 0
        self.started_at = time.time()
        self._servers = []
        self._udp = []
        self._tasks = []
        self.bound = []  # [(transport, host, port)] actually bound (port 0 resolved)
        self._hosts = []
        self._next_address_refresh = None  # monotonic; None: no wildcard to read again

    # --- lifecycle ---

    async def start(self):
        loop = asyncio.get_running_loop()
        for transport, host, port in self.listens:
            if transport == "udp":
                udp = UdpSocket.bind(self, host, port)
                udp.start(loop)
                self._udp.append(udp)
                bound = udp.sockname()
            else:
                server = await loop.create_server(lambda: TcpConnection(self), host, port,
                                                  reuse_address=True, backlog=1024)
                self._servers.append(server)
                bound = server.sockets[0].getsockname()
            self.bound.append((transport, bound[0], bound[1]))
            log.info("listening", extra={"fields": {"transport": transport,
                                                    "address": f"{bound[0]}:{bound[1]}"}})
        self._hosts = sorted({host for _, host, _ in self.bound})
        self.refresh_addresses()
        if self.metrics_address is not None:
            host, port = self.metrics_address
            self._servers.append(await asyncio.start_server(self._serve_metrics, host, port))
        self._tasks.append(asyncio.create_task(self._timers(), name="sipedge-timers"))
        self._tasks.append(asyncio.create_task(self._reap_tcp(), name="sipedge-tcp-timeouts"))
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
        conn.key = self.core.guard.source(conn.source[0])
        count = self._per_source.get(conn.key, 0)
        if count >= MAX_TCP_PER_SOURCE:
            return False
        if len(self.connections) >= self.max_connections:
            # Full: the oldest connection that has never sent a message makes room, so
            # idle sockets opened by many addresses cannot keep new phones out. Connections
            # that have sent one (registered phones) are never taken.
            if not self._unproven:
                return False
            victim = next(iter(self._unproven))
            victim.transport.abort()
            self.forget(victim)  # now: connection_lost comes later
            self.tcp_reclaimed += 1
        self._per_source[conn.key] = count + 1
        self.connections.add(conn)
        self._unproven[conn] = None
        return True

    def settle(self, conn):
        """The connection has sent its first complete message."""
        self._unproven.pop(conn, None)

    def forget(self, conn):
        self._unproven.pop(conn, None)
        if conn in self.connections:
            self.connections.discard(conn)
            left = self._per_source.get(conn.key, 1) - 1
            if left <= 0:
                self._per_source.pop(conn.key, None)
            else:
                self._per_source[conn.key] = left

    def refresh_addresses(self):
        """Tell the core its own addresses: the bound hosts, a wildcard read as the
        machine's addresses (read again every ADDRESS_REFRESH seconds)."""
        machine = ()
        if any(host in WILDCARDS for host in self._hosts):
            self._next_address_refresh = time.monotonic() + ADDRESS_REFRESH
            try:
                machine = machine_addresses()
            except OSError as exc:  # keep what the core has
                log.warning("could not read the machine's addresses: %s", exc)
                return
        own, reported = own_addresses(self._hosts, machine)
        self.core.set_listen_addresses(own, reported=reported or own)

    # --- time ---

    async def _timers(self):
        while True:
            now = time.time()
            try:
                if (self._next_address_refresh is not None
                        and time.monotonic() >= self._next_address_refresh):
                    self.refresh_addresses()
                self.core.tick(now)
            except Exception:
                self.errors += 1
                log.exception("timer failed")
            due = self.core.next_timer()
            delay = TIMER_CAP if due is None else min(max(due - time.time(), 0.01), TIMER_CAP)
            await asyncio.sleep(delay)

    async def _reap_tcp(self):
        shortest = min(self.message_timeout, self.first_message_timeout, self.idle_timeout)
        every = min(TIMER_CAP, shortest / 4)
        while True:
            await asyncio.sleep(every)
            self.reap_tcp(time.monotonic())

    def reap_tcp(self, clock):
        """Close the connections past a deadline: one pass over them, no timer each."""
        started = clock - self.message_timeout
        opened = clock - self.first_message_timeout
        heard = clock - self.idle_timeout
        overdue = []
        for conn in self.connections:
            # An unfinished message is closed without a word: a 400 would answer a request
            # that has not been made, and the client is not waiting for one.
            if conn.message_started is not None and conn.message_started < started:
                overdue.append((conn, "message"))
            elif not conn.completed_message and conn.opened_at < opened:
                overdue.append((conn, "first_message"))
            elif conn.last_activity < heard:
                overdue.append((conn, "idle"))
        for conn, reason in overdue:
            self.tcp_timeouts[reason] += 1
            log.debug("tcp %s timeout from %s:%s", reason, *conn.source)
            conn.transport.abort()
            self.forget(conn)

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
