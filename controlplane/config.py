"""Configuration from the environment (12-factor); the embedded default needs none."""

import os
from pathlib import Path

from tenants.crypto import SecretBox

DEFAULT_REALM = "sip.trunkline.local"
# gthread threads per gunicorn worker (deploy/gunicorn.conf.py gives gunicorn the same number).
# An edge holds one thread of some worker for as long as its long-poll waits, and edges'
# connections do not spread evenly over the workers: WORKERS x long-poll slots should be about
# twice the fleet. The default, 4 x (64 - 8) = 224 slots, serves a fleet of 100 edges.
DEFAULT_THREADS = 64
# Threads of each worker that long-polls never take: the API's.
API_THREADS = 8


def data_dir():
    return Path(os.environ.get("CONTROLPLANE_DATA_DIR", "var")).resolve()


def load_config(environ=None):
    env = os.environ if environ is None else environ
    folder = Path(env.get("CONTROLPLANE_DATA_DIR", "var")).resolve()
    url = env.get("CONTROLPLANE_DATABASE_URL")
    keys = env.get("CONTROLPLANE_SECRET_KEYS")
    keys_file = env.get("CONTROLPLANE_SECRET_KEYS_FILE")
    config = {
        "DATA_DIR": str(folder),
        "DATABASE_URL": url or f"sqlite:///{folder / 'controlplane.db'}",
        "EMBEDDED": url is None,
        "SECRET_KEYS": [k.strip() for k in keys.split(",") if k.strip()] if keys else None,
        "SECRET_KEYS_FILE": keys_file or (str(folder / "secret-keys") if url is None else None),
        "SIP_REALM": env.get("CONTROLPLANE_SIP_REALM", DEFAULT_REALM),
        "SIP_SERVER": env.get("CONTROLPLANE_SIP_SERVER")
        or env.get("CONTROLPLANE_SIP_REALM", DEFAULT_REALM),
        "LONGPOLL_SLOTS": longpoll_slots(env),
    }
    return config


def longpoll_slots(env):
    """Long-polls one worker holds at once; the rest of its threads serve the API. A long-poll
    beyond them is answered at once with Retry-After, so it never holds a thread the API needs."""
    threads = int(env.get("CONTROLPLANE_THREADS") or DEFAULT_THREADS)
    if threads <= API_THREADS:
        raise ValueError(f"CONTROLPLANE_THREADS={threads}: each worker needs more than "
                         f"{API_THREADS} threads, {API_THREADS} for the API and the rest for "
                         "the edges' long-polls")
    most = threads - API_THREADS
    slots = int(env.get("CONTROLPLANE_LONGPOLL_SLOTS") or most)
    if not 1 <= slots <= most:
        raise ValueError(f"CONTROLPLANE_LONGPOLL_SLOTS={slots}: must be 1 to {most}"
                         f" (CONTROLPLANE_THREADS={threads} less {API_THREADS} for the API)")
    return slots


def secret_keys(config):
    """The secret keys, newest first. On the embedded default a key is generated on first
    start and kept in the data folder; elsewhere they must be configured (every node of a
    deployment needs the same keys)."""
    if config.get("SECRET_KEYS"):
        return list(config["SECRET_KEYS"])
    path = config.get("SECRET_KEYS_FILE")
    if not path:
        raise RuntimeError(
            "no secret keys: set CONTROLPLANE_SECRET_KEYS (comma-separated, newest first) or "
            "CONTROLPLANE_SECRET_KEYS_FILE; `controlplane secrets generate-key` makes one"
        )
    path = Path(path)
    if not path.exists():
        if not config.get("EMBEDDED"):
            raise RuntimeError(f"secret keys file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(SecretBox.generate_key() + "\n")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
