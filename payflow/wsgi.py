import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")
application = get_wsgi_application()

# gunicorn's own loggers have their own handlers: mask PAN-shaped runs there too (and give
# them the log context and, with LOG_FORMAT=json, the JSON format).
from payflow.logging import install_log_format  # noqa: E402

for _name in ("gunicorn.error", "gunicorn.access"):
    install_log_format(logging.getLogger(_name))
