#!/usr/bin/env bash
# Machine set-up for Cargohold, shared by `make run`, `make test` and `.ci/run`.
#
# Makes sure that the system packages, a Docker Engine, Redis, the virtualenv and the
# helper image are there, starting or installing only what is missing. Idempotent: on a
# machine where everything is already in place it changes nothing and takes seconds.
#
# Environment:
#   REDIS_URL                Redis to use (default redis://127.0.0.1:6379/0); a local one
#                            is started when nothing answers there.
#   DOCKER_HOST              Docker Engine to use (default: the local unix socket); a local
#                            dockerd is started only for the default socket.
#   CARGOHOLD_HELPER_IMAGE   image the workers run to read and write volumes
#                            (default busybox:stable); built from Debian's busybox-static
#                            when it can be neither found nor pulled.
#   CARGOHOLD_DATA_HELPER_IMAGE  the data helper (GNU tar, zstd, restic; default
#                            cargohold-data-helper:current; empty: none); built from
#                            helper/Dockerfile, or from the host's binaries without pulls.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
HELPER_IMAGE="${CARGOHOLD_HELPER_IMAGE:-busybox:stable}"
VENV="$ROOT/.venv"
LOG_DIR="$ROOT/var/log"

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

is_root() { [ "$(id -u)" -eq 0 ]; }
is_debian() { have apt-get && have dpkg-query; }
systemd_running() { have systemctl && [ -d /run/systemd/system ]; }

mkdir -p "$LOG_DIR"

# Two set-ups at once (say `make run` and `make test` in two terminals) would race on
# pip and on starting the daemons: take turns.
if have flock; then
  exec 9>"$ROOT/var/.setup.lock"
  flock -w 900 9 || die "another scripts/setup.sh has held var/.setup.lock for 15 minutes" \
    "If none is running, delete var/.setup.lock and re-run."
fi

# --- System packages -----------------------------------------------------------------

# A Debian package counts as present when dpkg says so, or, for the ones that only bring
# commands, when those commands are already on PATH (Docker CE instead of docker.io, a
# Redis built by hand, ...): installing docker.io over docker-ce would remove it.
pkg_installed() {
  is_debian && [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}
pkg_present() {
  pkg_installed "$1" && return 0
  case "$1" in
    docker.io) have docker && have dockerd ;;
    redis-server) have redis-server && have redis-cli ;;
    busybox-static) [ -x /bin/busybox ] && ! is_dynamic /bin/busybox ;;
    zstd) have zstd ;;
    make) have make ;;
    chromium) have chromium || have chromium-browser ;;
    docker-compose) have docker-compose ;;
    restic) have restic ;;
    acl) have setfacl && have getfacl ;;
    attr) have setfattr && have getfattr ;;
    prometheus) have promtool ;;
    postgresql) [ -x /usr/lib/postgresql/15/bin/postgres ] ;;
    sqlite3) have sqlite3 ;;
    *) return 1 ;;
  esac
}
is_dynamic() {
  # ldd says "not a dynamic executable" (exit 1) for static binaries.
  have ldd && ldd "$1" >/dev/null 2>&1
}

# tar, zstd, restic: the data helper image; openssh-client: ssh:// hosts (the worker's own ssh)
REQUIRED_PKGS=(docker.io redis-server busybox-static zstd tar restic make openssh-client)
# browser tests, compose-file checks, xattr/ACL fidelity tests, promtool for the alert rules,
# PostgreSQL and sqlite3 for the database-dump tests' images (tests/dbimages.py), openssh-server
# for the ssh:// host test (scripts/engines.sh runs its own sshd on 127.0.0.1)
TEST_ONLY_PKGS=(chromium docker-compose acl attr prometheus postgresql sqlite3 openssh-server)

missing_required=()
missing_test_only=()
for pkg in "${REQUIRED_PKGS[@]}"; do
  pkg_present "$pkg" || missing_required+=("$pkg")
done
for pkg in "${TEST_ONLY_PKGS[@]}"; do
  pkg_present "$pkg" || missing_test_only+=("$pkg")
done
missing_all=("${missing_required[@]}" "${missing_test_only[@]}")

if [ "${#missing_all[@]}" -eq 0 ]; then
  say "system packages: all present"
elif is_root && is_debian; then
  say "installing Debian packages: ${missing_all[*]} (log: var/log/apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-q -o DPkg::Lock::Timeout=300)
  # 9>&-: package scripts may start daemons (redis, dockerd), which must not inherit the lock.
  apt_install() { apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@" >>"$LOG_DIR/apt.log" 2>&1 9>&-; }
  apt_failed() {
    tail -n 20 "$LOG_DIR/apt.log" >&2
    die "apt-get could not install: $* (full log: var/log/apt.log)" \
      "Check that the Debian mirrors are reachable, then run: apt-get update && apt-get install -y --no-install-recommends $*"
  }
  apt-get "${apt_opts[@]}" update >"$LOG_DIR/apt.log" 2>&1 9>&- || apt_failed "${missing_all[@]}"
  if ! apt_install "${missing_all[@]}"; then
    # The tests' extras must not keep `make run` from working: retry without them.
    if [ "${#missing_required[@]}" -gt 0 ]; then
      apt_install "${missing_required[@]}" || apt_failed "${missing_required[@]}"
    fi
    # Then each test-only package on its own, so one that fails costs only its tests.
    failed_test_only=()
    for pkg in "${missing_test_only[@]}"; do
      apt_install "$pkg" || failed_test_only+=("$pkg")
    done
    if [ "${#failed_test_only[@]}" -gt 0 ]; then
      warn "could not install (needed by the tests only): ${failed_test_only[*]}; see var/log/apt.log"
      warn "  to install: apt-get install -y --no-install-recommends ${failed_test_only[*]}"
    fi
    missing_all=("${missing_required[@]}")
  fi
  [ "${#missing_all[@]}" -eq 0 ] || say "installed: ${missing_all[*]}"
else
  if is_debian; then
    how="sudo apt-get update && sudo apt-get install -y --no-install-recommends"
  else
    how="install with your system's package manager (Debian names):"
  fi
  if [ "${#missing_test_only[@]}" -gt 0 ]; then
    warn "missing (needed by the tests only): ${missing_test_only[*]}"
    warn "  to install: $how ${missing_test_only[*]}"
  fi
  if [ "${#missing_required[@]}" -gt 0 ]; then
    die "missing system packages: ${missing_required[*]}" "to install: $how ${missing_required[*]}"
  fi
fi

# --- Docker Engine ---------------------------------------------------------------------

docker_ok() { timeout 20 docker info >/dev/null 2>&1; }
wait_for_docker() { # seconds
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    docker_ok && return 0
    sleep 1
  done
  docker_ok
}
docker_host_is_default() {
  case "${DOCKER_HOST:-}" in
    "" | unix:///var/run/docker.sock | unix:///run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}
dockerd_pid_alive() { # the pid file names a live dockerd (not a stale file, not a reused pid)
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ]
}

have docker || die "the docker client is not installed" \
  "to install: apt-get install docker.io (Debian), or see https://docs.docker.com/engine/install/"

if docker_ok; then
  say "Docker: engine $(docker info --format '{{.ServerVersion}}' 2>/dev/null) at ${DOCKER_HOST:-unix:///var/run/docker.sock}"
elif ! docker_host_is_default; then
  die "Docker Engine at DOCKER_HOST=$DOCKER_HOST does not answer ('docker info' fails)." \
    "Start that engine, or unset DOCKER_HOST to use (and start) the local one."
elif ! is_root; then
  die "the local Docker Engine does not answer ('docker info' fails) and only root can start it." \
    "Start it: sudo systemctl start docker (or: sudo dockerd &)," \
    "and let your user reach it: sudo usermod -aG docker $(id -un) (then log in again)."
else
  if dockerd_pid_alive; then
    say "Docker: dockerd (pid $(cat /var/run/docker.pid)) is running but not answering yet; waiting"
    dockerd_log="(dockerd was not started by this script: see its own log)"
  elif systemd_running; then
    say "Docker: starting with systemctl start docker"
    systemctl start docker 9>&- || true
    dockerd_log="(see: journalctl -u docker)"
  else
    have dockerd || die "dockerd is not installed" "to install: apt-get install docker.io"
    say "Docker: starting dockerd (log: var/log/dockerd.log)"
    # A pid file left by a killed dockerd whose pid now belongs to another process
    # would stop the new one from starting.
    rm -f /var/run/docker.pid
    # setsid + nohup: the daemon outlives this script and the terminal that ran it.
    # 9>&-: the daemon must not inherit (and so hold forever) the set-up lock.
    setsid nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
    dockerd_log="$LOG_DIR/dockerd.log"
  fi
  if ! wait_for_docker 60; then
    if [ -f "$dockerd_log" ]; then
      echo "---- last lines of $dockerd_log ----" >&2
      tail -n 25 "$dockerd_log" >&2
      echo "----" >&2
    fi
    die "the Docker Engine did not answer within 60 s; its log: $dockerd_log" \
      "Read the log. Common causes: dockerd needs the overlay and br_netfilter kernel modules and iptables;" \
      "inside a container it needs --privileged. Fix and re-run, or point DOCKER_HOST at a working engine."
  fi
  say "Docker: engine $(docker info --format '{{.ServerVersion}}' 2>/dev/null) is up"
fi

# --- Redis -----------------------------------------------------------------------------

redis_ping() { [ "$(timeout 5 redis-cli -u "$REDIS_URL" ping 2>/dev/null || true)" = "PONG" ]; }

# redis://[user:password@]host[:port][/db] -> host, port
redis_scheme="${REDIS_URL%%://*}"
redis_hostport="${REDIS_URL#*://}"
redis_hostport="${redis_hostport%%/*}"
redis_hostport="${redis_hostport##*@}"
if [[ "$redis_hostport" == \[* ]]; then # [::1]:6379
  redis_host="${redis_hostport%%]*}"
  redis_host="${redis_host#[}"
  redis_port="${redis_hostport##*]}"
  redis_port="${redis_port#:}"
else
  redis_host="${redis_hostport%%:*}"
  redis_port="${redis_hostport#"$redis_host"}"
  redis_port="${redis_port#:}"
fi
redis_port="${redis_port:-6379}"

redis_is_local() {
  [ "$redis_scheme" = "redis" ] || return 1
  case "$redis_host" in
    127.* | localhost | ::1 | "") return 0 ;;
    *) return 1 ;;
  esac
}

have redis-cli || die "redis-cli is not installed" "to install: apt-get install redis-server (or redis-tools)"

if redis_ping; then
  say "Redis: answering at $redis_host:$redis_port"
elif redis_is_local && have redis-server; then
  case "$redis_host" in
    localhost | "") redis_bind=(127.0.0.1 -::1) ;; # "-": only if this host has IPv6
    *) redis_bind=("$redis_host") ;;
  esac
  say "Redis: starting redis-server on port $redis_port (log: var/log/redis.log)"
  if ! redis-server --daemonize yes --port "$redis_port" --bind "${redis_bind[@]}" \
    --save '' --appendonly no --dir "$ROOT/var" \
    --pidfile "$ROOT/var/redis-$redis_port.pid" \
    --logfile "$LOG_DIR/redis.log" 9>&-; then
    die "redis-server did not start" "See var/log/redis.log."
  fi
  deadline=$((SECONDS + 20))
  until redis_ping; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 15 "$LOG_DIR/redis.log" >&2 || true
      die "Redis started but does not answer PONG at $REDIS_URL within 20 s." \
        "Is something else listening on port $redis_port (a Redis with a password)?" \
        "Check: redis-cli -u \"\$REDIS_URL\" ping; see var/log/redis.log."
    fi
    sleep 0.2
  done
  say "Redis: up at $redis_host:$redis_port"
else
  die "Redis is not reachable at $REDIS_URL." \
    "Start it (for a local one: redis-server --daemonize yes --port $redis_port), or set REDIS_URL to a Redis that answers."
fi

# --- Virtualenv ------------------------------------------------------------------------

python_ok() { # python is 3.11 or newer
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if ! { [ -x "$VENV/bin/python" ] && python_ok "$VENV/bin/python"; }; then
  PY=""
  for candidate in python3.11 python3; do
    if have "$candidate" && python_ok "$candidate"; then
      # The interpreter itself, not a wrapper (pyenv shims) that may resolve differently later.
      PY="$("$candidate" -c 'import sys; print(sys.executable)')"
      break
    fi
  done
  [ -n "$PY" ] || die "Python 3.11 or newer is needed and neither python3.11 nor python3 is one." \
    "to install: apt-get install python3 python3-venv (Debian 12 has 3.11)"
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    if is_root && is_debian && [[ "$PY" == /usr/bin/* ]]; then
      say "installing python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends python3-venv >>"$LOG_DIR/apt.log" 2>&1 9>&- ||
        die "could not install python3-venv" "run: apt-get update && apt-get install -y python3-venv"
    else
      die "$PY cannot create virtualenvs (no ensurepip/venv)." "to install: apt-get install python3-venv"
    fi
  fi
  [ -e "$VENV" ] && warn "$VENV is broken or too old: recreating it"
  rm -rf "$VENV"
  say "virtualenv: creating .venv with $PY ($("$PY" -V 2>&1))"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi

[ -f pyproject.toml ] || die "pyproject.toml is missing from $ROOT" "Run this script from a Cargohold checkout."
pyproject_sha="$(sha256sum pyproject.toml | cut -d' ' -f1)"
stamp="$VENV/.installed-$pyproject_sha"
if [ -f "$stamp" ]; then
  say "virtualenv: .venv up to date"
else
  say "virtualenv: pip install -e '.[dev]' (pyproject.toml changed)"
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'; then
    die "pip install -e '.[dev]' failed (see above)." \
      "Check that PyPI is reachable and pyproject.toml is valid, then re-run scripts/setup.sh."
  fi
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

# --- Helper image ----------------------------------------------------------------------

tmp=""
# Applets the workers' helper containers use; the image gets all of busybox's applets,
# these are the ones we insist on.
HELPER_APPLETS=(sh tar ls rm find cat mkdir sleep true cp mv chown chmod stat du sync)

build_helper_image() {
  local busybox=/bin/busybox applet
  [ -x "$busybox" ] || die "cannot build $HELPER_IMAGE: $busybox is missing" \
    "to install: apt-get install busybox-static"
  if is_dynamic "$busybox"; then
    die "cannot build $HELPER_IMAGE: $busybox is dynamically linked" \
      "to install the static one: apt-get install busybox-static"
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/etc" "$tmp/rootfs/tmp" "$tmp/rootfs/root"
  chmod 1777 "$tmp/rootfs/tmp"
  cp "$busybox" "$tmp/rootfs/bin/busybox"
  for applet in $("$busybox" --list) "${HELPER_APPLETS[@]}"; do
    [ "$applet" = busybox ] || ln -sfn busybox "$tmp/rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
  tar -C "$tmp/rootfs" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      --change 'ENV PATH=/bin' \
      --change 'CMD ["/bin/sh"]' \
      --message "cargohold helper image, built by scripts/setup.sh from $busybox" \
      - "$HELPER_IMAGE" >/dev/null
}

if docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
  say "helper image: $HELPER_IMAGE present"
else
  say "helper image: pulling $HELPER_IMAGE"
  if timeout 60 docker pull --quiet "$HELPER_IMAGE" >/dev/null 2>"$LOG_DIR/helper-pull.log"; then
    say "helper image: pulled $HELPER_IMAGE"
  else
    say "helper image: pull failed ($(tail -n 1 "$LOG_DIR/helper-pull.log")); building it from /bin/busybox"
    build_helper_image
  fi
  if ! docker run --rm --network none "$HELPER_IMAGE" true >"$LOG_DIR/helper-check.log" 2>&1; then
    cat "$LOG_DIR/helper-check.log" >&2
    die "the helper image $HELPER_IMAGE does not run ('docker run --rm $HELPER_IMAGE true' fails)." \
      "Remove it (docker rmi $HELPER_IMAGE) and re-run scripts/setup.sh, or set CARGOHOLD_HELPER_IMAGE to an image with busybox."
  fi
  say "helper image: $HELPER_IMAGE ready"
fi

# --- Data helper image -----------------------------------------------------------------

# GNU tar, zstd and restic (see helper/Dockerfile), run next to a volume's data. Tagged by
# a digest of its inputs (cargohold-data-helper:<digest>) and also as DATA_HELPER_IMAGE
# (default cargohold-data-helper:current), which is what the workers run; rebuilt when an
# input changes (a Debian update of tar, a new Dockerfile). Without it the workers fall
# back to the engine's archive endpoint, so a failure here is a warning, not an error.
DATA_HELPER_IMAGE="${CARGOHOLD_DATA_HELPER_IMAGE-cargohold-data-helper:current}"
DATA_HELPER_REPO="${DATA_HELPER_IMAGE%:*}"
DATA_HELPER_BASE=debian:bookworm-slim
DATA_HELPER_BINARIES=(/usr/bin/tar /usr/bin/zstd /usr/bin/pzstd) # pzstd: independent zstd frames (backups.datapath)
DATA_HELPER_OPTIONAL=(/usr/bin/restic)
DATA_HELPER_RECIPE=1 # bump when the host build below changes what it makes

# The files of the host build, one "source<TAB>destination" a line: busybox, the binaries,
# and every library ldd lists for them (copied to the path the loader looks in).
data_helper_files() {
  local bin lib
  printf '%s\t%s\n' /bin/busybox /bin/busybox
  for bin in "${DATA_HELPER_BINARIES[@]}" "${DATA_HELPER_OPTIONAL[@]}"; do
    [ -x "$bin" ] || continue
    printf '%s\t%s\n' "$bin" "$bin"
    ldd "$bin" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} !/=>/ && $1 ~ /^\// {print $1}' |
      while read -r lib; do printf '%s\t%s\n' "$(readlink -f "$lib")" "$lib"; done
  done | sort -u -t $'\t' -k2,2
}

data_helper_digest() { # the digest of what a build would use
  if [ "$1" = dockerfile ]; then
    { echo dockerfile; cat "$ROOT/helper/Dockerfile"; } | sha256sum | cut -c1-16
  else
    { echo "host $DATA_HELPER_RECIPE"; data_helper_files | while IFS=$'\t' read -r src dest; do
      printf '%s %s\n' "$dest" "$(sha256sum "$src" | cut -d' ' -f1)"; done; } | sha256sum | cut -c1-16
  fi
}

build_data_helper_from_host() { # tag
  local dir applet
  dir="$(mktemp -d)"
  mkdir -p "$dir/bin" "$dir/usr/bin" "$dir/etc" "$dir/tmp" "$dir/data"
  chmod 1777 "$dir/tmp"
  data_helper_files | while IFS=$'\t' read -r src dest; do
    mkdir -p "$dir$(dirname "$dest")"
    cp "$src" "$dir$dest"
  done
  for applet in $(/bin/busybox --list); do
    # GNU tar and zstd come first on PATH; busybox keeps sh, df and the rest.
    [ -e "$dir/usr/bin/$applet" ] || [ "$applet" = busybox ] || ln -sfn busybox "$dir/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  tar -C "$dir" --numeric-owner --owner=0 --group=0 -c . |
    docker import --change 'ENV PATH=/usr/bin:/bin' --change 'CMD ["/bin/sh"]' \
      --change "LABEL cargohold.data-helper=$2" \
      --message "cargohold data helper, built by scripts/setup.sh from the host's binaries" - "$1" >/dev/null
  local rc=$?
  rm -rf "$dir"
  return $rc
}

data_helper_setup() {
  local how=host digest tag
  if [ -f "$ROOT/helper/Dockerfile" ] && { docker image inspect "$DATA_HELPER_BASE" >/dev/null 2>&1 ||
    timeout 60 docker pull --quiet "$DATA_HELPER_BASE" >/dev/null 2>&1; }; then
    how=dockerfile
  fi
  if [ "$how" = host ]; then
    local bin
    for bin in /bin/busybox "${DATA_HELPER_BINARIES[@]}"; do
      [ -x "$bin" ] || { warn "data helper: $bin is missing (apt-get install tar zstd busybox-static); backups use the engine's archive endpoint"; return 0; }
    done
    [ -x /usr/bin/restic ] || say "data helper: no /usr/bin/restic on this host (apt-get install restic); building without it"
  fi
  digest="$(data_helper_digest "$how")"
  tag="$DATA_HELPER_REPO:$digest"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    say "data helper image: $tag present"
  else
    say "data helper image: building $tag ($how)"
    if [ "$how" = dockerfile ]; then
      docker build --quiet --label "cargohold.data-helper=$digest" -t "$tag" "$ROOT/helper" >"$LOG_DIR/data-helper-build.log" 2>&1
    else
      build_data_helper_from_host "$tag" "$digest" 2>"$LOG_DIR/data-helper-build.log"
    fi || { warn "data helper: the build failed (var/log/data-helper-build.log); backups use the engine's archive endpoint"; return 0; }
    if ! docker run --rm --network none "$tag" sh -c 'tar --version && zstd --version && df -P /' \
      >"$LOG_DIR/data-helper-check.log" 2>&1; then
      warn "data helper: $tag does not run (var/log/data-helper-check.log); removing it"
      docker rmi "$tag" >/dev/null 2>&1 || true
      return 0
    fi
  fi
  if [ "$tag" != "$DATA_HELPER_IMAGE" ]; then
    docker tag "$tag" "$DATA_HELPER_IMAGE"
  fi
  say "data helper image: $DATA_HELPER_IMAGE is $tag"
}

if [ -n "$DATA_HELPER_IMAGE" ]; then
  data_helper_setup
else
  say "data helper image: disabled (CARGOHOLD_DATA_HELPER_IMAGE is empty)"
fi

# The tests' PostgreSQL server: make run does not need it, so a failure is only a warning.
bash "$ROOT/scripts/postgres.sh" || warn "the tests' PostgreSQL is not up (see above): the PostgreSQL pass of make test will fail"

say "setup done"
