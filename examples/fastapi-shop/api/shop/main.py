"""The shop API (FastAPI, run by gunicorn with uvicorn workers). Contract: ../../README.md."""

import hashlib
import hmac
import json
import logging
import socket
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from . import settings
from .models import Item

VERSION = settings.app_version()
HOSTNAME = socket.gethostname()
SHOW_CREATED = VERSION != "v1"  # v2 shows created_at (the column exists in every version's schema)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CACHE_SECONDS = 30
CACHE_KEYS = ["shop:items:" + v for v in ("v1", "v2", "broken")]  # versions serialise items differently
CACHE_KEY = "shop:items:" + VERSION

log = logging.getLogger("uvicorn.error")  # gunicorn's error log (stderr)

# Read once at import: a missing or malformed variable stops the worker from booting, with the
# variable's name (never its value) in the error.
SECRET_KEY = settings.secret_key().encode()
engine = create_engine(
    settings.database_url(),
    pool_pre_ping=True,  # a database restart costs one retried checkout, not a failed request
    pool_size=5,
    max_overflow=5,
    pool_timeout=5,
    connect_args={"connect_timeout": 3, "application_name": "fastapi-shop",
                  "options": "-c statement_timeout=5000"},
)
cache = redis.Redis.from_url(settings.redis_url(), socket_timeout=2, socket_connect_timeout=2,
                             health_check_interval=30)


@asynccontextmanager
async def lifespan(_app):
    log.info("fastapi-shop %s ready", VERSION)
    yield
    engine.dispose()
    cache.close()


app = FastAPI(title="fastapi-shop", version=VERSION, lifespan=lifespan,
              docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")


class NewItem(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")
    name: str = Field(min_length=1, max_length=200)


def same_origin(origin, host):
    """True when an Origin header names the host of the Host header. A proxy that forwards
    Nginx's $host drops the port, so a Host without a port is compared by host name only."""
    try:
        o = urlsplit(origin)
        h = urlsplit("//" + host)
        o_port, h_port = o.port, h.port  # ValueError for a malformed port
    except ValueError:
        return False
    if o.scheme not in ("http", "https") or not o.hostname or not h.hostname:
        return False
    if o.hostname != h.hostname:
        return False
    if h_port is None:
        return True
    return (o_port or (443 if o.scheme == "https" else 80)) == h_port


@app.middleware("http")
async def origin_check_and_headers(request: Request, call_next):
    origin = request.headers.get("origin")
    if request.method in UNSAFE_METHODS and origin is not None \
            and not same_origin(origin, request.headers.get("host", "")):
        log.warning("refused %s %s: Origin %r does not match Host %r", request.method, request.url.path,
                    origin, request.headers.get("host"))
        response = JSONResponse({"error": "cross-origin request refused"}, status_code=403)
    else:
        response = await call_next(request)
    response.headers["X-App-Version"] = VERSION
    response.headers["X-Served-By"] = HOSTNAME
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@app.exception_handler(SQLAlchemyError)
@app.exception_handler(redis.RedisError)
async def backing_service_down(request: Request, exc: Exception):
    log.error("backend error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__,
              str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return JSONResponse({"error": "a backing service is unavailable"}, status_code=503)


# --- endpoints -------------------------------------------------------------------------------

@app.get("/health")
@app.get("/api/health")
def health():
    result = {"status": "ok", "version": VERSION, "postgres": "ok", "redis": "ok", "schema": None}
    try:
        with engine.connect() as conn:
            result["schema"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        result["postgres"] = f"error: {type(exc).__name__}"
    try:
        cache.ping()
    except redis.RedisError as exc:
        result["redis"] = f"error: {type(exc).__name__}"
    if VERSION == "broken":
        result["status"] = "error: this build is broken on purpose"
    elif result["postgres"] != "ok" or result["redis"] != "ok":
        result["status"] = "error"
    elif result["schema"] is None:
        result["status"] = "error: database not migrated (run alembic upgrade head)"
    if result["status"] != "ok":
        log.warning("health: %s", result)
    return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)


def item_json(row):
    item = {"id": row.id, "name": row.name}
    if SHOW_CREATED:
        item["created_at"] = row.created_at.isoformat()
    return item


def receipt(item_id, name):
    """Proof that the API holds SECRET_KEY: HMAC-SHA256 of "<id>:<name>", hex."""
    return hmac.new(SECRET_KEY, f"{item_id}:{name}".encode(), hashlib.sha256).hexdigest()


@app.get("/api/items")
def list_items():
    try:
        cached = cache.get(CACHE_KEY)
    except redis.RedisError as exc:  # the cache is optional for reads
        log.warning("items cache unavailable: %s", type(exc).__name__)
        cached, state = None, "bypass"
    else:
        state = "hit" if cached is not None else "miss"
    if cached is not None:
        body = json.loads(cached)
    else:
        with engine.connect() as conn:
            rows = conn.execute(select(Item.id, Item.name, Item.created_at).order_by(Item.id)).all()
        body = {"items": [item_json(r) for r in rows]}
        if state == "miss":
            try:
                cache.set(CACHE_KEY, json.dumps(body), ex=CACHE_SECONDS)
            except redis.RedisError:
                state = "bypass"
    return JSONResponse(body, headers={"X-Cache": state})


@app.post("/api/items", status_code=201)
def create_item(new: NewItem):
    with engine.begin() as conn:
        row = conn.execute(
            insert(Item).values(name=new.name).returning(Item.id, Item.name, Item.created_at)
        ).one()
    try:
        cache.delete(*CACHE_KEYS)
    except redis.RedisError as exc:
        log.warning("could not invalidate the items cache: %s", type(exc).__name__)
    body = item_json(row)
    body["receipt"] = receipt(row.id, row.name)
    return JSONResponse(body, status_code=201)


@app.get("/api/counter")
def counter():
    return {"counter": cache.incr("shop:counter")}


@app.get("/api/whoami")
def whoami(request: Request):
    """What the app sees of the request after the proxy: for checking proxy headers."""
    h = request.headers
    return {
        "host": h.get("host"),
        "x_forwarded_proto": h.get("x-forwarded-proto"),
        "x_forwarded_for": h.get("x-forwarded-for"),
        "x_real_ip": h.get("x-real-ip"),
        "scheme": request.url.scheme,
        "client": request.client.host if request.client else None,
        "served_by": HOSTNAME,
        "version": VERSION,
    }
