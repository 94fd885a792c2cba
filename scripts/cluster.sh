#!/usr/bin/env bash
# The scale-out shape on one machine (`make cluster`, `make cluster-down`):
#   3 BFF instances on loopback ports behind HAProxy (deploy/haproxy.cfg),
#   a Redis Cluster of 3 masters and 3 replicas (redis-server processes
#   joined with `redis-cli --cluster create`), PgBouncer in transaction mode
#   in front of a private database on the local Postgres, and the payment
#   simulator.
# Every port is a free one picked at start; everything runs in the
# background and is recorded in bin/cluster/ (env, pids, logs), so
# `scripts/cluster.sh down` stops exactly what `up` started, by PID.
#
#   scripts/cluster.sh up              start (fails if already up)
#   scripts/cluster.sh down            stop everything by PID
#   scripts/cluster.sh stop-bff N      SIGTERM instance N (1..3) and wait for it to exit
#   scripts/cluster.sh start-bff N     start instance N again and wait until ready
#   scripts/cluster.sh stop-pgbouncer / start-pgbouncer
#   scripts/cluster.sh start-redis PORT   start a (killed) Redis node again; it rejoins as a replica
#
# The shared Postgres and Redis are never reconfigured: the cluster uses
# its own database (CLUSTER_DB, default bff_cluster) and its own Redis
# processes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=$ROOT/bin/cluster
ENVF=$DIR/env
CLUSTER_DB=${CLUSTER_DB:-bff_cluster}
PGHOST=127.0.0.1
PGPORT=5432

die() { echo "cluster: $*" >&2; exit 1; }

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a free port in 10000-22699, below the kernel's ephemeral range
# (so no outgoing connection holds it) and not handed out before in this
# run; redis_port: one whose cluster bus port (+10000) is free too.
# Both set PORT (not printed: a subshell would forget what was taken).
TAKEN=" "
free_port() {
  while :; do
    PORT=$((10000 + RANDOM % 12700))
    [[ $TAKEN == *" $PORT "* || $TAKEN == *" $((PORT - 10000)) "* ]] && continue
    port_free "$PORT" && { TAKEN+="$PORT $((PORT + 10000)) "; return; }
  done
}
redis_port() {
  while :; do
    free_port
    port_free $((PORT + 10000)) && return
  done
}

pgbouncer_bin() { command -v pgbouncer || echo /usr/sbin/pgbouncer; }
haproxy_bin() { command -v haproxy || echo /usr/sbin/haproxy; }

# record NAME PID: remember a process to stop on `down`.
record() { echo "$2" >"$DIR/$1.pid"; }

wait_http() { # URL seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

load_env() { [ -f "$ENVF" ] || die "not running (no $ENVF): make cluster"; set -a; . "$ENVF"; set +a; }

# A node is failed 2 s after it stops answering (cluster-node-timeout; a
# shorter one would fail busy nodes on a loaded machine); its replica then
# takes over at once, however long its link to the dead master had been
# down (replica-validity-factor 0): a killed master is replaced in about
# 3 s, every time.
start_redis_node() { # port
  local port=$1 d=$DIR/redis-$1
  mkdir -p "$d"
  (cd "$d" && exec redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 \
    --save "" --appendonly no --dir "$d" --logfile "$d/redis.log") </dev/null >/dev/null 2>&1 &
  record "redis-$port" $!
  for _ in $(seq 1 50); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  die "redis-server on $port did not start (see $d/redis.log)"
}

start_pgbouncer() {
  local args=("$DIR/pgbouncer.ini")
  [ "$(id -u)" = 0 ] && args=(-u postgres "${args[@]}")
  "$(pgbouncer_bin)" "${args[@]}" >>"$DIR/pgbouncer.log" 2>&1 &
  record pgbouncer $!
  for _ in $(seq 1 50); do
    psql -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U postgres -d "$CLUSTER_DB" -tAc 'select 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "pgbouncer did not start (see $DIR/pgbouncer.log)"
}

stop_pid() { # name [signal]
  local f=$DIR/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

start_bff() { # n
  local n=$1 port_var="BFF$1_PORT"
  local port=${!port_var}
  HTTP_ADDR=127.0.0.1:$port "$ROOT/bin/bff" serve >>"$DIR/bff$n.log" 2>&1 &
  record "bff$n" $!
  wait_http "http://127.0.0.1:$port/readyz" 60 || die "instance $n did not become ready (see $DIR/bff$n.log)"
}

up() {
  [ -f "$ENVF" ] && die "already up ($ENVF exists): make cluster-down first"
  bash scripts/services.sh >/dev/null
  make -s build
  mkdir -p "$DIR"
  rm -f "$DIR"/*.pid "$DIR"/*.log

  # Ports.
  local redis_ports=() i
  for i in 1 2 3 4 5 6; do redis_port; redis_ports+=("$PORT"); done
  {
    echo "CLUSTER_DB=$CLUSTER_DB"
    for v in PGBOUNCER_PORT PAYSIM_PORT HAPROXY_PORT HAPROXY_STATS_PORT BFF1_PORT BFF2_PORT BFF3_PORT; do
      free_port
      echo "$v=$PORT"
    done
    echo "REDIS_PORTS=\"${redis_ports[*]}\""
  } >"$ENVF"
  load_env

  # Redis Cluster: 3 masters, 3 replicas.
  local addrs=()
  for p in $REDIS_PORTS; do start_redis_node "$p"; addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/redis-create.log" 2>&1 \
    || { cat "$DIR/redis-create.log"; die "redis-cli --cluster create failed"; }
  for _ in $(seq 1 100); do
    redis-cli -p "${redis_ports[0]}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
    sleep 0.1
  done

  # A private database, then PgBouncer in transaction mode in front of it.
  psql -h $PGHOST -p $PGPORT -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$CLUSTER_DB'" | grep -q 1 \
    || psql -h $PGHOST -p $PGPORT -U postgres -d postgres -qc "CREATE DATABASE $CLUSTER_DB"
  chmod 755 "$DIR" # pgbouncer drops root privileges to read its files
  echo '"postgres" ""' >"$DIR/pgbouncer-users.txt"
  cat >"$DIR/pgbouncer.ini" <<INI
[databases]
$CLUSTER_DB = host=$PGHOST port=$PGPORT dbname=$CLUSTER_DB user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $DIR/pgbouncer-users.txt
pool_mode = transaction
default_pool_size = 30
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
pidfile =
INI
  chmod 644 "$DIR/pgbouncer.ini" "$DIR/pgbouncer-users.txt"
  start_pgbouncer

  local direct="postgres://postgres@$PGHOST:$PGPORT/$CLUSTER_DB?sslmode=disable"
  local pooled="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/$CLUSTER_DB?sslmode=disable&default_query_exec_mode=cache_describe"
  local redis_url
  redis_url=$(IFS=,; echo "${addrs[*]}")
  cat >>"$ENVF" <<ENV
APP_ENV=development
DATABASE_URL='$pooled'
DATABASE_MIGRATE_URL='$direct'
REDIS_URL=$redis_url
PAYMENTS_URL=http://127.0.0.1:$PAYSIM_PORT
PAYSIM_ADDR=127.0.0.1:$PAYSIM_PORT
PAYSIM_WEBHOOK_URL=http://127.0.0.1:$HAPROXY_PORT/webhooks/payments
TRUSTED_PROXIES=127.0.0.1/32
PG_MAX_CONNS=10
HAPROXY_BIND=127.0.0.1:$HAPROXY_PORT
HAPROXY_STATS_BIND=127.0.0.1:$HAPROXY_STATS_PORT
BFF1_ADDR=127.0.0.1:$BFF1_PORT
BFF2_ADDR=127.0.0.1:$BFF2_PORT
BFF3_ADDR=127.0.0.1:$BFF3_PORT
CLUSTER_URL=http://127.0.0.1:$HAPROXY_PORT
ENV
  load_env
  # Extra variables for the instances (e.g. RATE_LIMIT_*=0 for load tests).
  if [ -n "${CLUSTER_BFF_ENV:-}" ]; then printf '%s\n' $CLUSTER_BFF_ENV >>"$ENVF"; load_env; fi

  bin/bff migrate >>"$DIR/migrate.log" 2>&1 || { tail "$DIR/migrate.log"; die "migrate failed"; }
  bin/bff seed --customers "${CLUSTER_CUSTOMERS:-60}" >>"$DIR/migrate.log" 2>&1 || { tail "$DIR/migrate.log"; die "seed failed"; }

  bin/paysim >>"$DIR/paysim.log" 2>&1 &
  record paysim $!
  for i in 1 2 3; do start_bff "$i"; done

  "$(haproxy_bin)" -f deploy/haproxy.cfg -db >>"$DIR/haproxy.log" 2>&1 &
  record haproxy $!
  wait_http "$CLUSTER_URL/readyz" 20 || die "HAProxy did not answer (see $DIR/haproxy.log)"

  local token
  token=$(bin/bff token alice@example.com | tail -1)
  cat <<MSG

  The cluster is up: one URL for everything.

  $CLUSTER_URL/            web app (alice@example.com, bob@example.com, staff@example.com)
  $CLUSTER_URL/graphql     GraphQL, $CLUSTER_URL/events the event stream

  Behind it: HAProxy ($(haproxy -v | head -1 | awk '{print $3}'), stats at http://$HAPROXY_STATS_BIND/),
  3 BFF instances on $BFF1_ADDR $BFF2_ADDR $BFF3_ADDR,
  Redis Cluster $(redis-server --version | awk '{print $3}' | cut -d= -f2) 3+3 on $REDIS_URL,
  PgBouncer $("$(pgbouncer_bin)" --version | head -1 | awk '{print $2}') (transaction mode) on 127.0.0.1:$PGBOUNCER_PORT -> database $CLUSTER_DB,
  payment simulator on $PAYSIM_ADDR. Logs and PIDs in bin/cluster/.

  A token for alice: $token

  make cluster-test    tests this shape;   make cluster-down    stops it.
MSG
}

down() {
  [ -d "$DIR" ] || { echo "cluster: nothing to stop"; return 0; }
  local f
  for name in haproxy bff1 bff2 bff3 paysim pgbouncer; do stop_pid "$name"; done
  for f in "$DIR"/redis-*.pid; do [ -e "$f" ] && stop_pid "$(basename "$f" .pid)"; done
  rm -rf "$DIR"
  echo "cluster: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  stop-bff) load_env; stop_pid "bff$2" TERM ;;
  start-bff) load_env; start_bff "$2" ;;
  stop-pgbouncer) load_env; stop_pid pgbouncer TERM ;;
  start-pgbouncer) load_env; start_pgbouncer ;;
  start-redis) load_env; start_redis_node "$2" ;;
  *) die "usage: scripts/cluster.sh up|down|stop-bff N|start-bff N|stop-pgbouncer|start-pgbouncer|start-redis PORT" ;;
esac
