"""gunicorn settings for the control plane (used by `controlplane serve` and systemd).

gthread workers: each worker process serves many requests at once on threads. An edge's
long-poll holds a thread while it waits, so there are many threads, and the app caps the
long-polls of a worker at threads - 8 (CONTROLPLANE_LONGPOLL_SLOTS): ordinary API requests
always find a free thread. Threads are cheap here: they spend their time waiting.

Sizing: every edge of the fleet holds one long-poll, in whichever worker accepted its
connection, and the connections do not spread evenly; give the workers' slots together
about twice the fleet. The defaults, 4 workers (fewer with one CPU) x 64 threads, make
4 x 56 = 224 slots: a fleet of 100 edges. A larger fleet wants more threads (they cost
memory, not CPU, while they wait); a long-poll beyond the slots is answered at once with
Retry-After.
"""

import multiprocessing
import os

from controlplane.config import DEFAULT_THREADS

bind = os.environ.get("CONTROLPLANE_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = int(os.environ.get("CONTROLPLANE_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
# Put back into the environment: the app reads it to size its long-poll slots.
threads = int(os.environ.setdefault("CONTROLPLANE_THREADS", str(DEFAULT_THREADS)))
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# No query strings in the access log: they carry nothing secret today, and never should.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
loglevel = os.environ.get("CONTROLPLANE_LOG_LEVEL", "info")
# gunicorn's control socket (gunicornc) lives at one path per user by default, so several
# control planes on one host (tests, benchmarks) would delete each other's. We manage the
# server with signals and systemd, not gunicornc.
control_socket_disable = True


def post_worker_init(worker):
    """Before the worker serves, it rehearses the edges' event intake (controlplane.warmup:
    a batch applied and rolled back), so that the first real batch, often the one that
    decides a ban every edge waits for, does not pay for the first use of its statements.

    On SIGTERM, answer the edges' long-polls at once (empty: each edge asks again, of
    another server or of this one restarted) instead of holding the worker's graceful exit
    for up to their whole wait."""
    import signal

    if getattr(worker.wsgi, "extensions", {}).get("trunkline") is not None:
        from controlplane.warmup import rehearse_edge_intake

        rehearse_edge_intake(worker.wsgi, logger=worker.log)

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        trunkline = getattr(worker.wsgi, "extensions", {}).get("trunkline")
        if trunkline is not None:
            trunkline["notifier"].stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
