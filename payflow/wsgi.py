import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")
application = get_wsgi_application()

# gunicorn's own loggers have their own handlers: mask PAN-shaped runs there too.
from payflow.logging import install_pan_redaction  # noqa: E402

for _name in ("gunicorn.error", "gunicorn.access"):
    install_pan_redaction(logging.getLogger(_name))
