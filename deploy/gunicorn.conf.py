"""gunicorn settings for the control plane (used by `controlplane serve` and systemd).

gthread workers: each worker process serves many requests at once on threads. An edge's
long-poll holds a thread while it waits, so there are many threads, and the app caps the
long-polls of a worker at threads - 8 (CONTROLPLANE_LONGPOLL_SLOTS): ordinary API requests
always find a free thread. Threads are cheap here: they spend their time waiting.
"""

import multiprocessing
import os

bind = os.environ.get("CONTROLPLANE_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = int(os.environ.get("CONTROLPLANE_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.setdefault("CONTROLPLANE_THREADS", "64"))
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
