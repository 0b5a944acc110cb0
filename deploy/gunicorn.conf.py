"""gunicorn settings for the control plane (used by `controlplane serve` and systemd).

gthread workers: each worker process serves several requests at once on threads, so slow
clients (and the edges' long-polls to come) do not hold a whole process.
"""

import multiprocessing
import os

bind = os.environ.get("CONTROLPLANE_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = int(os.environ.get("CONTROLPLANE_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("CONTROLPLANE_THREADS", 8))
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# No query strings in the access log: they carry nothing secret today, and never should.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
loglevel = os.environ.get("CONTROLPLANE_LOG_LEVEL", "info")
