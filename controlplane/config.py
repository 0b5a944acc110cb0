"""Configuration from the environment (12-factor); the embedded default needs none."""

import os
from pathlib import Path

from tenants.crypto import SecretBox

DEFAULT_REALM = "sip.trunkline.local"


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
        # Long-polls one worker holds at once; the rest of its threads serve the API.
        "LONGPOLL_SLOTS": int(env.get("CONTROLPLANE_LONGPOLL_SLOTS")
                              or max(int(env.get("CONTROLPLANE_THREADS", "64")) - 8, 1)),
    }
    return config


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
