"""gunicorn's settings for PayFlow (``gunicorn -c python:payflow.gunicorn_conf``).

The access log never holds a credential. gunicorn's default format has ``%(u)s``, the
user name of HTTP Basic auth, and a merchant's API key *is* that user name
(``curl -u sk_test_…:``): it would be written in full to every access line. This format
is the default without it. The request line (``%(r)s``) can still carry a PAN typed into
a URL; the PAN filter on the ``gunicorn.access`` handlers (``payflow.wsgi``) masks it.
"""

access_log_format = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
