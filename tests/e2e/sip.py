"""SIP as outsiders speak it: edge worker processes, SIPp, baresip, and a small probe.

`Edge` runs `python -m sipedge run` as a process. SIPp (Debian's sip-tester) and baresip
are the real clients that register; `Probe` is a few lines of SIP over a socket of its own
address for what no client does on command: an OPTIONS ping (does the edge answer this
address at all?) and a digest REGISTER with a wrong password (the attacker). Every host is
an address of 127.0.0.0/8; the edges listen on 127.0.0.1 only.
"""

import hashlib
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import expected_core_build

from .conftest import STOP_TIMEOUT, free_port

SIPP_SCENARIOS = Path(__file__).parent / "sipp"
EDGE_START_TIMEOUT = 30


def free_sip_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on `host`."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind((host, port))
                tcp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Edge:
    """One `sipedge run` process, enrolled through the API."""

    def __init__(self, deployment, api, control_plane_url, workdir, name):
        self.deployment, self.name, self.workdir = deployment, name, workdir
        created = api.ok(api.post("/edges", {"name": name}), 201)
        self.id, self.token = created["id"], created["token"]
        deployment.secrets.add(self.token)
        self.control_plane_url = control_plane_url
        self.port = free_sip_port()
        self.metrics_port = free_port()
        self.address = ("127.0.0.1", self.port)
        self.state_dir = workdir / f"edge-{name}"
        self.log_path = workdir / f"edge-{name}.log"
        self.token_file = workdir / f"edge-{name}.token"
        self.token_file.write_text(self.token)
        self.process = None

    def start(self, *, wait_for_config=True):
        args = [sys.executable, "-m", "sipedge", "run",
                "--control-plane", self.control_plane_url, "--token-file", str(self.token_file),
                "--listen", f"udp:127.0.0.1:{self.port}", "--listen", f"tcp:127.0.0.1:{self.port}",
                "--state-dir", str(self.state_dir), "--metrics", f"127.0.0.1:{self.metrics_port}",
                "--log-level", "debug"]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=self.deployment.env, cwd=self.workdir,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        wanted = "snapshot applied" if wait_for_config else "edge running"
        deadline = time.monotonic() + EDGE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"edge {self.name} exited with {self.process.returncode}:\n{self.log()}")
            if wanted in self.log()[offset:]:
                self.check_core_build(offset)
                return self
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"edge {self.name} not ready within {EDGE_START_TIMEOUT}s:\n{self.log()}")

    def check_core_build(self, offset):
        """The process runs the SIP core as the suite expects: compiled by Cython, as it
        ships, unless plain Python was asked for or nothing here can build it."""
        running = [json.loads(line) for line in self.log()[offset:].splitlines()
                   if line.startswith("{") and '"edge running"' in line]
        wanted = expected_core_build(self.deployment.env)
        assert [entry["core"] for entry in running] == [wanted], running

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"edge {self.name} ignored SIGTERM:\n{self.log()}")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self):
        import requests

        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


# --- SIPp ------------------------------------------------------------------------------


def sipp(edge, user_id, password, *, source, transport="udp", expect=200, calls=1, rate=10,
         expires=300, timeout=20, workdir):
    """Run SIPp's register scenario: `calls` registrations of user_id from `source`.
    Returns (exit status, SIPp's error log): 0 when every call ended as expected."""
    scenario = "register.xml" if expect == 200 else "register_refused.xml"
    run_dir = workdir / f"sipp-{secrets.token_hex(4)}"
    run_dir.mkdir()
    users = run_dir / "users.csv"
    users.write_text(f"SEQUENTIAL\n{user_id};[authentication username={user_id} "
                     f"password={password}];{expires}\n")
    args = ["sipp", f"{edge.address[0]}:{edge.address[1]}", "-sf", str(SIPP_SCENARIOS / scenario),
            "-inf", str(users), "-m", str(calls), "-r", str(rate), "-i", source,
            "-p", str(free_sip_port(source)), "-t", "u1" if transport == "udp" else "t1",
            "-timeout", f"{timeout}s", "-timeout_error", "-nostdin", "-trace_err",
            "-max_retrans", "3"]
    done = subprocess.run(args, cwd=run_dir, capture_output=True, text=True, timeout=timeout + 15)
    errors = "".join(p.read_text(errors="replace") for p in run_dir.glob("*_errors.log"))
    return done.returncode, errors + done.stderr[-2000:]


# --- baresip ---------------------------------------------------------------------------


class Baresip:
    """A baresip user agent registering its accounts, kept running until stopped.

    accounts: (edge, user_id, password, transport) each.
    """

    def __init__(self, workdir, accounts, *, source):
        self.dir = workdir / f"baresip-{secrets.token_hex(3)}"
        self.dir.mkdir()
        self.accounts = accounts
        (self.dir / "accounts").write_text("".join(
            f"<sip:{user_id}@{edge.address[0]}:{edge.address[1]};transport={transport}>"
            f";auth_pass={password};regint=120\n"
            for edge, user_id, password, transport in accounts))
        (self.dir / "config").write_text(
            f"sip_listen\t\t{source}:{free_sip_port(source)}\n"
            "module_path\t\t/usr/lib/baresip/modules\n"
            "module\t\t\tg711.so\nmodule\t\t\taufile.so\n"
            "module_app\t\taccount.so\n"
            "audio_player\t\taufile,/dev/null\naudio_source\t\taufile,/dev/null\n")
        self.log_path = self.dir / "baresip.log"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(["baresip", "-f", str(self.dir)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def registered(self):
        """Has every account had its 200 OK?"""
        log = self.log()
        return all(re.search(rf"{re.escape(user_id)}@\S+ .*200 OK .*\[\d+ binding", log)
                   for _, user_id, _, _ in self.accounts)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def clients_installed():
    return shutil.which("sipp") is not None and shutil.which("baresip") is not None


# --- the probe -------------------------------------------------------------------------


def _request(method, edge, source, user, *, cseq=1, call_id=None, branch=None, extra=()):
    host, port = edge.address
    lines = [
        f"{method} sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch={branch or 'z9hG4bK' + secrets.token_hex(8)};rport",
        f"From: <sip:{user}@{host}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id or secrets.token_hex(8)}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "User-Agent: trunkline-probe",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(data):
    match = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(match.group(1)) if match else None


class Probe:
    """A host at `address` speaking SIP over UDP, one request at a time."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.source = self.sock.getsockname()

    def close(self):
        self.sock.close()

    def _exchange(self, edge, data, timeout):
        self.sock.settimeout(timeout)
        self.sock.sendto(data, edge.address)
        try:
            reply, _ = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        return reply

    def options(self, edge, timeout=0.5):
        """The status the edge answered with, or None for no answer at all."""
        reply = self._exchange(edge, _request("OPTIONS", edge, self.source, "probe"), timeout)
        return None if reply is None else _status(reply)

    def register(self, edge, user, password, timeout=1.0, *, realm=None):
        """A digest REGISTER with MD5; the final status, or None if the edge went silent."""
        call_id = secrets.token_hex(8)
        reply = self._exchange(edge, _request("REGISTER", edge, self.source, user,
                                              call_id=call_id), timeout)
        if reply is None or _status(reply) != 401:
            return None if reply is None else _status(reply)
        text = reply.decode(errors="replace")
        challenge = next(line for line in text.split("\r\n")
                         if line.startswith("WWW-Authenticate:") and "MD5" in line)
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
        realm = realm or re.search(r'realm="([^"]+)"', challenge).group(1)
        uri = f"sip:{edge.address[0]}:{edge.address[1]}"
        cnonce, nc = secrets.token_hex(4), "00000001"

        def h(text):
            return hashlib.md5(text.encode()).hexdigest()

        response = h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:{nc}:{cnonce}:auth:"
                     f"{h(f'REGISTER:{uri}')}")
        auth = (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
                f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc={nc}, '
                f'cnonce="{cnonce}"')
        reply = self._exchange(edge, _request("REGISTER", edge, self.source, user, cseq=2,
                                              call_id=call_id,
                                              extra=[f"Contact: <sip:{user}@{self.source[0]}:"
                                                     f"{self.source[1]}>", "Expires: 60", auth]),
                               timeout)
        return None if reply is None else _status(reply)


def eventually(check, timeout=10.0, interval=0.05):
    """Call check() until it returns something truthy; returns it, or the last falsy value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)

