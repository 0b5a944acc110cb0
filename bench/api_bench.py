#!/usr/bin/env python3
"""Benchmark of the control plane API under gunicorn, on SQLite and PostgreSQL in one run.

For each backend, two data sets side by side (10 tenants, and 1,000 tenants with 100,000
extensions), each in a scratch database migrated by `controlplane db upgrade`, with a
platform key from `controlplane api-key create`, served by its own `controlplane serve`
(gunicorn, deploy/gunicorn.conf.py) started as a subprocess on a free 127.0.0.1 port. Then:

1. the p50/p99 of reads over HTTP (one extension; the first and second page of a tenant's
   extensions; the tenants list), one request to each data set in turn, so that both
   are measured under the same load: reads must not grow with the number of tenants;
2. (on the large data set from here) read throughput with several concurrent clients;
3. the query plans (EXPLAIN / EXPLAIN QUERY PLAN) of every SELECT the read endpoints issue;
4. extensions created per second through POST /tenants/{trunk}/extensions with several
   concurrent clients (threads, each with its own requests.Session).

Tenants, their trunk and ring groups are created through the domain services
(tenants.services.*). Extensions are bulk-inserted: the same rows create_extension and
set_dual_registration write (encrypted password, HA1 values from tenants.crypto, ring group
subscriptions), without the audit and outbox rows that no measured read touches; loading
100,000 extensions one HTTP request at a time would take most of an hour.

Only 127.0.0.1 is contacted. Every request loop is bounded in count and in time.

    .venv/bin/python bench/api_bench.py            # full size, writes docs/benchmarks.md
    .venv/bin/python bench/api_bench.py --quick    # 5,000 extensions / 50 tenants, prints only
"""

import argparse
import datetime as dt
import math
import os
import platform as pyplatform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import requests  # noqa: E402
from sqlalchemy import create_engine, event, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from benchlib import percentile, write_section  # noqa: E402
from tenants import crypto  # noqa: E402
from tenants.models import (  # noqa: E402
    ClassOfService, Extension, GroupSubscription, RingGroup, RingMode, Tenant, TenantTrunk,
)

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION_START, SECTION_END = "<!-- bench:api_bench -->", "<!-- /bench:api_bench -->"

EXTENSIONS_PER_TENANT = 100
FIRST_EXTENSION = 100          # extensions 100..199 in every tenant
FIRST_CREATED_EXTENSION = 2000  # numbers the create benchmark uses
RING_GROUPS = ("600", "601")
PAGE_SIZE = 50


@dataclass(frozen=True)
class Size:
    name: str
    tenants_small: int
    tenants_full: int
    read_samples: int      # sequential requests per read endpoint
    read_seconds: float    # ... or at most this long
    concurrent_reads: int
    creates: int           # extensions created through the API
    create_seconds: float

    @property
    def extensions_full(self):
        return self.tenants_full * EXTENSIONS_PER_TENANT


FULL = Size("full", tenants_small=10, tenants_full=1000, read_samples=1000, read_seconds=90,
            concurrent_reads=4000, creates=2000, create_seconds=90)
QUICK = Size("quick", tenants_small=10, tenants_full=50, read_samples=60, read_seconds=5,
             concurrent_reads=150, creates=100, create_seconds=10)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Scratch databases ------------------------------------------------------------------


class ScratchDatabase:
    """A database that exists for one backend's run, dropped (or deleted) at the end."""

    def __init__(self, backend, workdir, pg_url):
        self.backend = backend
        self._admin = None
        if backend == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.db'}"
        else:
            self._admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
            self.name = f"trunkline_bench_{uuid.uuid4().hex[:10]}"
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = make_url(pg_url).set(database=self.name).render_as_string(
                hide_password=False)

    def drop(self):
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()


# --- The server ---------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def controlplane(env, *args, timeout=120):
    result = subprocess.run([sys.executable, "-m", "controlplane", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"controlplane {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


class Server:
    """`controlplane serve` in a subprocess; its log goes to a file in the work folder."""

    def __init__(self, env, workdir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--bind", f"127.0.0.1:{self.port}"],
            env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        with new_http_session() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-2000:]}")
                try:
                    if http.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s:\n"
                           f"{self.log_path.read_text()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def new_http_session(token=None):
    http = requests.Session()
    http.trust_env = False  # no proxy from the environment: only 127.0.0.1 is contacted
    if token:
        http.headers["Authorization"] = f"Bearer {token}"
    return http


# --- Loading the data set -------------------------------------------------------------------


class Loader:
    """Grows the data set through the domain services (tenants, trunks, ring groups) and
    bulk inserts of the rows the extension services write."""

    BATCH_TENANTS = 50

    def __init__(self, db_url, secret_keys, workdir):
        from controlplane import create_app
        from tenants.scope import platform_principal

        self.app = create_app({"DATABASE_URL": db_url, "SECRET_KEYS": secret_keys,
                               "DATA_DIR": str(workdir)})
        self.sessions = self.app.extensions["trunkline"]["sessions"]
        self.principal = platform_principal("bench")
        self.tenants = []  # trunk numbers, in creation order
        self.resellers = []
        self.rng = random.Random(2)

    def close(self):
        self.app.extensions["trunkline"]["engine"].dispose()

    def _session(self):
        session = self.sessions()
        session.info["principal"] = self.principal
        return session

    def grow_to(self, tenant_count):
        from tenants.services.resellers import create_reseller
        from tenants.services.ring_groups import create_ring_group
        from tenants.services.tenants import create_tenant
        from tenants.services.trunks import create_trunk

        with self._session() as session:
            while len(self.resellers) < 10:
                self.resellers.append(create_reseller(
                    session, self.principal, name=f"Reseller {len(self.resellers) + 1}").id)
            while len(self.tenants) < tenant_count:
                batch = []
                for _ in range(min(self.BATCH_TENANTS, tenant_count - len(self.tenants))):
                    index = len(self.tenants) + len(batch)
                    tenant = create_tenant(session, self.principal, name=f"Customer {index}",
                                           reseller_id=self.resellers[index % len(self.resellers)])
                    trunk = tenant.trunk_number
                    create_trunk(session, self.principal, trunk, name="carrier",
                                 gateway="sip.carrier.example")
                    for number in RING_GROUPS:
                        create_ring_group(session, self.principal, trunk, number=number,
                                          name=f"Group {number}")
                    batch.append(trunk)
                self._insert_extensions(session, batch)
                self.tenants.extend(batch)
        if self.app.extensions["trunkline"]["engine"].dialect.name == "postgresql":
            # What autovacuum does shortly after a bulk load; plans then use real statistics.
            with self.app.extensions["trunkline"]["engine"].connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))

    def _insert_extensions(self, session, trunks):
        platform = session.info["platform"]
        tenants = {t.trunk_number: t for t in session.scalars(
            select(Tenant).where(Tenant.trunk_number.in_(trunks)))}
        carrier = dict(session.execute(
            select(TenantTrunk.tenant_id, TenantTrunk.id)
            .where(TenantTrunk.tenant_id.in_([t.id for t in tenants.values()]))).all())
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for trunk in trunks:
            tenant = tenants[trunk]
            for offset in range(EXTENSIONS_PER_TENANT):
                rows.append(extension_row(platform, tenant, carrier[tenant.id],
                                          str(FIRST_EXTENSION + offset), offset, now))
        session.execute(insert(Extension), rows)
        ids = session.execute(
            select(Extension.id, Extension.tenant_id, Extension.number)
            .where(Extension.tenant_id.in_([t.id for t in tenants.values()]))).all()
        groups = {(g.tenant_id, g.number): g.id for g in session.scalars(
            select(RingGroup).where(RingGroup.tenant_id.in_([t.id for t in tenants.values()])))}
        subscriptions = []
        for ext_id, tenant_id, number in ids:
            # Everyone rings in the first group, every other extension in the second too.
            subscriptions.append({"ring_group_id": groups[(tenant_id, RING_GROUPS[0])],
                                  "extension_id": ext_id})
            if int(number) % 2 == 0:
                subscriptions.append({"ring_group_id": groups[(tenant_id, RING_GROUPS[1])],
                                      "extension_id": ext_id})
        session.execute(insert(GroupSubscription), subscriptions)
        session.commit()


def extension_row(platform, tenant, carrier_id, number, offset, now):
    """The row create_extension writes, with the dual registration set_dual_registration
    writes for one extension in five (SIP peer) and one in ten (external number)."""
    password = crypto.generate_sip_password()
    realm = platform.realm
    home = tenant.trunk_number + number
    remote = home + "r"
    sip_peer = offset % 5 == 0
    external = not sip_peer and offset % 10 == 1
    dual = sip_peer or external
    return {
        "tenant_id": tenant.id, "number": number, "name": f"User {number}",
        "caller_id_name": f"User {number}", "caller_id_number": None,
        "voicemail_enabled": True, "voicemail_pin_hash": None,
        "voicemail_email": f"user{number}@example.com" if offset % 3 == 0 else None,
        "rings_before_voicemail": 5,
        "forward_always_enabled": False, "forward_always_destination": None,
        "forward_busy_enabled": offset % 4 == 0,
        "forward_busy_destination": "+4930555" + number if offset % 4 == 0 else None,
        "forward_no_answer_enabled": False, "forward_no_answer_destination": None,
        "class_of_service": ClassOfService.NATIONAL.value, "concurrent_call_limit": 2,
        "dual_enabled": dual, "dual_sip_peer": not external,
        "dual_external_number": "+4930123" + number if external else None,
        "dual_trunk_id": carrier_id if external else None,
        "ring_mode": tenant.dual_default_ring_mode if dual else RingMode.HOME.value,
        "password_enc": platform.box.encrypt(password),
        "ha1_realm": realm,
        "ha1_md5": crypto.ha1("MD5", home, realm, password),
        "ha1_sha256": crypto.ha1("SHA-256", home, realm, password),
        "remote_ha1_md5": crypto.ha1("MD5", remote, realm, password),
        "remote_ha1_sha256": crypto.ha1("SHA-256", remote, realm, password),
        "created_at": now, "updated_at": now,
    }


# --- Measuring ------------------------------------------------------------------------------


@dataclass
class Latencies:
    samples: list = field(default_factory=list)
    errors: int = 0

    def summary(self):
        values = sorted(self.samples)
        return {"n": len(values), "errors": self.errors,
                "p50_ms": percentile(values, 50) * 1000, "p99_ms": percentile(values, 99) * 1000,
                "mean_ms": statistics.fmean(values) * 1000 if values else math.nan}


def read_paths(trunks, rng):
    """Endpoint name -> (a function giving the path of one request over random tenants,
    the number of items its answer must hold)."""
    def one_extension():
        number = FIRST_EXTENSION + rng.randrange(EXTENSIONS_PER_TENANT)
        return f"/tenants/{rng.choice(trunks)}/extensions/{number}"

    def extensions_page(page):
        return lambda: f"/tenants/{rng.choice(trunks)}/extensions?page_size={PAGE_SIZE}&page={page}"

    return {
        "GET extension": (one_extension, 1),
        "list extensions, page 1": (extensions_page(1), PAGE_SIZE),
        "list extensions, page 2": (extensions_page(2), EXTENSIONS_PER_TENANT - PAGE_SIZE),
        "list tenants, page 1": (lambda: f"/tenants?page_size={PAGE_SIZE}",
                                 min(PAGE_SIZE, len(trunks))),
    }


def measure_sequential(base, token, path_of, expected, samples, seconds, stop=None, warmup=20):
    """One client, one request after the other: the latency a user of the API sees."""
    result = Latencies()
    with new_http_session(token) as http:
        for _ in range(warmup):  # warm up the connection, the workers and the caches
            http.get(base + path_of(), timeout=30)
        deadline = time.monotonic() + seconds
        while len(result.samples) < samples and time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                break
            url = base + path_of()
            start = time.perf_counter()
            response = http.get(url, timeout=30)
            elapsed = time.perf_counter() - start
            body = response.json() if response.status_code == 200 else None
            count = 1 if isinstance(body, dict) else len(body or [])
            if response.status_code != 200 or count != expected:
                result.errors += 1
            else:
                result.samples.append(elapsed)
    return result


def run_concurrently(clients, total, seconds, work):
    """Run work(http, index) from `clients` threads until `total` calls or `seconds` pass.
    Returns (Latencies, elapsed seconds)."""
    result = Latencies()
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.monotonic() + seconds

    def client(http):
        while time.monotonic() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            ok = work(http, index)
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    result.samples.append(elapsed)
                else:
                    result.errors += 1

    sessions = [work.session() for _ in range(clients)]
    threads = [threading.Thread(target=client, args=(s,)) for s in sessions]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for s in sessions:
        s.close()
    return result, elapsed


class ConcurrentReads:
    def __init__(self, base, token, trunks, seed):
        self.base, self.token, self.trunks = base, token, trunks
        self.rng = random.Random(seed)

    def session(self):
        return new_http_session(self.token)

    def __call__(self, http, _index):
        number = FIRST_EXTENSION + self.rng.randrange(EXTENSIONS_PER_TENANT)
        response = http.get(f"{self.base}/tenants/{self.rng.choice(self.trunks)}/extensions/"
                            f"{number}", timeout=60)
        return response.status_code == 200


CREATE_VARIANTS = {
    # name: (ring groups of each new extension, first extension number)
    "with a ring group subscription": ([RING_GROUPS[0]], FIRST_CREATED_EXTENSION),
    "without ring groups": ([], FIRST_CREATED_EXTENSION * 2),
}


class Creates:
    """POST /tenants/{trunk}/extensions: request k goes to tenant k mod T, so the clients
    write into many tenants at once, as a platform's resellers would."""

    def __init__(self, base, token, trunks, ring_groups, first_number):
        self.base, self.token, self.trunks = base, token, trunks
        self.ring_groups, self.first_number = ring_groups, first_number
        self.failures = []

    def session(self):
        return new_http_session(self.token)

    def __call__(self, http, index):
        trunk = self.trunks[index % len(self.trunks)]
        number = str(self.first_number + index // len(self.trunks))
        body = {"number": number, "name": f"Created {number}", "ring_groups": self.ring_groups,
                "voicemail": {"email": f"new{number}@example.com"}}
        response = http.post(f"{self.base}/tenants/{trunk}/extensions", json=body, timeout=60)
        if response.status_code != 201 and len(self.failures) < 5:
            self.failures.append((response.status_code, response.text[:200]))
        return response.status_code == 201


# --- Query plans --------------------------------------------------------------------------


def query_plans(loader, token, trunk):
    """EXPLAIN every SELECT that the read endpoints issue, with the parameters they used."""
    app = loader.app
    engine = app.extensions["trunkline"]["engine"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    paths = {
        "GET extension": f"/api/v1/tenants/{trunk}/extensions/{FIRST_EXTENSION + 42}",
        "list extensions, page 2":
            f"/api/v1/tenants/{trunk}/extensions?page_size={PAGE_SIZE}&page=2",
        "list ring groups": f"/api/v1/tenants/{trunk}/ring-groups",
        "list tenants, page 1": f"/api/v1/tenants?page_size={PAGE_SIZE}",
    }
    plans = {}
    for name, path in paths.items():
        client.get(path, headers=headers)  # last_used_at may be written on a first use
        caught = []

        def catch(_conn, _cursor, statement, parameters, _context, _executemany):
            caught.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", catch)
        try:
            status = client.get(path, headers=headers).status_code
        finally:
            event.remove(engine, "before_cursor_execute", catch)
        assert status == 200, (path, status)
        entries = []
        with engine.connect() as conn:
            for statement, parameters in caught:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                plan = explain(conn, statement, parameters)
                forced = forced_index_plan(conn, statement, parameters, plan)
                entries.append(PlannedStatement(statement, plan, forced))
            conn.rollback()
        plans[name] = entries
    return plans


@dataclass
class PlannedStatement:
    statement: str
    plan: list
    # PostgreSQL, when the plan reads a table whole: the plan with sequential scans made
    # prohibitively expensive. An index scan there proves the index exists and the planner
    # preferred the full scan (a small table); a sequential scan still there means no index.
    index_plan: list | None = None


def explain(conn, statement, parameters):
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return [r[0] for r in rows]
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return [r[-1] for r in rows]


def forced_index_plan(conn, statement, parameters, plan):
    if conn.dialect.name != "postgresql" or not any(full_scans(line) for line in plan):
        return None
    conn.exec_driver_sql("SET enable_seqscan = off")
    try:
        return explain(conn, statement, parameters)
    finally:
        conn.exec_driver_sql("RESET enable_seqscan")


def short_sql(statement):
    """The statement with its column lists elided, so a plan reads at a glance."""
    sql = " ".join(statement.split())
    sql = re.sub(r"SELECT (.+?) FROM", lambda m: "SELECT " + (
        "count(*)" if m.group(1).startswith("count(") else "…") + " FROM", sql, count=1)
    sql = re.sub(r"\(SELECT (.+?) FROM", "(SELECT … FROM", sql)
    return sql


LARGE_TABLE = 1000  # rows: below this a full scan is what any planner should choose


def table_rows(engine):
    names = ("tenants", "extensions", "group_subscriptions", "ring_groups", "tenant_trunks",
             "api_keys", "queues", "queue_agents")
    with engine.connect() as conn:
        return {n: conn.execute(text(f"SELECT count(*) FROM {n}")).scalar() for n in names}


def full_scans(line):
    """Names of the tables a plan line reads whole (an index read whole counts too)."""
    pg = re.search(r"Seq Scan on (\w+)", line)
    if pg:
        return [pg.group(1)]
    sqlite = re.match(r"\s*SCAN (\w+)", line)
    return [sqlite.group(1)] if sqlite else []


def plan_problems(plans, rows):
    """Full scans of a table of LARGE_TABLE rows or more by a statement that looks rows up
    (has a WHERE): [(endpoint, statement, plan line, verdict)]."""
    problems = []
    for name, entries in plans.items():
        for entry in entries:
            if " WHERE " not in " ".join(entry.statement.split()):
                continue  # a list of the whole table: it is read whole, by design
            for line in entry.plan:
                for table in full_scans(line):
                    if rows.get(table, 0) < LARGE_TABLE:
                        continue
                    if entry.index_plan is not None and not any(
                            table in full_scans(forced) for forced in entry.index_plan):
                        verdict = (f"planner's choice: {table} has {rows[table]:,} rows and an "
                                   "index it uses when sequential scans are disabled")
                    else:
                        verdict = f"NO INDEX: {table} ({rows[table]:,} rows) is read whole"
                    problems.append((name, short_sql(entry.statement), line.strip(), verdict))
    return problems


# --- One backend --------------------------------------------------------------------------


def server_version(db_url):
    if db_url.startswith("sqlite"):
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return "PostgreSQL " + conn.execute(text("SHOW server_version")).scalar().split()[0]
    finally:
        engine.dispose()


class Deployment:
    """One scratch database, migrated by `controlplane db upgrade`, with a platform key from
    `controlplane api-key create`, served by its own `controlplane serve`."""

    def __init__(self, backend, label, pg_url):
        self.label = label
        self.workdir = Path(tempfile.mkdtemp(prefix=f"trunkline-bench-{backend}-{label}-"))
        self.database = ScratchDatabase(backend, self.workdir, pg_url)
        self.server = self.loader = None
        secret_key = crypto.SecretBox.generate_key()
        env = {**os.environ,
               "CONTROLPLANE_DATABASE_URL": self.database.url,
               "CONTROLPLANE_DATA_DIR": str(self.workdir),
               "CONTROLPLANE_SECRET_KEYS": secret_key,
               "CONTROLPLANE_LOG_LEVEL": "warning"}
        env.pop("CONTROLPLANE_SECRET_KEYS_FILE", None)
        env.pop("CONTROLPLANE_SIP_REALM", None)
        try:
            controlplane(env, "db", "upgrade")
            self.token = controlplane(env, "api-key", "create", "--role", "platform",
                                      "--name", "bench").strip().splitlines()[-1]
            self.server = Server(env, self.workdir)
            self.loader = Loader(self.database.url, [secret_key], self.workdir)
        except BaseException:
            self.close()
            raise
        log(f"{backend} {label}: serving on {self.server.base}")

    @property
    def base(self):
        return self.server.base

    def close(self):
        if self.loader is not None:
            self.loader.close()
        if self.server is not None:
            self.server.stop()
        self.database.drop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def measure_interleaved(deployments, name, samples, seconds):
    """One client per deployment, their requests alternating, so that whatever else the
    machine does meanwhile weighs on every data set alike."""
    rng = random.Random(1)
    clients = []
    for d in deployments:
        path_of, expected = read_paths(list(d.loader.tenants), rng)[name]
        http = new_http_session(d.token)
        for _ in range(20):  # warm up the connection, the workers and the caches
            http.get(d.base + path_of(), timeout=30)
        clients.append((http, d.base, path_of, expected, Latencies()))
    deadline = time.monotonic() + seconds
    for _ in range(samples):
        if time.monotonic() >= deadline:
            break
        for http, base, path_of, expected, result in clients:
            url = base + path_of()
            start = time.perf_counter()
            response = http.get(url, timeout=30)
            elapsed = time.perf_counter() - start
            body = response.json() if response.status_code == 200 else None
            count = 1 if isinstance(body, dict) else len(body or [])
            if response.status_code != 200 or count != expected:
                result.errors += 1
            else:
                result.samples.append(elapsed)
    for http, *_ in clients:
        http.close()
    return [c[-1] for c in clients]


def run_backend(backend, size, args):
    results = {"backend": backend, "reads": {}, "load_average": [os.getloadavg()[0]],
               "gunicorn": gunicorn_settings()}
    deployments = []
    try:
        # Two data sets side by side, each behind its own server: reads are measured on
        # both at the same time, so that they compare under the same load.
        for tenants in (size.tenants_small, size.tenants_full):
            deployments.append(Deployment(backend, f"{tenants}-tenants", args.postgres_url))
            started = time.perf_counter()
            deployments[-1].loader.grow_to(tenants)
            results[f"load_seconds_{tenants}"] = time.perf_counter() - started
            log(f"{backend}: loaded {tenants} tenants, {tenants * EXTENSIONS_PER_TENANT} "
                f"extensions in {results[f'load_seconds_{tenants}']:.1f}s")
        results["version"] = server_version(deployments[0].database.url)
        small, large = deployments

        for name in read_paths(["10000"], random.Random()):
            measured = measure_interleaved(deployments, name, size.read_samples,
                                           size.read_seconds)
            for tenants, lat in zip((size.tenants_small, size.tenants_full), measured):
                results["reads"][(name, tenants)] = lat.summary()
                log(f"{backend}: {tenants} tenants, {name}: {fmt_latency(lat.summary())}")
        small.close()
        deployments.remove(small)

        trunks = list(large.loader.tenants)
        lat, elapsed = run_concurrently(args.clients, size.concurrent_reads, size.read_seconds,
                                        ConcurrentReads(large.base, large.token, trunks, seed=3))
        results["concurrent_reads"] = {**lat.summary(), "per_second": len(lat.samples) / elapsed,
                                       "clients": args.clients}
        log(f"{backend}: concurrent reads {results['concurrent_reads']['per_second']:.0f}/s")

        results["plans"] = query_plans(large.loader, large.token, trunks[len(trunks) // 2])
        results["rows"] = table_rows(large.loader.app.extensions["trunkline"]["engine"])

        results["creates"], results["reads_during_creates"] = {}, {}
        for variant, (groups, first_number) in CREATE_VARIANTS.items():
            creates = Creates(large.base, large.token, trunks, groups, first_number)
            # Meanwhile one more client reads: how long a read waits behind the writers.
            stop, reads = threading.Event(), {}
            path_of, expected = read_paths(trunks, random.Random(4))["GET extension"]
            reader = threading.Thread(target=lambda: reads.setdefault("lat", measure_sequential(
                large.base, large.token, path_of, expected, size.creates, size.create_seconds,
                stop, warmup=0)))
            reader.start()
            lat, elapsed = run_concurrently(args.clients, size.creates, size.create_seconds,
                                            creates)
            stop.set()
            reader.join()
            results["reads_during_creates"][variant] = reads["lat"].summary()
            results["creates"][variant] = {
                **lat.summary(), "per_second": len(lat.samples) / elapsed,
                "clients": args.clients, "seconds": elapsed, "failures": creates.failures}
            log(f"{backend}: {len(lat.samples)} extensions created {variant} in {elapsed:.1f}s "
                f"({len(lat.samples) / elapsed:.1f}/s, {lat.errors} errors)")
        results["load_average"].append(os.getloadavg()[0])
    finally:
        for d in deployments:
            d.close()
    return results


# --- Reporting ------------------------------------------------------------------------------


def fmt_latency(summary):
    if not summary["n"]:
        return "no successful request"
    text_ = f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms (n={summary['n']})"
    return text_ + (f", {summary['errors']} errors" if summary["errors"] else "")


def cell(summary):
    if not summary or not summary["n"]:
        return "n/a"
    return f"{summary['p50_ms']:.1f} / {summary['p99_ms']:.1f}" + (
        f" ({summary['errors']} err)" if summary["errors"] else "")


def tables(all_results, size):
    backends = [r["backend"] for r in all_results]
    label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    lines = []
    head = ["read (p50 / p99 ms, one client)"]
    for r in all_results:
        for tenants in (size.tenants_small, size.tenants_full):
            head.append(f"{label[r['backend']]}, {tenants:,} tenants "
                        f"({tenants * EXTENSIONS_PER_TENANT:,} ext.)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    names = list(read_paths(["10000"], random.Random()).keys())
    for name in names:
        row = [name]
        for r in all_results:
            for tenants in (size.tenants_small, size.tenants_full):
                row.append(cell(r["reads"].get((name, tenants))))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head = ["throughput"] + [label[b] for b in backends]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for variant in CREATE_VARIANTS:
        created = [r["creates"][variant] for r in all_results]
        row = [f"**extensions created per second**, {variant} ({created[0]['clients']} clients)"]
        row += [f"**{c['per_second']:.1f}**" for c in created]
        lines.append("| " + " | ".join(row) + " |")
        row = ["... create latency p50 / p99 ms"] + [cell(c) for c in created]
        lines.append("| " + " | ".join(row) + " |")
        row = ["... created in (errors)"] + [
            f"{c['n']:,} in {c['seconds']:.1f} s ({c['errors']})" for c in created]
        lines.append("| " + " | ".join(row) + " |")
        row = ["... GET extension p50 / p99 ms meanwhile (one more client)"] + [
            cell(r["reads_during_creates"][variant]) for r in all_results]
        lines.append("| " + " | ".join(row) + " |")
    row = [f"GET extension per second ({all_results[0]['concurrent_reads']['clients']} clients)"]
    row += [f"{r['concurrent_reads']['per_second']:.0f}" for r in all_results]
    lines.append("| " + " | ".join(row) + " |")
    row = ["... latency p50 / p99 ms"] + [cell(r["concurrent_reads"]) for r in all_results]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plans_markdown(all_results):
    label = {"sqlite": "SQLite (EXPLAIN QUERY PLAN)", "postgresql": "PostgreSQL (EXPLAIN)"}
    out = []
    for r in all_results:
        out.append(f"#### {label[r['backend']]}")
        out.append("")
        out.append("```")
        for name, entries in r["plans"].items():
            out.append(f"== {name}")
            for entry in entries:
                out.append("  " + short_sql(entry.statement)[:200])
                out.extend("      " + line for line in entry.plan)
        out.append("```")
        out.append("")
    return "\n".join(out)


def machine_facts():
    def run(*cmd):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return result.stdout.strip("\n").rstrip()
        except OSError:
            return "?"

    memory = run("free", "-h")
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": run("nproc"), "free": memory, "cpu": cpu_model,
            "kernel": pyplatform.release(), "python": pyplatform.python_version()}


def gunicorn_settings():
    """(workers, threads, worker class) that `controlplane serve` gets from the config file
    with this environment (the file may set environment variables: they are put back)."""
    namespace, saved = {}, dict(os.environ)
    try:
        exec(compile((ROOT / "deploy" / "gunicorn.conf.py").read_text(), "gunicorn.conf.py",
                     "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return namespace["workers"], namespace["threads"], namespace["worker_class"]


def observations(all_results, size):
    """What the figures of this run say, computed from them."""
    lines = []
    for r in all_results:
        ratios = [r["reads"][(name, size.tenants_full)]["p50_ms"]
                  / r["reads"][(name, size.tenants_small)]["p50_ms"]
                  for name in read_paths(["10000"], random.Random())
                  if name != "list tenants, page 1"]
        with_group, without = (r["creates"][v]["per_second"] for v in CREATE_VARIANTS)
        idle = r["reads"][("GET extension", size.tenants_full)]
        busy = r["reads_during_creates"][next(iter(CREATE_VARIANTS))]
        lines.append(
            f"- {r['backend']}: the p50 of the extension reads at {size.tenants_full:,} tenants "
            f"is {min(ratios):.2f}× to {max(ratios):.2f}× that at {size.tenants_small}; "
            f"a create with a ring group subscription runs at {with_group / without:.0%} of the "
            f"rate of one without; while {args_clients(r)} clients create, a single read's p99 is "
            f"{busy['p99_ms']:.0f} ms against {idle['p99_ms']:.0f} ms on an idle server.")
    return "\n".join(lines)


def args_clients(results):
    return next(iter(results["creates"].values()))["clients"]


def docs_section(all_results, size, facts, args, started_at):
    workers, threads, worker_class = all_results[0]["gunicorn"]
    quick_note = f"{QUICK.extensions_full:,} extensions, {QUICK.tenants_full} tenants; prints only"
    versions = ", ".join(r["version"] for r in all_results)
    loads = "; ".join(f"{r['backend']} " + " → ".join(f"{x:.1f}" for x in r["load_average"])
                      for r in all_results)
    problems = [(r["backend"], p)
                for r in all_results for p in plan_problems(r["plans"], r["rows"])]
    problem_lines = ("\n".join(f"- {b}, {name}: `{sql[:100]}…` → `{line}`: {verdict}"
                               for b, (name, sql, line, verdict) in problems)
                     if problems else "- none: every lookup of the read endpoints uses an index.")
    return f"""{SECTION_START}
## API under gunicorn: `bench/api_bench.py`

What it measures, on SQLite and on PostgreSQL in the same run, against the real server
(`controlplane serve`, gunicorn with `deploy/gunicorn.conf.py`: {workers} {worker_class}
workers × {threads} threads) on scratch databases migrated by `controlplane db upgrade`:

- **reads**: p50 / p99 latency in milliseconds, one client with a keep-alive connection,
  {size.read_samples:,} requests per row, each at a random tenant (and a random extension):
  `GET /tenants/{{trunk}}/extensions/{{number}}`, the first and second page of
  `GET /tenants/{{trunk}}/extensions?page_size={PAGE_SIZE}` (a tenant has
  {EXTENSIONS_PER_TENANT} extensions, so page 2 is its last), and
  `GET /tenants?page_size={PAGE_SIZE}`. Two data sets side by side, each in its own
  database behind its own server: {size.tenants_small} tenants
  ({size.tenants_small * EXTENSIONS_PER_TENANT:,} extensions) and {size.tenants_full:,}
  tenants ({size.extensions_full:,} extensions); the client sends one request to each in
  turn, so both are measured under the same load. Reads must not grow with the number of
  tenants. `list tenants` shows {PAGE_SIZE} tenants, or all 10 of the small set.
- **creates**: extensions created per second through `POST /tenants/{{trunk}}/extensions`
  by {args.clients} concurrent clients (threads, one `requests.Session` each), spread over
  the {size.tenants_full:,} tenants of the full data set; once with a subscription to the
  tenant's first ring group (which has {EXTENSIONS_PER_TENANT} members), once without ring
  groups. Every create also writes its audit and outbox rows. At most {size.creates:,}
  creates or {size.create_seconds:.0f} s per row. Meanwhile one more client reads single
  extensions, one request after the other: how long a read waits behind the writers.
- **concurrent reads**: `GET` of one extension by {args.clients} clients at once
  (at most {size.concurrent_reads:,} requests or {size.read_seconds:.0f} s).
- **query plans** of every `SELECT` the read endpoints issue, on the full data set.

The data set: {size.tenants_full:,} tenants in 10 resellers, each tenant with an outbound
trunk, two ring groups and {EXTENSIONS_PER_TENANT} extensions (one in five with dual
registration as a SIP peer, one in ten ringing an external number through the trunk; every
extension subscribed to one ring group, half to both). Resellers, tenants, trunks and ring
groups are created through `tenants.services`; extensions and their subscriptions are bulk
inserted as the rows `create_extension` and `set_dual_registration` write (Fernet-encrypted
password, MD5 and SHA-256 HA1 of both SIP user IDs from `tenants.crypto`), without the
audit and outbox rows, which no measured read touches. On PostgreSQL the loader runs
`ANALYZE` after loading, as autovacuum would shortly after.

Run of {started_at:%Y-%m-%d %H:%M} UTC, size `{size.name}`. Machine: {facts['nproc']} CPUs
(`nproc`; {facts['cpu'] or 'unknown model'}), Linux {facts['kernel']}, Python {facts['python']},
{versions}; database and server on the same machine as the clients. The 1-minute load
average at the start and end of each backend's run ({loads}) shows how much else the
machine was running meanwhile: with {facts['nproc']} CPUs, anything above {facts['nproc']}
means the figures include waiting for a CPU. `free -h`:

```
{facts['free']}
```

{tables(all_results, size)}

{observations(all_results, size)}

Loading the data set (services + bulk insert, not a figure of the API):
{"; ".join(f"{r['backend']} {r[f'load_seconds_{size.tenants_full}']:.0f} s" for r in all_results)}.

Lookups (statements with a WHERE) that read a table of {LARGE_TABLE:,} rows or more whole,
in the plans below; on PostgreSQL each is explained again with `enable_seqscan = off` to
tell the planner's choice from a missing index:
{problem_lines}

<details><summary>Query plans of the read endpoints ({size.tenants_full:,} tenants)</summary>

{plans_markdown(all_results)}
</details>

To rerun (PostgreSQL on 127.0.0.1:5432 with trust authentication and a database `test`
beside which a scratch database is created and dropped; `--postgres-url` for another):

```
.venv/bin/python bench/api_bench.py            # the full size above; rewrites this section
.venv/bin/python bench/api_bench.py --quick    # {quick_note}
.venv/bin/python bench/api_bench.py --backends sqlite --clients 16
```
{SECTION_END}"""


# --- Main -------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK.extensions_full:,} extensions / {QUICK.tenants_full} tenants, "
                        "fewer requests")
    p.add_argument("--backends", default="sqlite,postgresql",
                   help="comma-separated: sqlite, postgresql (default both)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    p.add_argument("--postgres-url",
                   default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG_URL),
                   help="a database beside which a scratch one is created (default: %(default)s)")
    docs = p.add_mutually_exclusive_group()
    docs.add_argument("--write-docs", dest="write_docs", action="store_true", default=None,
                      help="rewrite this script's section of docs/benchmarks.md "
                           "(the default at full size)")
    docs.add_argument("--no-write-docs", dest="write_docs", action="store_false")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown or not args.backends:
        p.error(f"unknown backends: {', '.join(sorted(unknown)) or '(none)'}")
    if "postgresql" in args.backends and make_url(args.postgres_url).host not in LOCAL_HOSTS:
        p.error("the benchmark only contacts 127.0.0.1: --postgres-url must be local")
    if not 1 <= args.clients <= 64:
        p.error("--clients must be between 1 and 64")
    if args.write_docs is None:
        args.write_docs = not args.quick
    return args


def main(argv=None):
    args = parse_args(argv)
    size = QUICK if args.quick else FULL
    started_at = dt.datetime.now(dt.timezone.utc)
    facts = machine_facts()
    all_results = [run_backend(backend, size, args) for backend in args.backends]
    print()
    print(f"Trunkline API benchmark, size {size.name}, {started_at:%Y-%m-%d %H:%M} UTC, "
          f"{facts['nproc']} CPUs, load average " + "; ".join(
              f"{r['backend']} " + " -> ".join(f"{x:.1f}" for x in r["load_average"])
              for r in all_results))
    print(tables(all_results, size))
    print()
    print(observations(all_results, size))
    problems = [(r["backend"], p)
                for r in all_results for p in plan_problems(r["plans"], r["rows"])]
    print()
    print(plans_markdown(all_results))
    if problems:
        print("Full scans of a large table in the read endpoints' query plans:")
        for backend, (name, sql, line, verdict) in problems:
            print(f"  {backend}: {name}: {sql[:120]} -> {line}: {verdict}")
    else:
        print("Query plans: every lookup of the read endpoints uses an index.")
    failures = [f for r in all_results for c in r["creates"].values() for f in c["failures"]]
    if failures:
        print(f"First failed creates: {failures}")
    if args.write_docs:
        write_section(docs_section(all_results, size, facts, args, started_at) + "\n",
                      SECTION_START, SECTION_END, DOCS)
        print(f"\nwrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
