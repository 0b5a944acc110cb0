"""Trunkline run as an operator runs it: real processes, real ports, HTTP only.

Nothing here imports the product. Each deployment is a database (SQLite in a data folder
of its own, or a scratch PostgreSQL database) prepared with `python -m controlplane db
upgrade` and `api-key create`; servers are `python -m controlplane serve` subprocesses on
ports the OS hands out. Every secret the tests see (API keys, SIP passwords, the HA1 values
derived from them) is collected as it goes by; when a deployment is torn down, each of its
servers must stop cleanly on SIGTERM and none of those secrets may appear in its output.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from cryptography.fernet import Fernet

from ..conftest import BACKENDS, scratch_postgres_database

REALM = "sip.e2e.trunkline"
SIP_SERVER = "edge.e2e.trunkline"
CLI_TIMEOUT = 60
START_TIMEOUT = 30
STOP_TIMEOUT = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environ(**settings):
    """The test runner's environment without any CONTROLPLANE_* of the developer's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")}
    env.update({k: v for k, v in settings.items() if v is not None})
    return env


def controlplane(env, cwd, *args):
    """Run `python -m controlplane ARGS` to completion; returns its standard output."""
    done = subprocess.run([sys.executable, "-m", "controlplane", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    return done.stdout


def last_line(output):
    return output.rstrip("\n").splitlines()[-1].strip()


class Secrets:
    """Everything a log must never show."""

    def __init__(self):
        self.values = set()

    def add(self, value):
        if isinstance(value, str) and len(value) >= 8:
            self.values.add(value)
            # API keys look like <prefix>_<id>.<secret>: the id may be logged, the secret not.
            _, dot, secret = value.partition(".")
            if dot and len(secret) >= 8:
                self.values.add(secret)

    def add_credentials(self, creds):
        self.add(creds["password"])
        for user in (creds.get("user_id"), creds.get("remote_user_id")):
            if user:
                plain = f"{user}:{creds['realm']}:{creds['password']}".encode()
                self.values.add(hashlib.md5(plain).hexdigest())
                self.values.add(hashlib.sha256(plain).hexdigest())

    def collect(self, document):
        if isinstance(document, dict):
            if "password" in document and "realm" in document:
                self.add_credentials(document)
            for name, value in document.items():
                if name in ("key", "token", "password"):
                    self.add(value)
                else:
                    self.collect(value)
        elif isinstance(document, list):
            for item in document:
                self.collect(item)

    def found_in(self, text):
        return sorted(v for v in self.values if v in text or v.upper() in text)


class Api:
    """requests against /api/v1 with one key; every secret in a response is collected."""

    def __init__(self, base_url, key, secrets, http=None):
        self.base_url, self.key, self.secrets = base_url, key, secrets
        self.http = http or requests.Session()
        secrets.add(key)

    def as_(self, key):
        return Api(self.base_url, key, self.secrets, self.http)

    def request(self, method, path, **kwargs):
        headers = kwargs.pop("headers", {})
        if self.key is not None:
            headers.setdefault("Authorization", f"Bearer {self.key}")
        response = self.http.request(method, f"{self.base_url}/api/v1{path}", headers=headers,
                                     timeout=10, **kwargs)
        if response.content and response.headers.get("Content-Type", "").startswith(
                "application/json"):
            self.secrets.collect(response.json())
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, response, status):
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def close(self):
        self.http.close()


class Server:
    """One `controlplane serve` process; stdout and stderr go to one log file."""

    def __init__(self, env, cwd, log_path):
        self.env, self.cwd, self.log_path = env, cwd, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            # A session of its own, so that cleanup can reach gunicorn's workers by group.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "serve", "--bind", f"127.0.0.1:{self.port}"],
                env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/v1/openapi.json", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"the server did not answer within {START_TIMEOUT}s:\n{self.log()}")

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """SIGTERM, as systemd sends it; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"the server ignored SIGTERM for {STOP_TIMEOUT}s:\n{self.log()}")
        return self.process.returncode

    def kill(self):
        """The last resort: the master and every worker of this server, and nothing else."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(STOP_TIMEOUT)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Installation:
    """A data folder and an environment, and the servers started on them."""

    platform_key = None

    def __init__(self, env, workdir):
        self.env, self.workdir = env, workdir
        self.secrets = Secrets()
        self.servers = []
        self.clients = []

    def run(self, *args):
        return controlplane(self.env, self.workdir, *args)

    def start_server(self):
        server = Server(self.env, self.workdir, self.workdir / f"server-{len(self.servers)}.log")
        self.servers.append(server)
        return server.start()

    def api(self, server, key=None, *, anonymous=False):
        client = Api(server.url, None if anonymous else key or self.platform_key, self.secrets)
        self.clients.append(client)
        return client

    def _collect_secret_keys(self):
        """The keys that encrypt SIP passwords: configured, or made by the first start."""
        for key in self.env.get("CONTROLPLANE_SECRET_KEYS", "").split(","):
            self.secrets.add(key.strip())
        keys_file = self.workdir / "data" / "secret-keys"
        if keys_file.exists():
            for key in keys_file.read_text().split():
                self.secrets.add(key)

    def shut_down(self):
        """Stop every server; then hold them to a clean exit and a log without secrets."""
        for client in self.clients:
            client.close()  # no idle keep-alive connection for a graceful stop to wait on
        statuses = []
        try:
            for server in self.servers:
                statuses.append((server, server.stop()))
        finally:
            for server in self.servers:
                if server.running:
                    server.kill()
        self._collect_secret_keys()
        for server, status in statuses:
            assert status == 0, f"{server.log_path.name} exited with {status}:\n{server.log()}"
            leaked = self.secrets.found_in(server.log())
            assert not leaked, f"secrets in {server.log_path.name}: {leaked}"


class Deployment(Installation):
    """An installation whose database the CLI made ready, with a platform key."""

    def __init__(self, backend, env, workdir):
        super().__init__(env, workdir)
        self.backend = backend
        self.run("db", "upgrade")
        self.platform_key = last_line(
            self.run("api-key", "create", "--role", "platform", "--name", "e2e"))
        self.secrets.add(self.platform_key)


def _deployment_env(backend, workdir):
    data_dir = workdir / "data"
    if backend == "sqlite":
        # The embedded default: no database URL, no secret keys; all in the data folder.
        return clean_environ(CONTROLPLANE_DATA_DIR=str(data_dir),
                             CONTROLPLANE_SIP_REALM=REALM,
                             CONTROLPLANE_SIP_SERVER=SIP_SERVER), None
    url, drop = scratch_postgres_database(prefix="trunkline_e2e")
    return clean_environ(CONTROLPLANE_DATA_DIR=str(data_dir),
                         CONTROLPLANE_DATABASE_URL=url,
                         CONTROLPLANE_SECRET_KEYS=Fernet.generate_key().decode(),
                         CONTROLPLANE_SIP_REALM=REALM,
                         CONTROLPLANE_SIP_SERVER=SIP_SERVER), drop


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"e2e-{request.param}")
    env, drop = _deployment_env(request.param, workdir)
    try:
        deployment = Deployment(request.param, env, workdir)
        yield deployment
        deployment.shut_down()
    finally:
        if drop is not None:
            drop()


@pytest.fixture(scope="module")
def server(deployment):
    """One server per deployment, shared by the tests of a module (each makes its own tenants)."""
    return deployment.start_server()


@pytest.fixture
def api(deployment, server):
    """The API over HTTP with the platform key; `api.as_(key)` for another key."""
    return deployment.api(server)


@pytest.fixture
def fresh_install(tmp_path):
    """The embedded default on a machine that never ran Trunkline: a data folder named, no
    database URL, no secret keys."""
    install = Installation(clean_environ(CONTROLPLANE_DATA_DIR=str(tmp_path / "data")), tmp_path)
    yield install
    install.shut_down()
