"""gunicorn settings for the shop API; each can be changed through the environment."""

import os

bind = "0.0.0.0:" + os.environ.get("PORT", "8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn.workers.UvicornWorker"
# The edge proxy's X-Forwarded-For/-Proto are trusted from these addresses. The API is only
# reachable on the stack's internal network, so the default trusts any peer there.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
# Worker heartbeats on a tmpfs that exists even with a read-only root filesystem.
worker_tmp_dir = "/dev/shm"
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
timeout = 30
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = 5  # longer than Nginx's upstream keepalive would be harmless; 5 s is uvicorn's default
