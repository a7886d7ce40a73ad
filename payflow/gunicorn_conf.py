"""gunicorn's settings for PayFlow (``gunicorn -c python:payflow.gunicorn_conf``).

The access log never holds a credential. gunicorn's default format has ``%(u)s``, the
user name of HTTP Basic auth, and a merchant's API key *is* that user name
(``curl -u sk_test_…:``): it would be written in full to every access line. This format
is the default without it. The request line (``%(r)s``) can still carry a PAN typed into
a URL; the PAN filter on the ``gunicorn.access`` handlers (``payflow.wsgi``) masks it.
"""

import os

from prometheus_client import multiprocess

access_log_format = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def child_exit(server, worker):
    """A worker that exited leaves its live gauges behind in PROMETHEUS_MULTIPROC_DIR
    (prometheus_client's multiprocess mode): mark them dead so /metrics stops summing them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
