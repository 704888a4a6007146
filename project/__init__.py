from .celery import app as celery_app
from .redact import install_log_scrubbing

# Every process (web, worker, beat, watcher, manage.py) imports this package first: its
# log records are scrubbed of secrets from the start, whatever handlers come later.
install_log_scrubbing()

__all__ = ("celery_app",)
