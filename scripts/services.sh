# PostgreSQL and Redis for the scripts that need them (scripts/suite-scale, scripts/bench),
# sourced, not run. One copy of how they are installed and started:
#
#   services_install          install Debian's postgresql and redis-server when missing
#                             (needs the caller's apt_install); fails when they cannot be
#   services_start DIR [MAX]  start PostgreSQL (as the `postgres` user, through runuser,
#                             max_connections MAX, default 200) and Redis, each as a plain
#                             process on a free loopback port, their data in DIR; sets
#                             PG_PORT, REDIS_PORT, REDIS_PID, SERVICES_PG_URL,
#                             SERVICES_REDIS_URL
#   services_stop             stop both (safe to call twice, or before services_start)
#
# Callers call services_stop from their own EXIT trap.

services_pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

services_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

services_install() {
  [ -n "$(services_pg_bin)" ] \
    || apt_install "the PostgreSQL storage tests and benchmarks run against a real server" postgresql
  command -v redis-server >/dev/null 2>&1 \
    || apt_install "several confer nodes share one Redis" redis-server
  [ -n "$(services_pg_bin)" ] && command -v redis-server >/dev/null 2>&1
}

SERVICES_PG_DATA=""
REDIS_PID=""

services_start() {
  local dir=$1 max=${2:-200}
  PG_BIN=$(services_pg_bin)
  SERVICES_PG_DATA="$dir/pg"
  PG_PORT=$(services_free_port)
  REDIS_PORT=$(services_free_port)
  echo "starting PostgreSQL on 127.0.0.1:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT (in $dir)"
  mkdir -p "$SERVICES_PG_DATA"
  chmod 755 "$dir"
  chown postgres "$SERVICES_PG_DATA"
  quietly runuser -u postgres -- "$PG_BIN/initdb" -D "$SERVICES_PG_DATA" -U postgres -A trust --no-sync
  quietly runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$SERVICES_PG_DATA" \
    -l "$SERVICES_PG_DATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $SERVICES_PG_DATA -c max_connections=$max" start

  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  SERVICES_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  SERVICES_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
}

services_stop() {
  if [ -n "$SERVICES_PG_DATA" ] && [ -f "$SERVICES_PG_DATA/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$SERVICES_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
}
