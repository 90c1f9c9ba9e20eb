#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis that tests, benchmarks and the demo use are installed
# and running. Idempotent: a machine that already has them running is left exactly as it is.
# Uses Debian's packages; needs root (or sudo) only when something must be installed.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379
log() { printf '[services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

if pg_ready; then
  log "PostgreSQL is running on $PG_HOST:$PG_PORT"
else
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL (Debian package)"
    apt_install postgresql postgresql-client
    fresh_pg=1
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  if [ "${fresh_pg:-0}" = 1 ]; then
    # A cluster we just installed: trust local TCP connections, as the tests and demo expect.
    hba=/etc/postgresql/$version/main/pg_hba.conf
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { log "PostgreSQL did not come up"; exit 1; }
fi

redis_ready() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

if redis_ready; then
  log "Redis is running on 127.0.0.1:$REDIS_PORT"
else
  command -v redis-server >/dev/null || { log "installing Redis (Debian package)"; apt_install redis-server redis-tools; }
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/slipway.log
  for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
  redis_ready || { log "Redis did not come up"; exit 1; }
fi

# redis-benchmark (the benchmark's ceiling) ships with redis-tools.
command -v redis-benchmark >/dev/null || apt_install redis-tools

# pgbench (the benchmark's Postgres ceiling, pg_insert_tps) ships with the server package on
# Debian 12 (`dpkg -S`: postgresql-15: /usr/lib/postgresql/15/bin/pgbench), not with
# postgresql-client-15; /usr/bin/pgbench is postgresql-client-common's wrapper and fails without
# it, hence the version check. Installing it where a Postgres already runs creates an idle
# cluster on the next free port and leaves the running one alone.
pgbench --version >/dev/null 2>&1 || { log "installing pgbench (Debian package postgresql)"; apt_install postgresql; }
