"""`sipedge run`: one edge worker, as ../shared/CONTRACT.md names it.

    sipedge run --control-plane URL --token TOKEN --listen udp:HOST:PORT --listen tcp:HOST:PORT

The token may instead come from --token-file or SIPEDGE_TOKEN. The edge keeps its state
(the last configuration, its nonce secret) in --state-dir, so that a restart without the
control plane still serves and the nonces phones hold stay valid.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

from . import compiled
from .core import MD5_ONLY_AGENTS, EdgeCore
from .link import ControlPlaneLink
from .sip.digest import ALGORITHMS
from .shell import EdgeServer

log = logging.getLogger("sipedge")



class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _listen(text):
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if transport not in ("udp", "tcp") or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected udp:HOST:PORT or tcp:HOST:PORT")
    return transport, host.strip("[]"), int(port)


def _algorithms(text):
    if isinstance(text, tuple):
        return text
    names = tuple(a.strip().upper() for a in text.split(",") if a.strip())
    if not names or any(a not in ALGORITHMS for a in names):
        raise argparse.ArgumentTypeError(f"{text!r}: a list of {', '.join(ALGORITHMS)}")
    return names


def _regex(text):
    try:
        re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    return text


def _hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parser():
    p = argparse.ArgumentParser(prog="sipedge", description="Trunkline SIP edge worker")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one edge worker")
    run.add_argument("--control-plane", required=True, metavar="URL",
                     help="the control plane's base URL, e.g. http://127.0.0.1:8080")
    token = run.add_mutually_exclusive_group()
    token.add_argument("--token", help="the edge token (or --token-file, or SIPEDGE_TOKEN)")
    token.add_argument("--token-file", type=Path, help="a file holding the edge token")
    run.add_argument("--listen", action="append", type=_listen, required=True,
                     metavar="udp|tcp:HOST:PORT", help="may be given several times")
    run.add_argument("--state-dir", type=Path,
                     default=Path(os.environ.get("SIPEDGE_STATE_DIR", "./var/sipedge")),
                     help="where the edge keeps its last configuration and nonce secret")
    run.add_argument("--metrics", type=_hostport, metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics")
    run.add_argument("--realm", default=os.environ.get("SIPEDGE_REALM"),
                     help="the digest realm (default: the platform realm of the configuration)")
    run.add_argument("--domain", action="append", default=[],
                     help="a SIP domain phones may register to (besides the realm and any "
                          "IP address of the edge); may be given several times")
    run.add_argument("--digest-algorithms", type=_algorithms,
                     default=_algorithms(os.environ.get("SIPEDGE_DIGEST_ALGORITHMS",
                                                        ",".join(ALGORITHMS))),
                     help="the challenges a 401 offers, in order (default: %(default)s)")
    run.add_argument("--md5-only-user-agents", type=_regex,
                     default=os.environ.get("SIPEDGE_MD5_ONLY_USER_AGENTS", MD5_ONLY_AGENTS),
                     metavar="REGEX",
                     help="User-Agents challenged with MD5 alone: clients that give up on a "
                          "401 offering SHA-256 (default: %(default)s; empty: none)")
    run.add_argument("--log-level", default=os.environ.get("SIPEDGE_LOG_LEVEL", "info"))
    return p


def _token(args):
    if args.token:
        return args.token.strip()
    if args.token_file:
        return args.token_file.read_text().strip()
    return os.environ.get("SIPEDGE_TOKEN", "").strip()


def _nonce_secret(state_dir):
    """Kept across restarts, so nonces issued before a restart still verify."""
    path = state_dir / "nonce-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        secret = secrets.token_bytes(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable
        with os.fdopen(fd, "w") as file:
            file.write(secret.hex())
        os.replace(tmp, path)
        return secret


async def _run(args, token):
    args.state_dir.mkdir(parents=True, exist_ok=True)
    core = EdgeCore(nonce_secrets=[_nonce_secret(args.state_dir)], realm=args.realm,
                    domains=args.domain, algorithms=args.digest_algorithms,
                    md5_only_agents=args.md5_only_user_agents or None)
    link = ControlPlaneLink(core, args.control_plane, token,
                            state_path=args.state_dir / "config.json")
    await link.load_state()  # serve the last configuration before the first packet
    server = EdgeServer(core, args.listen, metrics=args.metrics, link=link)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("edge running", extra={"fields": {
        "listen": [f"{t}:{h}:{p}" for t, h, p in server.bound],
        "control_plane": args.control_plane, "core": compiled.summary()}})
    stale = sorted(name for name, how in compiled.status().items() if how == compiled.STALE)
    if stale:
        log.warning("compiled modules built from another source run as plain Python; "
                    "rebuild them (python setup.py build_ext --inplace)",
                    extra={"fields": {"modules": stale}})
    await stopping.wait()
    log.info("stopping")
    await server.stop()
    log.info("stopped")


def main(argv=None):
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines name no secrets,
    logging.getLogger("httpcore").setLevel(logging.WARNING)  # but they are noise
    token = _token(args)
    if not token:
        print("sipedge: an edge token is needed (--token, --token-file or SIPEDGE_TOKEN)",
              file=sys.stderr)
        return 2
    asyncio.run(_run(args, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
