"""Gunicorn settings of the web process, read by ``docker/entrypoint.sh`` and by
``benchmarks/annotation_load.py`` (so the benchmark serves as production does).

Threaded workers keep browser connections alive between an annotator's requests; a request
spends part of its time waiting on PostgreSQL, so each process serves a few at once.
"""

import os

bind = f"{os.environ.get('BIND', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = int(os.environ.get("WEB_KEEPALIVE", "30"))
timeout = 120
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None  # "" turns the access log off
