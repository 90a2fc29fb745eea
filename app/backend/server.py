"""Stand-in backend for the classroom-manager app: health, a small table, migrations.

Commands: `serve` (default), `migrate`, `migrate-check` (exit 0 when no migration is pending,
1 otherwise); the container's healthcheck is healthcheck.py. Migrations are the built-in ones
plus `migrations/<version>-<name>.sql` beside this file.
Only the standard library plus Debian's python3-psycopg2 and python3-redis.

`/api/health` answers in the story's shape (story 0-5): `{"success": true, "data": {"status":
"healthy", "timestamp": "..."}}`, 503 with `success: false` and status "unhealthy" (the failing
checks go to the log). With APP_SHAPE=one-entry the body also reports `data.version` and
`data.checks`, as this stand-in did before it took the story's shape. Every answer names the
release in an `X-App-Version` header: the tests and the bench tell releases apart by it; the
deploy tool does not read it unless told to (invoke.yaml health_version).

A file named FAULT beside this one, present at image build time, makes the service
misbehave on purpose so the deploy pipeline's failure handling can be tested:
  health-500       /api/health always answers 503
  health-500-after:N  /api/health answers 503 from N seconds after start
  crash            the server exits at start
  crash-after:N    the server exits N seconds after start
  hang             /api/health never answers
  slow-start:N     /api/health fails for the first N seconds, then passes
  no-db            behaves as if PostgreSQL were unreachable (migrate fails too)
"""
import concurrent.futures
import datetime
import json
import os
import queue
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import redis

VERSION = os.environ.get("APP_VERSION", "unknown")
SHAPE = os.environ.get("APP_SHAPE", "story")     # or "one-entry" (see above)
PORT = int(os.environ.get("PORT", "4000"))
CHECK_TIMEOUT = 2.0
STARTED = time.monotonic()
DRAIN_SECONDS = 5          # on SIGTERM, in-flight requests get this long to finish
IN_FLIGHT = [0]
IN_FLIGHT_LOCK = threading.Lock()

MIGRATIONS = [
    (1, "CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL,"
        " created_at TIMESTAMPTZ NOT NULL DEFAULT now())"),
]


def read_migrations():
    """The built-in migrations and the files in migrations/, by version."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
    found = list(MIGRATIONS)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".sql"):
            with open(os.path.join(folder, name)) as f:
                found.append((int(name.split("-", 1)[0]), f.read()))
    return sorted(found)


def read_fault():
    """Return (kind, seconds) from the FAULT file baked into the image, or (None, 0)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "FAULT")
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None, 0
    kind, _, arg = text.partition(":")
    return kind, float(arg or 0)


FAULT, FAULT_SECONDS = read_fault()


def log(level, msg, **fields):
    record = {"ts": now_iso(), "level": level, "msg": msg, "version": VERSION, **fields}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def db_connect():
    if FAULT == "no-db":
        raise psycopg2.OperationalError("database unreachable (FAULT=no-db)")
    return psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=int(CHECK_TIMEOUT))


# Connections kept open between checks, as any real backend pools them: a health check under
# load should not cost a PostgreSQL process fork each time.
IDLE_DB = queue.LifoQueue()
REDIS = None


def check_database():
    try:
        conn = IDLE_DB.get_nowait()
    except queue.Empty:
        conn = db_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (int(CHECK_TIMEOUT * 1000),))
            cur.execute("SELECT 1")
            cur.fetchone()
        conn.rollback()
    except Exception:
        conn.close()   # a broken connection is dropped; the next check opens a new one
        raise
    IDLE_DB.put(conn)


def check_redis():
    global REDIS
    if REDIS is None:   # redis-py keeps its own connection pool
        REDIS = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=CHECK_TIMEOUT,
                                     socket_connect_timeout=CHECK_TIMEOUT)
    REDIS.ping()


CHECK_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8)


def run_checks():
    """Run the dependency checks side by side; each gets about CHECK_TIMEOUT seconds."""
    futures = {"database": CHECK_POOL.submit(check_database), "redis": CHECK_POOL.submit(check_redis)}
    results = {}
    deadline = time.monotonic() + CHECK_TIMEOUT + 0.5
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = "ok"
        except concurrent.futures.TimeoutError:
            results[name] = "timeout"
        except Exception as exc:  # any failure of the dependency is reported, not raised
            results[name] = "error: " + str(exc).strip().splitlines()[0][:200]
    return results


def health_report():
    """Return (http_status, body) for GET /api/health."""
    checks = run_checks()
    uptime = time.monotonic() - STARTED
    if FAULT == "health-500" or (FAULT == "health-500-after" and uptime >= FAULT_SECONDS):
        checks["fault"] = FAULT
    elif FAULT == "slow-start" and uptime < FAULT_SECONDS:
        checks["startup"] = "warming up (%.0fs of %.0fs)" % (uptime, FAULT_SECONDS)
    healthy = all(value == "ok" for value in checks.values())
    data = {"status": "healthy" if healthy else "unhealthy", "timestamp": now_iso()}
    if SHAPE == "one-entry":
        data.update(version=VERSION, checks=checks)
    elif not healthy:
        log("warn", "unhealthy", checks=checks)
    return (200 if healthy else 503), {"success": healthy, "data": data}


class Handler(BaseHTTPRequestHandler):
    server_version = "classroom-backend"
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        started = time.monotonic()
        status = 500
        with IN_FLIGHT_LOCK:
            IN_FLIGHT[0] += 1
        try:
            try:
                status, body = self.route(method)
            except Exception as exc:
                log("error", "request failed", error=str(exc))
                body = {"success": False, "error": {"message": "internal error"}}
            self.reply(status, body)
        finally:
            with IN_FLIGHT_LOCK:
                IN_FLIGHT[0] -= 1
        log("info", "request", method=method, path=self.path, status=status,
            request_id=self.headers.get("X-Request-ID"),
            duration_ms=round((time.monotonic() - started) * 1000, 1))

    def route(self, method):
        path = self.path.split("?", 1)[0]
        if path == "/api/health" and method == "GET":
            if FAULT == "hang":
                threading.Event().wait()
            return health_report()
        if path == "/api/live" and method == "GET":
            return 200, {"success": True, "data": {"status": "alive", "version": VERSION}}
        if path == "/api/items" and method == "GET":
            return 200, {"success": True, "data": list_items()}
        if path == "/api/items" and method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            name = str(payload.get("name", "")).strip()
            if not name:
                return 400, {"success": False, "error": {"message": "name is required"}}
            return 201, {"success": True, "data": add_item(name)}
        return 404, {"success": False, "error": {"message": "not found"}}

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        request_id = self.headers.get("X-Request-ID")
        if request_id:
            self.send_header("X-Request-ID", request_id)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # the JSON request log above replaces this
        pass


def list_items():
    conn = db_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, name, created_at FROM items ORDER BY id")
            return [{"id": i, "name": n, "created_at": c.isoformat()} for i, n, c in cur.fetchall()]
    finally:
        conn.close()


def add_item(name):
    conn = db_connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO items (name) VALUES (%s) RETURNING id", (name,))
            return {"id": cur.fetchone()[0], "name": name}
    finally:
        conn.close()


def applied_migrations(cur):
    cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    cur.execute("SELECT version FROM schema_migrations")
    return {row[0] for row in cur.fetchall()}


def migrate_check():
    """Exit 0 when every migration of this release is applied, 1 when some are pending."""
    conn = db_connect()
    try:
        with conn, conn.cursor() as cur:
            applied = applied_migrations(cur)
    finally:
        conn.close()
    pending = [version for version, _ in read_migrations() if version not in applied]
    log("info", "migrations pending" if pending else "no migration pending", pending=pending)
    sys.exit(1 if pending else 0)


def migrate():
    """Apply pending migrations in one transaction, under an advisory lock."""
    conn = db_connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242)")
            applied = applied_migrations(cur)
            for version, sql in read_migrations():
                if version not in applied:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    log("info", "migration applied", migration=version)
    finally:
        conn.close()
    log("info", "migrations up to date", latest=read_migrations()[-1][0])


class Server(ThreadingHTTPServer):
    # The listen backlog of Node's and nginx's servers (511), not socketserver's 5: with 5, on
    # a busy host a burst of connections beyond it is dropped and retried a second later.
    request_queue_size = 511
    daemon_threads = True  # drain() below bounds the wait for in-flight requests


def serve():
    if FAULT == "crash":
        log("error", "crashing at start (FAULT=crash)")
        sys.exit(3)
    if FAULT == "crash-after":
        def crash():
            log("error", "crashing now (FAULT=crash-after)")
            os._exit(3)
        threading.Timer(FAULT_SECONDS, crash).start()
    server = Server(("0.0.0.0", PORT), Handler)

    def drain(signum, frame):
        # Stop accepting, let in-flight requests finish, then exit.
        log("info", "draining", signal=signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    log("info", "listening", port=PORT, fault=FAULT)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    deadline = time.monotonic() + DRAIN_SECONDS
    while IN_FLIGHT[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    log("info", "stopped", unfinished_requests=IN_FLIGHT[0])


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    try:
        {"serve": serve, "migrate": migrate, "migrate-check": migrate_check}[command]()
    except (psycopg2.Error, redis.RedisError) as exc:
        log("error", command + " failed", error=str(exc).strip())
        sys.exit(1)
