#!/usr/bin/env bash
# The tests' PostgreSQL (called by scripts/setup.sh; safe to run on its own).
#
# Makes sure a PostgreSQL 15 server owned by the harness answers on 127.0.0.1 only, with a
# role for the tests that logs in with a password and may CREATE DATABASE, and writes
# where to find it to var/postgres/test-url (mode 0600), which tests/envsetup.py reads
# when CARGOHOLD_TEST_DATABASE=postgres. Idempotent: when the server is up and the role
# logs in, it changes nothing.
#
#   as root:   a Debian cluster of its own, `pg_createcluster 15 cargohold-test`, started
#              with `pg_ctlcluster` (no systemd needed); the system's `main` is left alone.
#   otherwise: a private `initdb` data folder under var/postgres/data, run with `pg_ctl`.
#
# The server trades durability for speed (fsync, full_page_writes and synchronous_commit
# off): it holds throw-away test databases only. Test databases that a killed run left
# behind (their pytest process is gone) are dropped here.
#
# Environment:
#   CARGOHOLD_TEST_PG_PORT   port of the tests' server (default 5439)
#   CARGOHOLD_TEST_POSTGRES_URL  use this server instead (postgres://user:pw@host:port/):
#                            nothing is started; tests/envsetup.py reads the variable itself.
#
# Without PostgreSQL 15 installed (a test-only package of setup.sh) it only warns: `make
# run` does not need it, and the PostgreSQL pass of `make test` says what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
CLUSTER=cargohold-test
PORT="${CARGOHOLD_TEST_PG_PORT:-5439}"
ROLE=cargohold_test
STATE="$ROOT/var/postgres"
URL_FILE="$STATE/test-url"
LOG_DIR="$ROOT/var/log"

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

if [ -n "${CARGOHOLD_TEST_POSTGRES_URL:-}" ]; then
  say "PostgreSQL (tests): using CARGOHOLD_TEST_POSTGRES_URL; nothing to start"
  exit 0
fi
if [ ! -x "$PG_BIN/postgres" ]; then
  warn "PostgreSQL $PG_VERSION is not installed: the PostgreSQL pass of make test cannot run"
  warn "  to install: apt-get install -y --no-install-recommends postgresql"
  exit 0
fi

mkdir -p "$STATE" "$LOG_DIR"
chmod 700 "$STATE"

# Speed over durability: these databases are thrown away after each run.
PG_CONF="listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
synchronous_commit = off
max_connections = 200
"
# Writes the settings to $1; true when that changed the file.
write_conf() {
  [ "$(cat "$1" 2>/dev/null || true)" = "$(printf '%s' "$PG_CONF")" ] && return 1
  printf '%s' "$PG_CONF" >"$1"
}

if [ "$(id -u)" -eq 0 ]; then
  SOCKET_DIR=/var/run/postgresql
  superuser_psql() { (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -d postgres "$@"); }
  cluster_status() { pg_lsclusters -h "$PG_VERSION" "$CLUSTER" 2>/dev/null | awk '{print $4}'; }
  if [ -z "$(cluster_status)" ]; then
    say "PostgreSQL (tests): creating cluster $PG_VERSION/$CLUSTER on 127.0.0.1:$PORT"
    pg_createcluster "$PG_VERSION" "$CLUSTER" -p "$PORT" --start-conf=manual \
      -- --auth-local=peer --auth-host=scram-sha-256 >>"$LOG_DIR/postgres-setup.log" 2>&1 ||
      die "pg_createcluster failed" "See var/log/postgres-setup.log."
  fi
  conf="/etc/postgresql/$PG_VERSION/$CLUSTER/conf.d/cargohold.conf" # postgresql.conf includes conf.d/
  if write_conf "$conf" && [ "$(cluster_status)" = online ]; then
    say "PostgreSQL (tests): settings changed; restarting cluster $PG_VERSION/$CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$CLUSTER" restart 9>&- >>"$LOG_DIR/postgres-setup.log" 2>&1 ||
      die "pg_ctlcluster $PG_VERSION $CLUSTER restart failed" "See /var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log."
  fi
  if [ "$(cluster_status)" != online ]; then
    say "PostgreSQL (tests): starting cluster $PG_VERSION/$CLUSTER (log: /var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log)"
    mkdir -p "$SOCKET_DIR" && chown postgres:postgres "$SOCKET_DIR"
    # 9>&-: the server must not hold setup.sh's lock.
    pg_ctlcluster "$PG_VERSION" "$CLUSTER" start 9>&- >>"$LOG_DIR/postgres-setup.log" 2>&1 ||
      die "pg_ctlcluster $PG_VERSION $CLUSTER start failed" \
        "See /var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log and var/log/postgres-setup.log." \
        "Is port $PORT taken? Set CARGOHOLD_TEST_PG_PORT, or: pg_dropcluster --stop $PG_VERSION $CLUSTER"
  fi
else
  DATA="$STATE/data"
  SOCKET_DIR="$STATE/run"
  mkdir -p "$SOCKET_DIR"
  superuser_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -U "$(id -un)" -d postgres "$@"; }
  if [ ! -s "$DATA/PG_VERSION" ]; then
    say "PostgreSQL (tests): initdb of a private server in var/postgres/data"
    "$PG_BIN/initdb" -D "$DATA" -U "$(id -un)" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 \
      --locale=C.UTF-8 --no-sync >>"$LOG_DIR/postgres-setup.log" 2>&1 || die "initdb failed" "See var/log/postgres-setup.log."
    printf "include_if_exists = 'cargohold.conf'\nport = %s\nunix_socket_directories = '%s'\n" "$PORT" "$SOCKET_DIR" \
      >>"$DATA/postgresql.conf"
  fi
  if write_conf "$DATA/cargohold.conf" && "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG_DIR/postgres.log" -w -t 60 restart 9>&- >/dev/null ||
      die "pg_ctl restart failed" "See var/log/postgres.log."
  fi
  if ! "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "PostgreSQL (tests): starting the private server (log: var/log/postgres.log)"
    "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG_DIR/postgres.log" -w -t 60 start 9>&- >/dev/null ||
      die "pg_ctl start failed" "See var/log/postgres.log. Is port $PORT taken? Set CARGOHOLD_TEST_PG_PORT."
  fi
fi

deadline=$((SECONDS + 60))
until pg_isready -q -h 127.0.0.1 -p "$PORT"; do
  [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL does not answer on 127.0.0.1:$PORT within 60 s" \
    "See var/log/postgres-setup.log and the server's log."
  sleep 0.3
done

# The role's password lives in the URL file only (0600), reaches psql on stdin or in its
# environment, never on a command line.
password=""
if [ -s "$URL_FILE" ]; then
  password="$(sed -n 's|^postgres://[^:]*:\([^@]*\)@.*|\1|p' "$URL_FILE")"
fi
role_logs_in() {
  [ -n "$password" ] && PGPASSWORD="$password" PGCONNECT_TIMEOUT=10 \
    psql -X -q -w -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -c 'select 1' >/dev/null 2>&1
}
if role_logs_in && grep -q "@127.0.0.1:$PORT/" "$URL_FILE"; then
  say "PostgreSQL (tests): answering on 127.0.0.1:$PORT, role $ROLE logs in"
else
  password="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  superuser_psql >/dev/null <<SQL
SELECT format('CREATE ROLE %I', '$ROLE') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE LOGIN CREATEDB NOSUPERUSER PASSWORD '$password';
SQL
  (umask 077 && printf 'postgres://%s:%s@127.0.0.1:%s/postgres\n' "$ROLE" "$password" "$PORT" >"$URL_FILE.tmp")
  mv "$URL_FILE.tmp" "$URL_FILE"
  role_logs_in || die "role $ROLE cannot log in to 127.0.0.1:$PORT after setting its password" \
    "Check the server's pg_hba.conf allows host connections with scram-sha-256."
  say "PostgreSQL (tests): up on 127.0.0.1:$PORT, role $ROLE ready (var/postgres/test-url)"
fi

# Test databases of runs that were killed (tests/envsetup.py names them
# test_cargohold_<run>_<pid>): dropped once their process is gone.
stale=()
while read -r name; do
  pid="${name##*_}"
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  [ -d "/proc/$pid" ] || stale+=("$name") # (kill -0 fails for another user's live process)
done < <(superuser_psql -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_cargohold\_%'")
for name in "${stale[@]}"; do
  superuser_psql -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
done
[ "${#stale[@]}" -eq 0 ] || say "PostgreSQL (tests): dropped ${#stale[@]} database(s) left by killed runs"
