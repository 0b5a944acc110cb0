"""Forgetting on time: quiet failure windows, old bans, old batch ids, expired bindings,
and outbox entries older than any edge should need. Run at most once a minute per process
after the edges' event intake has answered (controlplane/api/edge_feed.py), and by
`controlplane purge`."""

import datetime as dt
import time

from .. import feed
from . import bans

INTERVAL = 60.0
OUTBOX_KEEP = dt.timedelta(days=7)
_last_run = {"at": float("-inf")}


def run(session, now):
    from . import edges  # edges calls maybe_run: import here, not at module load

    bans.purge(session, now)
    edges.purge(session, now=now)
    feed.prune(session, now=now, keep=OUTBOX_KEEP)


def maybe_run(session, now):
    if time.monotonic() - _last_run["at"] >= INTERVAL:
        _last_run["at"] = time.monotonic()
        run(session, now)
