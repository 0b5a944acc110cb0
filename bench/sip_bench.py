#!/usr/bin/env python3
"""The SIP edge as a registrar, against Kamailio, in one run (issue 5, "Performance").

    source scripts/bootstrap bench                  # SIPp and Kamailio, when missing
    .venv/bin/python bench/sip_bench.py            # the issue's size; rewrites its section
    .venv/bin/python bench/sip_bench.py --quick    # 100 users, short steps: prints only
    .venv/bin/python bench/sip_bench.py --phases bans --render-bans   # section 3 alone
    # the rates searched again, then the section of a full run with that one beside it:
    .venv/bin/python bench/sip_bench.py --phases rates --kamailio-children 1 --json again.json
    .venv/bin/python bench/sip_bench.py --render-json full.json --repeat-json again.json \
        --write-docs

Setup: a scratch SQLite database migrated by `controlplane db upgrade`, a platform key from
`controlplane api-key create`, `controlplane serve` (gunicorn, deploy/gunicorn.conf.py) on a
free 127.0.0.1 port; one tenant and N extensions created through the API
(POST /tenants/{trunk}/extensions, 4 clients each with a requests.Session), their SIP
passwords read back through GET .../sip-credentials; edges enrolled with POST /edges and
started as `python -m sipedge run` processes. Then:

1. **memory per binding**, in a child process started first (while the control plane is
   set up): a `sipedge.core.EdgeCore` loaded with N identities (edgeview's extension
   payloads) through `config.begin_snapshot` / `add_snapshot_record` / `snapshot_done`,
   then fed real REGISTER bytes through `core.receive` (first without credentials, the
   nonce taken from the 401, then with the MD5 digest), each phone from its own source
   address and port; events drained every 200 registrations and timers ticked every
   1,000, as the link and the shell do. The bindings' bytes: every object reachable from
   the registrar and the core's indexes of bindings (sys.getsizeof, each object once, by
   type); and the process's RSS growth.
2. **ban propagation**, once per control plane database (`--control-plane-db`: SQLite, and
   PostgreSQL in a scratch database beside TRUNKLINE_BENCH_POSTGRES_URL, dropped at the
   end): three edges. From an attacker address of 127.0.0.0/8 (a fresh one
   per trial), wrong-password REGISTERs (an MD5 digest computed with a wrong password) to
   edge 1 up to the policy's max_retry-th failure; from the moment its 403 came back,
   OPTIONS from the same address to all three edges every ~2 ms until none has answered
   for 100 ms. Per edge: the send time of the first probe after its last answer; per
   trial, the last of the three.
3. **registrations per second**: SIPp (bench/sip/register.xml: REGISTER, 401, REGISTER
   with credentials, 200; one user per call, cycling through the injection file) against
   one edge process connected to the control plane; then, the control plane stopped, a new
   edge process serving the configuration it saved on disk, and another with its core run
   as plain Python (TRUNKLINE_PURE_PYTHON=1; the others run it compiled); then Kamailio
   (bench/sip/kamailio.cfg: auth with nonce-count, pv_www_authenticate with the HA1 of each
   user ID from an htable loaded from a db_text file, usrloc in memory, registrar save)
   with 1 UDP child, then with Kamailio's default children; the same users and the same
   scenario for all. For each: every user registered once (warm-up), then SIPp's rate
   stepped up (doubling until a step is not clean, then bisecting), a fixed duration per
   step. A step is clean when every call succeeded, SIPp counted no retransmission and no
   unexpected or stray message, and the calls took at most 5 % longer than the step (SIPp
   kept the rate). The highest clean rate is the result, with the p50/p99 of SIPp's
   response time of the whole exchange (-trace_rtt, RTD 1).

Only addresses of 127.0.0.0/8 are contacted. Every loop is bounded in count and in time;
every process started is stopped at the end, also on errors.
"""

import argparse
import datetime as dt
import gc
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SIP_DIR = BENCH / "sip"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from benchlib import load_average, summary, write_section  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:sip_bench -->", "<!-- /bench:sip_bench -->"
HOST = "127.0.0.1"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
KAMAILIO_DEFAULT_CHILDREN = 8  # Kamailio's `children` when the configuration says nothing
KAMAILIO_SHM_MB, KAMAILIO_PKG_MB = 64, 8
FIRST_EXTENSION = 1000
STEP_PAUSE = 1.5  # seconds at least between steps (then until the server is idle)
SIPP_GRACE = 20.0  # seconds a step may run beyond its duration before SIPp is killed
CLEAN_SLACK = 1.05  # a step whose calls took longer than this times its duration: not kept up
MIN_RATE = 25
MAX_RATE = 200_000
PROBE_INTERVAL = 0.002
PROBE_QUIET = 0.1  # an edge that has not answered for this long has dropped the address
PROBE_LIMIT = 5.0  # seconds a trial probes at most
ATTACKER_NET = "127.0.0."  # attackers are 127.0.0.101, .102, ... (never the edges' .1)
PG_ADMIN_URL = os.environ.get("TRUNKLINE_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass(frozen=True)
class Size:
    name: str
    users: int
    step_seconds: float
    start_rate: int
    max_steps: int
    resolution: float  # stop bisecting when bad / good is at most this
    target_seconds: float  # time bound of one target's search
    bindings: int
    trials: int


FULL = Size("full", users=2000, step_seconds=10.0, start_rate=250, max_steps=14,
            resolution=1.1, target_seconds=200.0, bindings=100_000, trials=20)
QUICK = Size("quick", users=100, step_seconds=3.0, start_rate=100, max_steps=5,
             resolution=1.5, target_seconds=40.0, bindings=5_000, trials=3)


# --- small helpers --------------------------------------------------------------------------


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """User + system CPU time a process has used (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def children_of(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def free_sip_port(host=HOST):
    """A port free for both UDP and TCP on `host`."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind((host, port))
                tcp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def check_api(response, expected=200):
    if response.status_code != expected:
        raise RuntimeError(f"{response.request.method} {response.url} -> "
                           f"{response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


class Processes:
    """Every process the bench starts, so that all of them are stopped, also on errors."""

    def __init__(self):
        self.items = []

    def add(self, name, proc, stop):
        self.items.append((name, proc, stop))
        return proc

    def stop_all(self):
        for name, proc, stop in reversed(self.items):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                log(f"stopping {name}: {exc!r}")
                if proc is not None and proc.poll() is None:
                    proc.kill()
        self.items.clear()


def terminate(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- the control plane and its data ---------------------------------------------------------


def scratch_postgres_database(processes):
    """An empty database beside PG_ADMIN_URL, dropped when `processes` stop (after the
    control plane using it, which is registered later). Returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"trunkline_sip_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    processes.add("scratch PostgreSQL database", None, drop)
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


class Platform:
    """A control plane on a scratch database (SQLite in `workdir`, or the PostgreSQL
    database at `database_url`), with one tenant of `users` extensions."""

    def __init__(self, workdir, processes, users, database_url=None):
        from api_bench import controlplane, new_http_session
        from tenants.crypto import SecretBox

        self.workdir, self.processes = workdir, processes
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{workdir / 'controlplane.db'}"
        self.backend = "postgresql" if self.database_url.startswith("postgresql") else "sqlite"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")}
        self.env.update({
            "CONTROLPLANE_DATABASE_URL": self.database_url,
            "CONTROLPLANE_DATA_DIR": str(workdir),
            "CONTROLPLANE_SECRET_KEYS": SecretBox.generate_key(),
            "CONTROLPLANE_LOG_LEVEL": "warning",
        })
        controlplane(self.env, "db", "upgrade")
        self.key = controlplane(self.env, "api-key", "create", "--role", "platform",
                                "--name", "sip-bench").strip().splitlines()[-1]
        folder = workdir / "serve"
        folder.mkdir()
        self.server = ControlPlaneServer(self.env, folder, processes)
        self.base = self.server.base
        self.url = self.base.rsplit("/api/v1", 1)[0]
        self._session = new_http_session
        self.api = new_http_session(self.key)
        self.users = []  # [(user_id, password)]
        self.realm = None
        self.create_users(users)

    def workers(self):
        return children_of(self.server.proc.pid)

    def create_users(self, count, threads=4):
        tenant = check_api(self.api.post(f"{self.base}/tenants", json={"name": "SIP bench"}),
                           201)
        self.trunk = tenant["trunk_number"]
        numbers = [str(FIRST_EXTENSION + i) for i in range(count)]
        chunks = [numbers[i::threads] for i in range(threads)]

        def create(chunk):
            out = []
            with self._session(self.key) as http:
                for number in chunk:
                    check_api(http.post(f"{self.base}/tenants/{self.trunk}/extensions",
                                        json={"number": number, "name": f"Desk {number}"}), 201)
                for number in chunk:
                    creds = check_api(http.get(
                        f"{self.base}/tenants/{self.trunk}/extensions/{number}/sip-credentials"))
                    out.append((creds["user_id"], creds["password"], creds["realm"]))
            return out

        began = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            created = [row for rows in pool.map(create, chunks) for row in rows]
        self.create_seconds = time.perf_counter() - began
        created.sort()
        self.users = [(user_id, password) for user_id, password, _ in created]
        realms = {realm for _, _, realm in created}
        if len(realms) != 1:
            raise RuntimeError(f"several realms: {realms}")
        self.realm = realms.pop()

    def enroll(self, name):
        return check_api(self.api.post(f"{self.base}/edges", json={"name": name}), 201)["token"]

    def ban_policy(self):
        return check_api(self.api.get(f"{self.base}/ban-policy"))

    def close(self):
        self.api.close()


class ControlPlaneServer:
    """`controlplane serve` in a subprocess (api_bench's Server, but registered for cleanup
    before it is waited on, and patient with a slow first answer)."""

    def __init__(self, env, folder, processes, timeout=60.0):
        from api_bench import free_port, new_http_session

        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}/api/v1"
        self.log_path = folder / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--bind", f"{HOST}:{self.port}"],
            env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        processes.add("control plane", self.proc, self.stop)
        import requests

        deadline = time.monotonic() + timeout
        with new_http_session() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-2000:]}")
                try:
                    if http.get(f"{self.base}/openapi.json", timeout=10).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s")

    def stop(self):
        terminate(self.proc, timeout=30)
        self._log.close()

    def errors(self):
        text = self.log_path.read_text(errors="replace")
        return {"tracebacks": text.count("Traceback"),
                "5xx": len(re.findall(r'" 5\d\d ', text))}


class EdgeProcess:
    """`python -m sipedge run`, UDP and TCP on one port of 127.0.0.1, metrics on another.

    `like`: an edge stopped before, whose token and state folder this one takes (started
    while the control plane is down, it serves the configuration saved on disk)."""

    def __init__(self, platform, workdir, name, processes, like=None, log_level="info",
                 pure_python=False):
        from api_bench import free_port
        from sipedge import compiled

        self.name = name
        self.port = free_sip_port()
        self.address = (HOST, self.port)
        self.metrics_port = free_port()
        self.state_dir = like.state_dir if like else workdir / f"edge-{name}"
        self.token_file = like.token_file if like else workdir / f"edge-{name}.token"
        self.log_path = workdir / f"edge-{name}.log"
        if not like:
            self.token_file.write_text(platform.enroll(f"sip-bench-{name}"))
        args = [sys.executable, "-m", "sipedge", "run", "--control-plane", platform.url,
                "--token-file", str(self.token_file),
                "--listen", f"udp:{HOST}:{self.port}", "--listen", f"tcp:{HOST}:{self.port}",
                "--state-dir", str(self.state_dir), "--metrics", f"{HOST}:{self.metrics_port}",
                "--log-level", log_level]
        env = dict(platform.env)
        if pure_python:  # the core's source as plain Python, not its compiled build
            env[compiled.PURE_ENV] = "1"
        else:
            env.pop(compiled.PURE_ENV, None)
        self.core = None  # the build of the core it runs, from its "edge running" line
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        processes.add(f"edge {name}", self.proc, self.stop)
        wanted = "serving the configuration saved on disk" if like else "snapshot applied"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge {name} exited:\n{self.log()[-3000:]}")
            text = self.log()
            if wanted in text and "edge running" in text:
                self.core = next(json.loads(line).get("core") for line in text.splitlines()
                                 if line.startswith("{") and '"edge running"' in line)
                wanted = "python" if pure_python else "compiled"
                if self.core != wanted:  # it would measure another build than it says
                    raise RuntimeError(f"edge {name} runs its core {self.core}, not {wanted} "
                                       "(source scripts/bootstrap compiles it)")
                return
            time.sleep(0.05)
        raise RuntimeError(f"edge {name}: not ready within 60 s:\n{self.log()[-3000:]}")

    def metrics(self):
        """A few of the edge's Prometheus metrics, by name (labels folded in)."""
        import requests

        try:
            text = requests.get(f"http://{HOST}:{self.metrics_port}/metrics", timeout=5).text
        except requests.RequestException:
            return {}
        out = {}
        for line in text.splitlines():
            match = re.match(r"^(sipedge_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
            if match:
                out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return out

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        terminate(self.proc)

    def errors(self):
        text = self.log()
        return {"tracebacks": text.count("Traceback"),
                "errors": len(re.findall(r'"level": "error"', text))}


class Kamailio:
    """Kamailio as an equivalent registrar (bench/sip/kamailio.cfg) on a port of its own."""

    def __init__(self, workdir, users, realm, children, processes):
        self.children = children
        self.port = free_sip_port()
        self.address = (HOST, self.port)
        self.dir = workdir / f"kamailio-{children or 'default'}"
        db = self.dir / "db"
        db.mkdir(parents=True)
        (self.dir / "run").mkdir()
        # db_text: a header naming the columns, then one row per user ID (key = user ID,
        # value = HA1, string value_type 0); htable's table version is 2.
        (db / "version").write_text("table_name(string) table_version(int) \nhtable:2\n")
        rows = ["id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) "
                "expires(int) "]
        rows += [f"{i + 1}:{user}:0:0:{md5(f'{user}:{realm}:{password}')}:0"
                 for i, (user, password) in enumerate(users)]
        (db / "htable").write_text("\n".join(rows) + "\n")
        size = max(4, math.ceil(math.log2(max(len(users), 2))))  # 2**size slots
        cfg = (SIP_DIR / "kamailio.cfg").read_text()
        cfg = (cfg.replace("@@HOST@@", HOST).replace("@@PORT@@", str(self.port))
               .replace("@@MODULES@@", KAMAILIO_MODULES).replace("@@DBDIR@@", str(db))
               .replace("@@HTSIZE@@", str(min(size, 16))).replace("@@REALM@@", realm))
        if children is None:
            cfg = cfg.replace("children=@@CHILDREN@@\n",
                              "# children: not set, Kamailio's default\n")
        else:
            cfg = cfg.replace("@@CHILDREN@@", str(children))
        self.cfg_path = self.dir / "kamailio.cfg"
        self.cfg_path.write_text(cfg)
        self.log_path = self.dir / "kamailio.log"
        check = subprocess.run(["kamailio", "-c", "-f", str(self.cfg_path)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c failed:\n{check.stderr[-3000:]}")
        with open(self.log_path, "wb") as out:
            # -DD: the main process stays in the foreground (its children still fork);
            # -E: log to standard error.
            self.proc = subprocess.Popen(
                ["kamailio", "-f", str(self.cfg_path), "-DD", "-E",
                 "-m", str(KAMAILIO_SHM_MB), "-M", str(KAMAILIO_PKG_MB),
                 "-Y", str(self.dir / "run")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        processes.add(f"kamailio ({children or 'default'} children)", self.proc, self.stop)
        self._wait_ready()
        self.processes = len(self.pids())

    def _wait_ready(self, timeout=30):
        """Until an OPTIONS is answered (the children are up and the table loaded)."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kamailio exited:\n{self.log()[-3000:]}")
                sock.sendto(sip_request("OPTIONS", self.address, sock.getsockname(), "probe"),
                            self.address)
                try:
                    if sip_status(sock.recvfrom(65535)[0]) == 200:
                        return
                except socket.timeout:
                    pass
        raise RuntimeError(f"kamailio not answering after {timeout}s:\n{self.log()[-3000:]}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self):
        return [self.proc.pid, *children_of(self.proc.pid)]

    def stop(self):
        children = children_of(self.proc.pid)
        terminate(self.proc)
        for pid in children:  # normally gone with the main process
            try:
                if str(self.cfg_path) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def errors(self):
        text = self.log()
        return {"errors": text.count("ERROR:"), "crit": text.count("CRITICAL:")}


# --- SIP over a socket of our own -----------------------------------------------------------


def sip_request(method, target, source, user, *, cseq=1, call_id=None, extra=()):
    host, port = target
    lines = [
        f"{method} sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{secrets.token_hex(8)};rport",
        f"From: <sip:{user}@{host}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id or secrets.token_hex(8)}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "User-Agent: trunkline-sip-bench",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sip_status(data):
    match = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(match.group(1)) if match else None


def digest_header(user, realm, password, nonce, uri, cnonce=None):
    cnonce, nc = cnonce or secrets.token_hex(4), "00000001"
    ha1 = md5(f"{user}:{realm}:{password}")
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{md5(f'REGISTER:{uri}')}")
    return (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"')


def md5_nonce(reply):
    text = reply.decode(errors="replace")
    for line in text.split("\r\n"):
        if line.lower().startswith("www-authenticate:") and "MD5" in line.upper():
            return re.search(r'nonce="([^"]+)"', line).group(1)
    raise RuntimeError(f"no MD5 challenge in {text[:300]!r}")


# --- phase 1: ban propagation ---------------------------------------------------------------


def exchange(sock, target, data, timeout):
    sock.settimeout(timeout)
    sock.sendto(data, target)
    end = time.monotonic() + timeout
    while True:
        try:
            reply, sender = sock.recvfrom(65535)
        except socket.timeout:
            return None, time.perf_counter()
        if sender == target:
            return reply, time.perf_counter()
        if time.monotonic() > end:
            return None, time.perf_counter()


def wrong_password_failure(sock, edge_address, user, realm):
    """One REGISTER, its 401, one REGISTER with a digest of a wrong password: the final
    status (None: no answer) and when it came back."""
    call_id = secrets.token_hex(8)
    source = sock.getsockname()
    reply, at = exchange(sock, edge_address,
                         sip_request("REGISTER", edge_address, source, user, call_id=call_id),
                         0.5)
    if reply is None or sip_status(reply) != 401:
        return (None if reply is None else sip_status(reply)), at
    uri = f"sip:{edge_address[0]}:{edge_address[1]}"
    auth = digest_header(user, realm, "not-the-password", md5_nonce(reply), uri)
    reply, at = exchange(sock, edge_address, sip_request(
        "REGISTER", edge_address, source, user, cseq=2, call_id=call_id,
        extra=[f"Contact: <sip:{user}@{source[0]}:{source[1]}>", "Expires: 60", auth]), 0.5)
    return (None if reply is None else sip_status(reply)), at


def probe_until_dropped(sock, edges, t0, trial):
    """OPTIONS to every edge every PROBE_INTERVAL until none has answered for PROBE_QUIET.
    Returns per edge the seconds from t0 to the first probe after its last answer (None if
    it still answered when the time bound came)."""
    sock.setblocking(False)
    source = sock.getsockname()
    sent = {i: [] for i in range(len(edges))}  # edge -> [send time]
    last_answer = {i: None for i in range(len(edges))}  # edge -> index of the last answered
    index_of = {edge.address: i for i, edge in enumerate(edges)}
    began = time.perf_counter()
    deadline = began + PROBE_LIMIT
    seq = 0
    while True:
        now = time.perf_counter()
        for i, edge in enumerate(edges):
            seq += 1
            data = sip_request("OPTIONS", edge.address, source, "probe",
                               call_id=f"t{trial}-e{i}-n{len(sent[i])}")
            sent[i].append(time.perf_counter())
            try:
                sock.sendto(data, edge.address)
            except BlockingIOError:
                pass
        while True:
            try:
                reply, sender = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            match = re.search(rb"Call-ID: t\d+-e(\d+)-n(\d+)", reply)
            if match and sender in index_of:
                i, n = int(match.group(1)), int(match.group(2))
                if last_answer[i] is None or n > last_answer[i]:
                    last_answer[i] = n
        now = time.perf_counter()
        quiet = all(
            (sent[i][last_answer[i] + 1] if last_answer[i] is not None and
             last_answer[i] + 1 < len(sent[i]) else (sent[i][0] if last_answer[i] is None
                                                     else math.inf)) < now - PROBE_QUIET
            for i in sent)
        if quiet or now > deadline:
            break
        time.sleep(max(0.0, PROBE_INTERVAL - (time.perf_counter() - now)))
    sock.setblocking(True)
    result = []
    for i in sent:
        n = last_answer[i]
        first_silent = 0 if n is None else n + 1
        if first_silent >= len(sent[i]) or sent[i][first_silent] >= now - PROBE_QUIET:
            result.append(None)  # still answering at the end
        else:
            result.append(sent[i][first_silent] - t0)
    return result, {i: len(v) for i, v in sent.items()}


def phase_bans(platform, workdir, processes, size):
    workdir.mkdir(parents=True, exist_ok=True)
    policy = platform.ban_policy()
    max_retry = int(policy["max_retry"])
    # Debug logs: edge 1 logs each event batch delivered (its POST returned: the control
    # plane has decided), edges 2 and 3 each change batch applied, with ms timestamps.
    edges = [EdgeProcess(platform, workdir, f"ban-{i + 1}", processes, log_level="debug")
             for i in range(3)]
    user = platform.users[0][0]
    trials = []
    try:
        time.sleep(1.0)  # every edge has its long-poll in
        for t in range(size.trials):
            address = f"{ATTACKER_NET}{101 + t}"
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, 0))
                statuses, at = [], None
                for _ in range(max_retry):
                    status, at = wrong_password_failure(sock, edges[0].address, user,
                                                        platform.realm)
                    statuses.append(status)
                    if status != 403:
                        break
                if statuses != [403] * max_retry:
                    trials.append({"address": address, "statuses": statuses, "error": True})
                    log(f"  trial {t + 1}: unexpected answers {statuses}")
                    continue
                at_wall = at + (time.time() - time.perf_counter())
                dropped, probes = probe_until_dropped(sock, edges, at, t)
            finally:
                sock.close()
            known = [d for d in dropped if d is not None]
            trial = {"address": address, "statuses": statuses, "per_edge": dropped,
                     "probes": probes, "all": max(known) if len(known) == len(edges) else None,
                     "t0_wall": at_wall}
            trials.append(trial)
            log(f"  trial {t + 1}/{size.trials} {address}: dropped by edge 1/2/3 after "
                + " / ".join("never" if d is None else f"{d * 1000:.1f}" for d in dropped)
                + " ms")
            time.sleep(0.3 + (t % 7) * 0.1)  # not in step with the edges' 0.2 s batches
        bans = check_api(platform.api.get(f"{platform.base}/bans", params={"page_size": 1000}))
    finally:
        for edge in edges:
            edge.stop()
    split_from_logs(trials, edges)
    fleet_bans = bans if isinstance(bans, list) else bans.get("items", bans)
    all_times = [t["all"] for t in trials if t.get("all") is not None]
    return {
        "backend": platform.backend,
        "policy": policy, "trials": trials, "all": summary(all_times),
        "edge2": summary([t["per_edge"][1] for t in trials
                          if t.get("per_edge") and t["per_edge"][1] is not None]),
        "edge3": summary([t["per_edge"][2] for t in trials
                          if t.get("per_edge") and t["per_edge"][2] is not None]),
        "edge1": summary([t["per_edge"][0] for t in trials
                          if t.get("per_edge") and t["per_edge"][0] is not None]),
        "never": sum(1 for t in trials if t.get("per_edge") and t["all"] is None),
        "errors": sum(1 for t in trials if t.get("error")),
        "fleet_bans": len(fleet_bans) if isinstance(fleet_bans, list) else None,
        "edge_errors": [e.errors() for e in edges],
        "decided": summary([t["decided"] for t in trials if t.get("decided") is not None]),
        "fanout": summary([f for t in trials for f in t.get("fanout", ()) if f is not None]),
    }


def log_times(edge, message):
    """Wall-clock times (ms resolution) of the edge's JSON log lines with this message."""
    out = []
    for line in edge.log().splitlines():
        if message not in line:
            continue
        try:
            entry = json.loads(line)
            if not entry.get("message", "").startswith(message):
                continue
            out.append(dt.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                       .replace(tzinfo=dt.timezone.utc).timestamp())
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out)


def split_from_logs(trials, edges):
    """Where the time goes, from the edges' logs: deciding 403 -> edge 1's event batch
    delivered (the control plane answered its POST: the ban is decided), then -> edges 2
    and 3 applied a change batch (the ban from the feed). Log times are truncated to ms."""
    delivered = log_times(edges[0], "event batch delivered")
    applied = [log_times(edge, "changes applied") for edge in edges[1:]]
    slack = 0.0015
    for trial in trials:
        t0 = trial.get("t0_wall")
        if t0 is None:
            continue
        firsts = [next((t for t in times if t >= t0 - slack), None) for times in applied]
        known = [f for f in firsts if f is not None]
        if not known:
            continue
        batches = [t for t in delivered if t0 - slack <= t <= min(known) + slack]
        if not batches:
            continue
        trial["decided"] = max(0.0, batches[-1] - t0)
        trial["fanout"] = [None if f is None else max(0.0, f - batches[-1]) for f in firsts]


# --- phase 2: registrations per second ------------------------------------------------------


def write_users_csv(path, users):
    lines = ["SEQUENTIAL"]
    lines += [f"{user};[authentication username={user} password={password}]"
              for user, password in users]
    path.write_text("\n".join(lines) + "\n")


def read_stat(path):
    """The last line of SIPp's -trace_stat file, as a dict."""
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    if len(lines) < 2:
        return {}
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values))


def stat_int(stat, name):
    try:
        return int(stat.get(name, "0") or 0)
    except ValueError:
        return 0


class Sipp:
    """Runs one SIPp step and reads its results."""

    def __init__(self, workdir, users_csv):
        self.workdir, self.users_csv = workdir, users_csv
        self.count = 0

    def run(self, target, rate, calls, duration):
        self.count += 1
        run_dir = self.workdir / f"sipp-{self.count:03d}"
        run_dir.mkdir()
        stat_file = run_dir / "stat.csv"
        args = ["sipp", f"{target[0]}:{target[1]}", "-sf", str(SIP_DIR / "register.xml"),
                "-inf", str(self.users_csv), "-i", HOST, "-p", str(free_sip_port()),
                "-t", "u1", "-r", str(rate), "-rp", "1000", "-m", str(calls),
                "-l", str(max(200, rate)), "-buff_size", str(4 << 20),
                "-timeout", f"{int(duration + SIPP_GRACE)}s", "-nostdin",
                "-trace_stat", "-stf", str(stat_file), "-fd", "1",
                "-trace_rtt", "-rtt_freq", "1", "-trace_err"]
        began = time.perf_counter()
        proc = subprocess.Popen(args, cwd=run_dir, stdout=subprocess.DEVNULL,
                                stderr=open(run_dir / "stderr.txt", "wb"),
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + duration + SIPP_GRACE + 15
        usage = None
        try:
            while time.monotonic() < deadline:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.02)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        seconds = time.perf_counter() - began
        stat = read_stat(stat_file) if stat_file.exists() else {}
        rtts = []
        for rtt_file in run_dir.glob("*_rtt.csv"):
            for line in rtt_file.read_text(errors="replace").splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 3 and parts[2].strip() == "1":
                    try:
                        rtts.append(float(parts[1]))
                    except ValueError:
                        pass
        errors_log = "".join(p.read_text(errors="replace")[:2000]
                             for p in run_dir.glob("*_errors.log"))
        result = {
            "rate": rate, "calls": calls, "returncode": proc.returncode, "wall": seconds,
            "successful": stat_int(stat, "SuccessfulCall(C)"),
            "failed": stat_int(stat, "FailedCall(C)"),
            "retransmissions": stat_int(stat, "Retransmissions(C)"),
            "unexpected": stat_int(stat, "FailedUnexpectedMessage(C)"),
            "out_of_call": stat_int(stat, "OutOfCallMsgs(C)"),
            "dead_call": stat_int(stat, "DeadCallMsgs(C)"),
            "elapsed": stat_epoch(stat, "CurrentTime") - stat_epoch(stat, "StartTime"),
            "rtt": summary(rtts),
            "sipp_cpu": (usage.ru_utime + usage.ru_stime) if usage else math.nan,
            "errors_log": errors_log[:500],
        }
        shutil.rmtree(run_dir, ignore_errors=True)  # rtt files are big
        return result


def stat_epoch(stat, name):
    """A time of SIPp's stat file: "date<TAB>time<TAB>epoch seconds"."""
    try:
        return float(stat.get(name, "").split("\t")[-1])
    except ValueError:
        return math.nan


def clean(step, duration):
    return (step["successful"] == step["calls"] and step["failed"] == 0
            and step["retransmissions"] == 0 and step["unexpected"] == 0
            and step["dead_call"] == 0 and step["out_of_call"] == 0
            and step["elapsed"] == step["elapsed"] and step["elapsed"] <= duration * CLEAN_SLACK
            + 0.5)


def wait_idle(server, limit=15.0):
    """STEP_PAUSE, then until the server's processes stop using CPU (at most `limit` s):
    what an overloaded step left queued is done before the next one starts."""
    time.sleep(STEP_PAUSE)
    deadline = time.monotonic() + limit
    last = sum(cpu_seconds(pid) for pid in server.pids())
    while time.monotonic() < deadline:
        time.sleep(0.25)
        used = sum(cpu_seconds(pid) for pid in server.pids())
        if used - last < 0.02:
            return
        last = used


def marginal(step, duration):
    """Not clean, but only by retransmissions: no call lost, the rate held."""
    return (not step["clean"] and step["successful"] == step["calls"] and step["failed"] == 0
            and step["elapsed"] == step["elapsed"]
            and step["elapsed"] <= duration * CLEAN_SLACK + 0.5)


def run_step(sipp, server, rate, duration, platform=None):
    calls = max(1, int(round(rate * duration)))
    pids = server.pids()
    cpu_before = {pid: cpu_seconds(pid) for pid in pids}
    cp_before = {pid: cpu_seconds(pid) for pid in platform.workers()} if platform else {}
    load_before = load_average()
    step = sipp.run(server.address, rate, calls, duration)
    step["server_cpu"] = sum(cpu_seconds(pid) - before for pid, before in cpu_before.items())
    step["cp_cpu"] = sum(cpu_seconds(pid) - before for pid, before in cp_before.items())
    step["load"] = (load_before, load_average())
    step["clean"] = clean(step, duration)
    step["rss_kib"] = sum(rss_kib(pid) or 0 for pid in server.pids())
    return step


def find_max_rate(name, sipp, server, size, platform=None):
    """Double the rate until a step is not clean, then bisect; bounded in steps and time."""
    log(f"  {name}: warm-up, every one of {size.users:,} users registered once")
    warm_rate = min(200, max(MIN_RATE, size.users // 4))
    warm = run_step(sipp, server, warm_rate, size.users / warm_rate, platform)
    steps = []
    good, bad = None, None
    rate = size.start_rate
    began = time.monotonic()
    attempts = 0

    def attempt(rate):
        nonlocal attempts
        attempts += 1
        wait_idle(server)
        step = run_step(sipp, server, rate, size.step_seconds, platform)
        log(f"  {name}: {rate:>6,}/s  {'clean' if step['clean'] else 'NOT clean'}: "
            f"{step['successful']:,}/{step['calls']:,} ok, {step['failed']} failed, "
            f"{step['retransmissions']} retrans, {step['elapsed']:.1f} s, "
            f"p99 {step['rtt']['p99']:.0f} ms; server CPU {step['server_cpu']:.1f} s, "
            f"SIPp CPU {step['sipp_cpu']:.1f} s")
        return step

    while attempts < size.max_steps and time.monotonic() - began < size.target_seconds:
        step = attempt(rate)
        if not step["clean"] and marginal(step, size.step_seconds) \
                and attempts < size.max_steps:
            # Every call went through at the rate, only some were retransmitted: on this
            # shared machine that can be another job's burst. One more try decides.
            first = {k: step[k] for k in ("failed", "retransmissions", "elapsed", "rtt",
                                          "server_cpu", "load")}
            step = attempt(rate)
            step["first_attempt"] = first
        steps.append(step)
        if step["clean"]:
            good = rate if good is None else max(good, rate)
        else:
            bad = rate if bad is None else min(bad, rate)
        if bad is None:
            if rate * 2 > MAX_RATE:
                break
            rate *= 2
        elif good is None:
            if rate // 2 < MIN_RATE:
                break
            rate //= 2
        else:
            if bad / good <= size.resolution:
                break
            rate = int(round(math.sqrt(good * bad)))
            if rate in (good, bad):
                break
    best = max((s for s in steps if s["clean"]), key=lambda s: s["rate"], default=None)
    return {"name": name, "warmup": warm, "steps": steps, "best": best, "good": good,
            "bad": bad, "seconds": time.monotonic() - began, "attempts": attempts}


def phase_rates(platform, workdir, processes, size, args):
    users_csv = workdir / "users.csv"
    write_users_csv(users_csv, platform.users)
    sipp = Sipp(workdir, users_csv)
    results = []

    def edge_run(edge, label, variant, cp):
        time.sleep(1.0)
        result = find_max_rate(label, sipp, edge, size, cp)
        metrics = edge.metrics()
        result.update(kind="edge", variant=variant, core=edge.core, processes=1,
                      errors=edge.errors(),
                      rss_kib=rss_kib(edge.proc.pid), metrics={
                          k: v for k, v in metrics.items()
                          if k.split("{")[0] in ("sipedge_events_queued", "sipedge_events_dropped",
                                                 "sipedge_retransmissions", "sipedge_errors",
                                                 "sipedge_registrations")})
        results.append(result)

    # The edge as deployed: connected, reporting every registration to the control plane
    # (which runs on the same 2 CPUs here and ingests those events meanwhile).
    edge = EdgeProcess(platform, workdir, "rate", processes)
    try:
        edge_run(edge, "edge, control plane connected", "connected", platform)
    finally:
        began = time.monotonic()
        edge.stop()
        log(f"  edge stopped in {time.monotonic() - began:.1f} s")
    # The edge as a registrar alone, like Kamailio: the control plane stopped, a new edge
    # process serving the configuration it saved on disk (events queue, bounded).
    began = time.monotonic()
    platform.server.stop()
    log(f"  control plane stopped in {time.monotonic() - began:.1f} s")
    alone = EdgeProcess(platform, workdir, "rate-alone", processes, like=edge)
    try:
        edge_run(alone, "edge, control plane stopped", "alone", None)
    finally:
        alone.stop()
    # The same, its core run from source as plain Python (the build without a compiler).
    plain = EdgeProcess(platform, workdir, "rate-alone-python", processes, like=edge,
                        pure_python=True)
    try:
        edge_run(plain, "edge, control plane stopped, core as plain Python", "alone-python",
                 None)
    finally:
        plain.stop()

    for children in args.kamailio_children:
        kam = Kamailio(workdir, platform.users, platform.realm, children, processes)
        try:
            label = (f"Kamailio, {children} UDP child" + ("ren" if children != 1 else "")
                     if children else
                     f"Kamailio, default children ({KAMAILIO_DEFAULT_CHILDREN} UDP)")
            result = find_max_rate(label, sipp, kam, size)
            result.update(kind="kamailio", children=children or KAMAILIO_DEFAULT_CHILDREN,
                          default_children=children is None, processes=kam.processes,
                          errors=kam.errors(), rss_kib=sum(rss_kib(p) or 0 for p in kam.pids()))
            results.append(result)
        finally:
            kam.stop()
    return results


# --- phase 3: memory per binding ------------------------------------------------------------


def extension_record(i, realm, per_tenant=100):
    """An extension of edgeview's extension_payload shape: tenant 10000 + i // 100."""
    trunk = str(10000 + i // per_tenant)
    number = str(100 + i % per_tenant)
    user_id = trunk + number
    password = f"pw-{i:07d}-{user_id}"
    plain = f"{user_id}:{realm}:{password}".encode()
    return user_id, password, {"kind": "extension", "key": user_id, "payload": {
        "trunk_number": trunk, "number": number, "realm": realm,
        "identities": [{"user_id": user_id, "endpoint": "home",
                        "ha1_md5": hashlib.md5(plain).hexdigest(),
                        "ha1_sha256": hashlib.sha256(plain).hexdigest()}],
        "ring_mode": "home",
        "dual_registration": {"enabled": False, "sip_peer": False,
                              "external_number": None, "trunk": None},
        "caller_id": {"name": f"Desk {number}", "number": None},
        "voicemail_enabled": True, "rings_before_voicemail": 4,
        "forwarding": {k: {"enabled": False, "destination": None}
                       for k in ("always", "busy", "no_answer")},
        "class_of_service": "national", "concurrent_call_limit": 2,
        "ring_groups": [],
    }}


def deep_size(roots, skip_ids=frozenset()):
    """Bytes of every object reachable from `roots` (sys.getsizeof, each object once),
    by type; classes, modules and functions are not followed (shared by everything)."""
    import types

    seen, total, by_type = set(skip_ids), 0, {}
    stack = list(roots)
    skip_types = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip_types):
            continue
        seen.add(id(obj))
        size = sys.getsizeof(obj)
        total += size
        name = type(obj).__name__
        by_type[name] = by_type.get(name, 0) + size
        stack.extend(gc.get_referents(obj))
    return total, by_type


def memory_child(count):
    """Runs in a child process: EdgeCore with `count` identities, then `count` phones
    registering through core.receive. Prints its figures as one JSON line."""
    from sipedge.core import EdgeCore

    realm = "sip.trunkline.local"
    start = 1_800_000_000.0
    core = EdgeCore(nonce_secrets=[b"k" * 32], realm=realm)
    core.set_listen_addresses([HOST])
    core.config.begin_snapshot(1)
    users = []
    for i in range(count):
        user_id, password, record = extension_record(i, realm)
        users.append((user_id, password))
        core.config.add_snapshot_record(record)
    core.snapshot_done(start)
    gc.collect()
    rss_before = rss_kib(os.getpid())
    statuses = {}
    caches = None
    now = start
    began = time.perf_counter()
    for i, (user_id, password) in enumerate(users):
        now = start + 1 + i * 0.001  # 1,000 registrations per (simulated) second
        # Each phone from its own address of 127.0.0.0/8 and port (fed in process only).
        n = i + 2
        source = (f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 5060 + i % 1000)
        call_id = f"{uuid.uuid4()}"
        branch = secrets.token_hex(8)

        def request(cseq, extra=()):
            return ("\r\n".join([
                f"REGISTER sip:{realm} SIP/2.0",
                f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{branch}{cseq};rport",
                f"From: <sip:{user_id}@{realm}>;tag={secrets.token_hex(5)}",
                f"To: <sip:{user_id}@{realm}>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{user_id}@{source[0]}:{source[1]};transport=udp>",
                "Max-Forwards: 70",
                "Expires: 3600",
                "User-Agent: Yealink SIP-T46S 66.86.0.15 (bench)",
                *extra,
                "Content-Length: 0"]) + "\r\n\r\n").encode()

        first = core.receive(request(1), transport="udp", source=source, now=now)
        nonce = md5_nonce(first[0].data)
        auth = digest_header(user_id, realm, password, nonce, f"sip:{realm}")
        second = core.receive(request(2, [auth]), transport="udp", source=source, now=now)
        status = sip_status(second[0].data)
        statuses[status] = statuses.get(status, 0) + 1
        # What the running edge does meanwhile: the link takes the events every 0.2 s,
        # the shell ticks the timers at least every second.
        if i % 200 == 199:
            if caches is None and i >= count // 2:
                caches = {
                    "events": len(core.events),
                    "events_bytes": deep_size([core.events])[0],
                    "transactions": len(core._transactions),
                    "transactions_bytes": deep_size([core._transactions])[0],
                    "nonce_counts": len(core.counts),
                    "nonce_counts_bytes": deep_size([core.counts._highest])[0],
                    "at": i + 1}
            core.drain_events(10 ** 6)
        if i % 1000 == 999:
            core.tick(now)
    seconds = time.perf_counter() - began
    core.drain_events(10 ** 6)
    gc.collect()
    rss_end = rss_kib(os.getpid())
    nonce_bytes = deep_size([core.counts._highest])[0]
    nonces = len(core.counts)
    core.tick(now + 40)  # the answers kept for retransmissions age out (32 s)
    core.counts._highest.clear()  # a bounded cache of nonces, not of bindings
    gc.collect()
    rss_clear = rss_kib(os.getpid())
    # The bindings and the core's indexes of them (user ID -> contacts, expiry heap,
    # source -> user IDs, and the (user ID, contact) -> source map of older versions),
    # counted without the configuration.
    config_ids = set()
    for key, identity in core.config.identities.items():
        config_ids.update((id(key), id(identity), id(identity.user_id), id(identity.ha1)))
    total, by_type = deep_size(
        [core.registrar._by_user, core.registrar._timers, getattr(core, "_sources", {}),
         core._users_at, core.guard._failures], skip_ids=config_ids)
    from sipedge import compiled

    result = {"count": count, "core": compiled.summary(),
              "bindings": len(core.registrar), "statuses": statuses,
              "seconds": seconds, "receives": 2 * count,
              "rss_before_kib": rss_before, "rss_end_kib": rss_end, "rss_clear_kib": rss_clear,
              "deep_bytes": total, "by_type": sorted(by_type.items(), key=lambda x: -x[1]),
              "caches": caches, "nonce_counts_end": nonces, "nonce_counts_end_bytes": nonce_bytes,
              "transactions_end": len(core._transactions), "events_end": len(core.events)}
    print(json.dumps(result))


def phase_memory(size):
    """The memory child, in a process of its own (a clean RSS); returns a Popen to wait on."""
    return subprocess.Popen([sys.executable, __file__, "--memory-child", str(size.bindings)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def memory_result(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("the memory child took too long") from None
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- report ---------------------------------------------------------------------------------


def ms(seconds):
    return "n/a" if seconds is None or seconds != seconds else f"{seconds * 1000:.1f}"


def step_text(step):
    def mark(clean, failed, retrans, elapsed):
        if clean:
            return "✓"
        return f"✗ ({failed}/{retrans}/{elapsed:.1f} s)" if elapsed == elapsed else \
            f"✗ ({failed}/{retrans})"

    text = f"{step['rate']:,} "
    first = step.get("first_attempt")
    if first:
        text += mark(False, first["failed"], first["retransmissions"], first["elapsed"]) + " then "
    return text + mark(step["clean"], step["failed"], step["retransmissions"], step["elapsed"])


def rate_rows(results):
    rows = []
    for r in results:
        best = r["best"]
        steps = ", ".join(step_text(s) for s in r["steps"])
        procs = str(r["processes"]) + (f" ({r['children']} UDP)" if r["kind"] == "kamailio"
                                       else "")
        if best:
            n = max(best["successful"], 1)
            cp = (f"; control plane {best['cp_cpu']:.1f} s ({best['cp_cpu'] / n * 1e6:,.0f} µs)"
                  if r.get("variant") == "connected" else "")
            core = f" (core: {r['core']})" if r.get("core") else ""
            rows.append((r["name"] + core, f"**{best['rate']:,}**",
                         f"{best['rtt']['p50']:.0f} / **{best['rtt']['p99']:.0f}** / "
                         f"{best['rtt']['max']:.0f}",
                         f"{best['server_cpu']:.1f} s ({best['server_cpu'] / n * 1e6:,.0f} µs "
                         f"per registration){cp}",
                         f"{best['sipp_cpu']:.1f} s",
                         f"{best['load'][0]:.1f} → {best['load'][1]:.1f}",
                         procs, steps))
        else:
            rows.append((r["name"], "**none clean**", "n/a", "n/a", "n/a", "n/a", procs, steps))
    return rows


def find_rate(rates, kind, **match):
    return next((r for r in rates if r["kind"] == kind
                 and all(r.get(k) == v for k, v in match.items())), None)


def ratio_of(a, b):
    if not a or not b or not a["best"] or not b["best"]:
        return None
    return a["best"]["rate"] / b["best"]["rate"]


def rates_text(rates, size):
    alone = find_rate(rates, "edge", variant="alone")
    connected = find_rate(rates, "edge", variant="connected")
    anchor = find_rate(rates, "kamailio", children=1, default_children=False)
    default = find_rate(rates, "kamailio", default_children=True)
    lines = [
        "### 1. Authenticated REGISTERs per second (SIPp, UDP)",
        "",
        "Each SIPp call is one authenticated registration: REGISTER, 401, REGISTER with "
        "credentials (MD5, qop=auth), 200 (`bench/sip/register.xml`: the same file and the "
        f"same {size.users:,} users for every server, one user per call, cycling through "
        "them). Kamailio (`bench/sip/kamailio.cfg`): `auth` with nonce-count checking, "
        "`pv_www_authenticate` with each user ID's HA1 from an `htable` loaded from a db_text "
        "file, `usrloc` in memory (db_mode 0), `registrar` `save`; "
        f"`-m {KAMAILIO_SHM_MB} -M {KAMAILIO_PKG_MB}` (MB of shared / per-process memory), UDP "
        "only (`disable_tcp`), errors-only logging. The edge: one `sipedge run` process, "
        "first connected to the control plane as deployed (it reports each registration as "
        "two events, which the control plane, on the same 2 CPUs, ingests meanwhile), then, "
        "the control plane stopped, a new edge process serving the configuration it saved "
        "on disk (a registrar alone, as Kamailio is; its events queue, bounded); both run "
        "the core compiled by Cython, as it ships, and a third process, alone too, runs "
        "the core's source as plain Python (`TRUNKLINE_PURE_PYTHON=1`). "
        f"Per server: every user registered once, then steps of {size.step_seconds:.0f} s "
        f"from {size.start_rate:,} calls/s, doubling until a step is not clean, then "
        f"bisecting until the bracket is within {size.resolution - 1:.0%} (at most "
        f"{size.max_steps} steps, {size.target_seconds:.0f} s). A step is clean when every "
        "call succeeded with no retransmission and no unexpected or stray message, within "
        f"{CLEAN_SLACK - 1:.0%} of the step's duration (SIPp held the rate); a step that "
        "lost no call and held the rate but saw retransmissions is run once more (the "
        "machine is shared: another job's burst can cause a few), and the second run "
        "decides. Latency: "
        "SIPp's response time of the whole exchange (first REGISTER sent → 200 received) "
        "of every call (`-trace_rtt`); SIPp's clock here moves in steps of about 4 ms, so "
        "0 and 4 mean \"under a few ms\". CPU: user + system seconds of the server's "
        "processes during the step (/proc), and per registration.",
        "",
        "| server | highest clean rate (calls/s) | latency p50 / **p99** / max (ms) "
        "| server CPU in that step | SIPp CPU | load avg | processes "
        "| steps in order (calls/s ✓ clean, ✗ not: failed calls / retransmissions / elapsed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rate_rows(rates)]
    lines.append("")
    ratio = ratio_of(alone, anchor)
    if ratio is not None and anchor["bad"] is None and alone["bad"] is not None \
            and ratio < 0.5:
        # Kamailio's limit is above what the search tried: the edge's share is at most
        # this, which already decides the target.
        lines.append(
            "**Target (at least half of Kamailio's rate with one edge process): NOT met.** "
            f"The edge alone does {alone['best']['rate']:,}/s; Kamailio with 1 UDP child "
            f"held every step up to {anchor['best']['rate']:,}/s, the search's ceiling "
            f"({MAX_RATE:,}/s), so the edge does at most **{ratio:.0%}** of Kamailio's "
            "rate" + ("." if ratio_of(connected, anchor) is None else
                      f" (connected to the control plane: {connected['best']['rate']:,}/s, "
                      f"at most {ratio_of(connected, anchor):.0%})."))
    elif ratio is not None and (anchor["bad"] is None or alone["bad"] is None):
        lines.append(
            "**Target (at least half of Kamailio's rate with one edge process): not "
            "determined** - the search ended before "
            + ("Kamailio" if anchor["bad"] is None else "the edge")
            + f" had a step that was not clean, so {ratio:.0%} (edge alone "
            f"{alone['best']['rate']:,}/s against Kamailio with 1 UDP child "
            f"{anchor['best']['rate']:,}/s) is "
            + ("an upper bound." if anchor["bad"] is None else "a lower bound."))
    elif ratio is not None:
        lines.append(
            f"**Target (at least half of Kamailio's rate with one edge process): "
            f"{'met' if ratio >= 0.5 else 'NOT met'}.** The anchor is Kamailio with 1 UDP "
            f"child (one process doing the SIP work, against one edge process): the edge "
            f"alone does {alone['best']['rate']:,}/s, **{ratio:.0%}** of Kamailio's "
            f"{anchor['best']['rate']:,}/s.")
        extra = []
        if ratio_of(connected, anchor) is not None:
            extra.append(f"connected to the control plane, the edge does "
                         f"{connected['best']['rate']:,}/s ({ratio_of(connected, anchor):.0%})")
        plain = find_rate(rates, "edge", variant="alone-python")
        if ratio_of(plain, anchor) is not None:
            extra.append(f"with its core as plain Python the edge alone does "
                         f"{plain['best']['rate']:,}/s ({ratio_of(plain, anchor):.0%})")
        if ratio_of(alone, default) is not None:
            extra.append(f"against Kamailio's default of {KAMAILIO_DEFAULT_CHILDREN} UDP "
                         f"children ({default['processes']} processes in all; "
                         f"{default['best']['rate']:,}/s) the edge alone does "
                         f"{ratio_of(alone, default):.0%}")
        if extra:
            lines.append("Besides: " + "; ".join(extra) + ".")
    else:
        lines.append("**Target: not measured** (a server had no clean step).")
    if any(r["best"] and r["best"]["sipp_cpu"] > 0.8 * size.step_seconds for r in rates):
        lines.append("")
        lines.append("SIPp used most of a CPU in a best step: there the rate is SIPp's limit "
                     "on this machine as much as the server's (the figure is a lower bound).")
    lines.append("")
    return lines


def _target_ratio(rates):
    """(edge alone / Kamailio with 1 UDP child, edge connected / the same) of one run."""
    anchor = find_rate(rates, "kamailio", children=1, default_children=False)
    return (ratio_of(find_rate(rates, "edge", variant="alone"), anchor),
            ratio_of(find_rate(rates, "edge", variant="connected"), anchor))


def repeats_text(rates, repeats):
    """The rate search of other runs (--repeat-json), each against its own Kamailio, and
    the verdict over every run: the target is met only if it is met in each."""
    if not repeats:
        return []
    lines = []
    verdicts = [_target_ratio(rates)[0]]
    for repeat in repeats:
        r = repeat["rates"]
        alone, connected = _target_ratio(r)
        anchor = find_rate(r, "kamailio", children=1, default_children=False)
        verdicts.append(alone)
        at = dt.datetime.fromisoformat(repeat["started_at"]).strftime("%H:%M UTC")

        def rate(kind, r=r, **match):
            return f"{find_rate(r, kind, **match)['best']['rate']:,}/s"

        plain = find_rate(r, "edge", variant="alone-python")
        lines.append(
            f"The same search in another run, at {at} (commit "
            f"`{repeat.get('code', {}).get('commit', '?')}`"
            + (" with product files changed beside it" if repeat.get("code", {}).get("dirty")
               else "") + f"): the edge alone "
            f"{rate('edge', variant='alone')}, connected {rate('edge', variant='connected')}, "
            f"Kamailio with 1 UDP child {anchor['best']['rate']:,}/s: "
            + (f"{alone:.0%} and {connected:.0%}" if alone is not None else "not measured")
            + (f"; the core as plain Python {rate('edge', variant='alone-python')} "
               f"({ratio_of(plain, anchor):.0%})." if ratio_of(plain, anchor) is not None
               else "."))
        lines.append("")
    met = [v is not None and v >= 0.5 for v in verdicts]
    lines.append(f"**Over the {len(verdicts)} runs: "
                 + ("met in each.**" if all(met) else
                    f"met in {sum(met)} of {len(verdicts)}, so NOT reliably met.**"))
    lines.append("")
    return lines


def section(results, size, facts, started_at, args):
    rates, bans, memory = results["rates"], results["bans"], results["memory"]
    mode = ("the issue's size" if size.name == "full"
            else f"`--quick` (smoke run: {size.users} users, {size.step_seconds:.0f} s steps)")
    lines = [BEGIN, "## SIP registrar (`bench/sip_bench.py`)", ""]
    lines.append(
        f"Run of {started_at:%Y-%m-%d %H:%M} UTC, {mode}. Machine: {facts['nproc']} CPUs "
        f"({facts['cpu'] or 'unknown model'}), Linux {facts['kernel']}, Python "
        f"{facts['python']}; {results['versions']['sipp']}, {results['versions']['kamailio']}. "
        "Everything on the same machine: SIPp, the server under test, the control plane "
        "(gunicorn, SQLite), the probes; other sessions' jobs shared the CPUs at times. Code: "
        f"commit `{results.get('code', {}).get('commit', '?')}`"
        + (f" with {results['code']['dirty']} product files changed beside it"
           if results.get("code", {}).get("dirty") else "")
        + ". Load average (1 min) at the start "
        f"{results['load'][0]:.1f}, at the end {results['load'][1]:.1f}.")
    lines.append("")
    lines.append(
        f"Data: one tenant, {results['users']:,} "
        f"extensions created through `POST /tenants/{{trunk}}/extensions` "
        f"and their passwords read through `GET .../sip-credentials` "
        f"({results['create_seconds']:.0f} s, 4 clients); realm `{results['realm']}`.")
    lines.append("")
    # 1. rates
    lines += rates_text(rates, size)
    lines += repeats_text(rates, results.get("rate_repeats", []))
    # 2. memory
    m = memory
    n = m["bindings"]
    per_binding = m["deep_bytes"] / max(n, 1)
    types_ = ", ".join(f"{name} {size / max(n, 1):,.0f}" for name, size in m["by_type"][:6])
    c = m["caches"] or {}
    rss_end = (m["rss_end_kib"] - m["rss_before_kib"]) * 1024 / max(n, 1)
    rss_clear = (m["rss_clear_kib"] - m["rss_before_kib"]) * 1024 / max(n, 1)
    lines += [
        f"### 2. Memory per registered binding ({n:,} bindings)",
        "",
        f"In process: `EdgeCore` with {m['count']:,} identities (edgeview's extension "
        "payload, loaded with `config.begin_snapshot` / `add_snapshot_record` / "
        "`snapshot_done`), then real REGISTER bytes through `core.receive`: without "
        "credentials, then with the MD5 digest computed from the nonce of the 401; each "
        "phone from its own address and port, a 36-character Call-ID, a 44-character "
        "User-Agent, Expires 3600; events drained every 200 registrations and timers "
        "ticked every 1,000 (simulated clock, 1,000 registrations a second), as the link "
        "and the shell do. "
        f"Answers to the credentialed REGISTERs: "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(m['statuses'].items()))}.",
        "",
        "| measure | per binding (B) | total |",
        "|---|---|---|",
        f"| **bindings and the core's indexes of them** (every object reachable from "
        f"`registrar._by_user`, `registrar._timers`, `core._users_at`; "
        f"sys.getsizeof, each object once) | **{per_binding:,.0f}** | "
        f"{m['deep_bytes'] / 2**20:,.1f} MiB |",
        f"| process RSS growth, end of the registrations (with the bounded caches below "
        f"full) | {rss_end:,.0f} | {(m['rss_end_kib'] - m['rss_before_kib']) / 1024:,.0f} MiB |",
        f"| … after the answer cache aged out and the nonce-counts were emptied "
        f"(freed memory is not all returned to the OS) | {rss_clear:,.0f} | "
        f"{(m['rss_clear_kib'] - m['rss_before_kib']) / 1024:,.0f} MiB |",
        "",
        f"Per binding, by type: {types_}.",
        "",
        "Bounded caches beside the bindings (not per binding; measured at registration "
        f"{c.get('at', 0):,}, before the events of the last 0.2 s were drained): answers "
        f"kept for retransmissions {c.get('transactions', 0):,} "
        f"({c.get('transactions_bytes', 0) / 2**20:,.1f} MiB; 32 s, at most 50,000), "
        f"nonce-counts {c.get('nonce_counts', 0):,} "
        f"({c.get('nonce_counts_bytes', 0) / 2**20:,.1f} MiB; at most 100,000), "
        f"events queued {c.get('events', 0):,} ({c.get('events_bytes', 0) / 2**10:,.0f} KiB).",
        "",
        f"**Target (under 1 KB per binding): {'met' if per_binding < 1024 else 'NOT met'}** "
        f"({per_binding:,.0f} B per binding with its indexes). Registering {m['count']:,} "
        f"phones took {m['seconds']:.0f} s: {m['receives'] / m['seconds']:,.0f} "
        "`receive` calls per second in process, one core (while the control plane was "
        "being set up beside it)"
        + (f"; the core {m['core']}." if m.get("core") else "."),
        "",
    ]
    # 3. bans
    lines += bans_text(bans)
    lines += [
        "Rerun:",
        "",
        "```",
        "source scripts/bootstrap bench                  # installs SIPp and Kamailio when missing",
        ".venv/bin/python bench/sip_bench.py            # the issue's size (about 12 minutes); rewrites this section",
        ".venv/bin/python bench/sip_bench.py --quick    # 100 users, 3 s steps, 5,000 bindings; prints only",
        "```",
        FINDINGS.rstrip("\n"),
        END,
        "",
    ]
    return "\n".join(lines)


BAN_ROWS = (("edge 1 (saw the failures): probes unanswered after", "edge1"),
            ("edge 2: probes unanswered after", "edge2"),
            ("edge 3: probes unanswered after", "edge3"),
            ("**all 3 edges**", "all"),
            ("where it goes (edges' logs, ms resolution): deciding 403 → edge 1's "
             "event batch POST answered (the control plane has decided)", "decided"),
            ("… then → edge 2 / edge 3 logged the change batch applied "
             "(both edges pooled)", "fanout"))


def bans_text(bans):
    """Section 3, one column group per control plane database (results of one run, or of
    an older run that measured SQLite alone)."""
    runs = bans["backends"] if "backends" in bans else {bans.get("backend", "sqlite"): bans}
    names = [BACKEND_NAMES.get(k, k) for k in runs]
    first = next(iter(runs.values()))
    policy = first["policy"]
    lines = [
        "### 3. Deciding failure → address dropped by all of 3 edges",
        "",
        "Control plane and 3 edges as processes, "
        + (f"once with the control plane on {' and once on '.join(names)} (each time a "
           "fresh database, control plane and edges)" if len(names) > 1
           else f"the control plane on {names[0]}")
        + f"; ban policy: {policy['max_retry']} failures "
        f"within {policy['find_time']} s. Per trial a fresh attacker address "
        f"({ATTACKER_NET}101 and up) sends {policy['max_retry']} wrong-password REGISTERs "
        "(a 401, then a digest of a wrong password, answered 403) to edge 1; from the moment "
        f"the deciding 403 came back, OPTIONS from the same address to all three edges every "
        f"{PROBE_INTERVAL * 1000:.0f} ms until none has answered for {PROBE_QUIET * 1000:.0f} ms. "
        "An edge's time is the send time of its first unanswered probe after its last "
        "answered one; a trial's is the last edge's.",
        "",
        "| | " + " | ".join(f"{n}: n | p50 (ms) | p99 (ms) | max (ms)" for n in names) + " |",
        "|---|" + "---|---|---|---|" * len(names),
    ]
    for label, key in BAN_ROWS:
        cells = []
        for b in runs.values():
            s = b.get(key) or summary([])
            p99 = f"**{ms(s['p99'])}**" if key == "all" else ms(s["p99"])
            cells.append(f"{s['n']} | {ms(s['p50'])} | {p99} | {ms(s['max'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    counts = sorted({b["all"]["n"] for b in runs.values() if b["all"]["n"]})
    if counts and counts[-1] < 100:
        lines.append(f"(With {' or '.join(map(str, counts))} trials, the p99 is the largest "
                     "value: nearest rank.)")
        lines.append("")
    for name, b in zip(names, runs.values()):
        lines.append(
            f"{name}: trials {len(b['trials'])}; not dropped everywhere within "
            f"{PROBE_LIMIT:.0f} s: {b['never']}; unexpected answers to the failures: "
            f"{b['errors']}; fleet bans listed by `GET /bans` afterwards: {b['fleet_bans']}.")
        lines.append("")
    for name, b in zip(names, runs.values()):
        p99 = b["all"]["p99"]
        met = p99 == p99 and p99 < 0.1 and not b["never"]
        lines.append(f"**Target (p99 under 100 ms) on {name}: {'met' if met else 'NOT met'}** "
                     f"(p99 {ms(p99)} ms).")
        lines.append("")
    return lines


FINDINGS = """
What the runs of 2026-12-07 say (the same kind of machine as the day before's last runs:
2 CPUs, AMD EPYC; Kamailio spent 31 to 33 µs of CPU a registration). The table above is
the full run of 01:19 UTC at commit ff0d6be; the full run of 00:49 (commit c35d101: the
same edge, without the control plane's warm-up) and a run of the rates alone at 01:33
(ff0d6be) are summed up under it.

- **Registrations per second: met in each of the three runs.** The edge alone held
  13,455, 12,338 and 13,455/s against Kamailio with one UDP child at 19,027, 20,749 and
  20,749/s: 71, 59 and 65 %. Connected to the control plane it held 11,314, 12,338 and
  12,338/s: 59 % each time. Even against the best Kamailio did in any configuration that
  day (22,627/s, default children, 00:49) the edge's lowest figure is 55 %.
- **What made the difference: the core compiled by Cython from its unchanged source**
  (commit 69f266c; `sipedge/compiled.py`, `setup.py`). In process (a replay of SIPp's
  conversation through `core.receive`, 10,000 users) a registration took 80 to 92 µs as
  plain Python and 51 to 56 µs compiled. Live, at the highest clean rate, the edge alone
  spent 72 to 76 µs of CPU a registration compiled, 99 to 104 µs as plain Python. Plain
  Python, measured in the same runs, held 10,375, 10,375 and 9,514/s: 55, 50 and 46 %,
  the line it stood at the day before (46 to 55 %).
- **Where the rest goes**: the day before's profile (py-spy, plain Python, 8,000/s) put
  17 % of the edge's time in `sendto` (on loopback the kernel delivers the answer to
  SIPp's socket and wakes SIPp within that call) and 2 % in `recvfrom`; the compiled core
  shrinks the other 78 %, not these.
- **Deciding failure → dropped on all 3 edges: under 100 ms on both databases, now with a
  margin.** p99 (the largest of 20 trials) 19.2 ms on SQLite and 32.3 ms on PostgreSQL.
  In the 00:49 run PostgreSQL's was 105.1 ms: its first trial, the first batch of events
  that gunicorn worker applied, took 85 ms to decide against about 20 later (statements
  compiled by SQLAlchemy and planned by PostgreSQL on first use; warming the pool, the
  mappers and every table did not help, 2026-12-06). Each worker now rehearses the intake
  up to a ban, rolled back, before it serves (commit ff0d6be, `controlplane/warmup.py`):
  the first trial went from 33 to 67 ms to 27 to 33 ms (ban phase alone on PostgreSQL,
  3 runs each). The ban phase run again at 01:55 on the warm-up as committed after the
  review (39df242: the rehearsal may wait 2 s for the write lock, and decides under it):
  p99 23.3 ms on SQLite, 42.2 ms on PostgreSQL (`--phases bans --render-bans`).
- **Memory: 917 B per binding, under the 1 KB target** (unchanged; the objects are the
  same in the compiled core); 100,000 phones registered through `core.receive` in 11 s.
- **Tried and not kept (2026-12-06)**: garbage collector thresholds of 50,000/50/100, or
  no collection (within the machine's noise); building the head's field list only for
  the full parser (no measurable change).
"""


# --- main -----------------------------------------------------------------------------------


def versions():
    def first_line(*cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip()
        except OSError:
            return "?"

    sipp = re.search(r"SIPp v\d+(\.\d+)*", first_line("sipp", "-v"))
    kam = re.search(r"kamailio [\d.]+", first_line("kamailio", "-v"))
    return {"sipp": sipp.group(0) if sipp else "SIPp ?",
            "kamailio": kam.group(0).replace("kamailio", "Kamailio") if kam else "Kamailio ?"}


def code_version():
    """The commit measured, and how many files of the product differ from it."""
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""

    dirty = [line for line in git("status", "--porcelain", "--", "sipedge", "controlplane",
                                  "tenants", "migrations", "deploy").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "dirty": len(dirty)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: prints only")
    p.add_argument("--users", type=int, help="extensions created (default 2000; quick 100)")
    p.add_argument("--phases", default="bans,rates,memory",
                   help="comma-separated: bans, rates, memory (default all)")
    p.add_argument("--control-plane-db", default="sqlite,postgresql",
                   help="bans phase: the control plane's databases, run one after the other: "
                        "sqlite, postgresql (a scratch database beside "
                        "TRUNKLINE_BENCH_POSTGRES_URL; default both)")
    p.add_argument("--ban-trials", type=int,
                   help="bans phase: trials per database (default 20; quick 3)")
    p.add_argument("--render-bans", action="store_true",
                   help="print only section 3 (ban propagation) as Markdown, e.g. with "
                        "--render-json or --phases bans; never writes the docs")
    p.add_argument("--kamailio-children", default="1,default",
                   help="Kamailio runs: UDP children counts, or 'default' (default: 1,default)")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--repeat-json", type=Path, action="append", default=[], metavar="PATH",
                   help="with --render-json: the raw results of another run of the rates "
                        "(--phases rates), shown beside it with the verdict over every run")
    p.add_argument("--render-json", type=Path, metavar="PATH",
                   help="run nothing: render the section from the raw results of a run")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    docs = p.add_mutually_exclusive_group()
    docs.add_argument("--write-docs", dest="write_docs", action="store_true", default=None,
                      help="rewrite this script's section (the default at full size)")
    docs.add_argument("--no-write-docs", dest="write_docs", action="store_false")
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    if args.users is not None:
        if not 1 <= args.users <= 20_000:
            p.error("--users 1..20000")
        size = Size(**{**asdict(size), "users": args.users})
    if args.ban_trials is not None:
        if not 1 <= args.ban_trials <= 1000:
            p.error("--ban-trials 1..1000")
        size = Size(**{**asdict(size), "trials": args.ban_trials})
    args.size = size
    dbs = [x.strip() for x in args.control_plane_db.split(",") if x.strip()]
    if not dbs or set(dbs) - set(BACKENDS) or len(set(dbs)) != len(dbs):
        p.error("--control-plane-db: sqlite, postgresql (comma-separated)")
    args.control_plane_db = dbs
    if args.render_bans:
        args.write_docs = False
    args.phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    if args.phases - {"bans", "rates", "memory"}:
        p.error("--phases: bans, rates, memory")
    children = []
    for item in args.kamailio_children.split(","):
        item = item.strip()
        if item == "default":
            children.append(None)
        elif item.isdigit() and 1 <= int(item) <= 64:
            children.append(int(item))
        elif item:
            p.error("--kamailio-children: numbers 1..64 or 'default'")
    args.kamailio_children = children
    if args.write_docs is None:
        args.write_docs = size.name == "full" and args.phases == {"bans", "rates", "memory"}
    return args


def run(args):
    from api_bench import machine_facts

    size = args.size
    started_at = dt.datetime.now(dt.timezone.utc)
    results = {"facts": machine_facts(), "versions": versions(), "code": code_version(),
               "size": asdict(size),
               "started_at": started_at.isoformat(), "load": [load_average()]}
    workdir = Path(tempfile.mkdtemp(prefix="trunkline-sip-bench-"))
    processes = Processes()
    platform = None
    try:
        memory = None
        if "memory" in args.phases:
            log(f"memory: {size.bindings:,} bindings, in a child process meanwhile")
            memory = phase_memory(size)
            processes.add("memory child", memory, lambda: memory.poll() is None and memory.kill())
        bans_on = args.control_plane_db if "bans" in args.phases else []
        if "rates" in args.phases or "sqlite" in bans_on:
            log(f"control plane; {size.users:,} extensions through the API")
            platform = Platform(workdir, processes, size.users)
            results.update(users=len(platform.users), realm=platform.realm,
                           create_seconds=platform.create_seconds)
            log(f"  {len(platform.users):,} users in {platform.create_seconds:.0f} s")
        if memory is not None:
            results["memory"] = memory_result(memory, timeout=1800)
            m = results["memory"]
            log(f"  memory: {m['deep_bytes'] / max(m['bindings'], 1):,.0f} B per binding, "
                f"{m['bindings']:,} bindings, {m['seconds']:.0f} s")
        if bans_on:
            results["bans"] = {"backends": {}}
            for backend in bans_on:
                name = BACKEND_NAMES[backend]
                bans_platform = platform
                if backend != "sqlite":
                    log(f"control plane on {name}; {size.users:,} extensions through the API")
                    url = scratch_postgres_database(processes)
                    bans_platform = Platform(workdir / backend, processes, size.users,
                                             database_url=url)
                    results.setdefault("users", len(bans_platform.users))
                    results.setdefault("realm", bans_platform.realm)
                    results.setdefault("create_seconds", bans_platform.create_seconds)
                log(f"bans ({name}): {size.trials} trials, 3 edges")
                try:
                    out = phase_bans(bans_platform, workdir / f"bans-{backend}", processes, size)
                finally:
                    if bans_platform is not platform:  # its CPU is not the next phase's
                        bans_platform.server.stop()
                        bans_platform.close()
                results["bans"]["backends"][backend] = out
                s = out["all"]
                log(f"  {name}, all 3 edges: p50 {ms(s['p50'])} ms, p99 {ms(s['p99'])} ms, "
                    f"max {ms(s['max'])} ms")
        if "rates" in args.phases:
            log("registrations per second")
            results["rates"] = phase_rates(platform, workdir, processes, size, args)
    finally:
        processes.stop_all()
        if platform is not None:
            platform.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load"].append(load_average())
    return results


def _exit_on_sigterm(signum, _frame):
    raise SystemExit(128 + signum)  # so that run()'s finally stops every process


def main(argv=None):
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    if args.render_json:
        results = json.loads(args.render_json.read_text())
        results["rate_repeats"] = [json.loads(path.read_text()) for path in args.repeat_json]
    else:
        results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.render_bans:
        if "bans" not in results:
            log("no bans results to render")
            return 1
        print("\n".join(bans_text(results["bans"])))
        return 0
    if not {"rates", "bans", "memory"} <= set(results):
        print(json.dumps(results, indent=1, default=str))
        return 0
    size = Size(**results["size"])
    started_at = dt.datetime.fromisoformat(results["started_at"])
    text_ = section(results, size, results["facts"], started_at, args)
    print(text_)
    if args.write_docs and not args.render_json or (args.render_json and args.write_docs):
        write_section(text_, BEGIN, END)
        log(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
