#!/usr/bin/env bash
# Makes sure a local Postgres and Redis are running: starts them when they
# are installed, installs them with apt-get when they are not. Used by
# `make run`, `make test` and CI. Prints what it did; exits non-zero with a
# message when a service cannot be brought up.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=5432
REDIS_PORT=6379
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

pg_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

apt_install() {
  echo "services: installing $* with apt-get"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_isready >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  pg_up 2>/dev/null || apt_install postgresql postgresql-client
fi
if ! pg_up; then
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  echo "services: starting Postgres $ver"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
fi
pg_up || { echo "services: Postgres is not answering on $PGHOST:$PGPORT (try: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)" >&2; exit 1; }
# The local default (trust auth for user postgres on 127.0.0.1) is what the
# BFF's default DATABASE_URL expects; make sure it works.
if ! psql -h "$PGHOST" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "services: Postgres answers but user postgres cannot sign in over TCP without a password;" >&2
  echo "          set DATABASE_URL, or allow trust for 127.0.0.1 in pg_hba.conf" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null; then
  redis_up || apt_install redis-server
fi
if ! redis_up; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log 2>/dev/null \
    || redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
fi
redis_up || { echo "services: Redis is not answering on 127.0.0.1:$REDIS_PORT (try: redis-server --daemonize yes)" >&2; exit 1; }
# PgBouncer and HAProxy: the scale-out tests start their own pgbouncer,
# and `make cluster` runs the local cluster behind HAProxy (Debian's
# packages; their system services are not used).
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ] || ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  apt_install pgbouncer haproxy
fi

# Node.js runs the graphql-http audit suite in the tests.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi

# Headless Chromium for the browser tests of the web app.
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
command -v chromium >/dev/null || { echo "services: chromium is missing (apt-get install chromium)" >&2; exit 1; }

# promtool checks and tests the alert rules (make check-alerts). It comes
# from Debian's prometheus package (19 MB), unpacked into the user cache
# rather than installed, so no Prometheus server is set up as a service.
PROMTOOL_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/bff/bin"
if ! command -v promtool >/dev/null && [ ! -x "$PROMTOOL_DIR/promtool" ]; then
  echo "services: unpacking promtool from Debian's prometheus package into $PROMTOOL_DIR"
  tmp=$(mktemp -d)
  chmod 777 "$tmp" # apt-get download runs as _apt when it can
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$PROMTOOL_DIR"
  cp "$tmp/x/usr/bin/promtool" "$PROMTOOL_DIR/promtool"
  rm -rf "$tmp"
fi

echo "services: Postgres on $PGHOST:$PGPORT and Redis on 127.0.0.1:$REDIS_PORT are up; chromium at $(command -v chromium)"
