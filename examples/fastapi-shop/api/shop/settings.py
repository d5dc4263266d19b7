"""Configuration from the process environment only: DATABASE_URL, REDIS_URL, SECRET_KEY.

There is deliberately no *_FILE variant: whoever starts the container exports the values
(the selfhost.stack app role does it with a secret's `env:`). Values are never logged.
"""

import os

VERSION_FILE = "/app/VERSION"


class ConfigError(RuntimeError):
    pass


def app_version():
    """Baked into the image at build time (build arg APP_VERSION); the environment cannot change it."""
    try:
        with open(VERSION_FILE, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return "dev"


def required(name):
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set (the environment must provide it)")
    return value


def database_url():
    url = required("DATABASE_URL")
    # SQLAlchemy only knows postgresql://; many platforms hand out postgres://.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if not url.startswith("postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    return url


def redis_url():
    url = required("REDIS_URL")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")
    return url


def secret_key():
    key = required("SECRET_KEY")
    if len(key) < 16:
        raise ConfigError("SECRET_KEY must be at least 16 characters")
    return key
