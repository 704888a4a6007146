#!/usr/bin/env bash
# Two extra Docker Engines on this machine, for the multi-host tests (`make test` starts them
# before pytest and stops them after).
#
#   scripts/engines.sh start [--lease ID]   start e1 and e2 (idempotent), load the helper images
#   scripts/engines.sh stop [--lease ID] [--purge]
#                                           stop both; --purge also deletes their data roots
#   scripts/engines.sh status               say what runs; exit 0 when both answer, 3 otherwise
#
# e1 listens on a unix socket only; e2 on a unix socket and on tcp://127.0.0.1:PORT with TLS
# client-certificate verification (a throwaway CA made here with openssl). Both are the same
# dockerd binary as the main engine, each with its own data root, exec root, pid file, socket,
# containerd namespace, trust key (so each has its own engine ID) and cgroup parent, with no
# bridge, no iptables, no IP forwarding or masquerading, and each in a network namespace of
# its own (unshare --net): a dockerd with --bridge=none deletes any docker0 it can see, and
# in the host's namespace that is the main engine's bridge (see start_dockerd). Their
# containers run with --network none (what Cargohold's helpers use anyway).
#
# Leases: `start --lease ID` records a holder (make test uses its shell's pid); `stop --lease
# ID` drops that holder and stops the engines only when no other live holder is left. A plain
# `start` is a manual holder: the engines stay up until a plain `stop`.
#
# Writes var/engines/env (KEY=value lines the tests read, tests/engines.py):
#   CARGOHOLD_TEST_ENGINE_E1=unix:///run/cargohold-engines/e1.sock
#   CARGOHOLD_TEST_ENGINE_E2=tcp://127.0.0.1:PORT
#   CARGOHOLD_TEST_ENGINE_E2_SOCKET=unix:///run/cargohold-engines/e2.sock
#   CARGOHOLD_TEST_ENGINE_E2_CA / _CERT / _KEY=paths of the client's CA, certificate and key
#   CARGOHOLD_TEST_ENGINE_E1_SSH=ssh://root@127.0.0.1:PORT   e1 again, over ssh (below)
#   CARGOHOLD_TEST_ENGINE_E1_SSH_PATH=a folder to put first on PATH: its `ssh` uses the harness's
#                                    client key and known_hosts (ssh -F), nothing of ~/.ssh
#
# ssh:// hosts: an sshd of its own (var/engines/ssh: its config, host key, a client key made
# here) on 127.0.0.1:PORT, whose one authorized key is forced to run `docker system
# dial-stdio` against e1's socket (restrict,command=...): what the README advises for a
# worker's key on a real host. Started after the engines, stopped with them.
#
# Environment:
#   CARGOHOLD_ENGINES_E2_PORT        e2's TLS port on 127.0.0.1 (default 23762)
#   CARGOHOLD_ENGINES_STORAGE_DRIVER overlay2 (default; vfs is tried when overlay2 fails)
#   CARGOHOLD_ENGINES_SSH_PORT       the harness sshd's port on 127.0.0.1 (default 22022)
#   CARGOHOLD_HELPER_IMAGE, CARGOHOLD_DATA_HELPER_IMAGE  the images copied from the main engine
#                                    (defaults as in scripts/setup.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ENGINES=(e1 e2)
DATA_BASE=/var/lib/cargohold-engines # data roots: outside the repo, kept between runs
RUN_BASE=/run/cargohold-engines      # exec roots, sockets, pid files (short: socket paths < 108)
VAR="$ROOT/var/engines"              # logs, configs, certificates, the env file, leases
CERTS="$VAR/certs"
ENV_FILE="$VAR/env"
LEASES="$VAR/leases"
E2_PORT="${CARGOHOLD_ENGINES_E2_PORT:-23762}"
STORAGE_DRIVER="${CARGOHOLD_ENGINES_STORAGE_DRIVER:-overlay2}"
SSH_PORT="${CARGOHOLD_ENGINES_SSH_PORT:-22022}"
SSH_DIR="$VAR/ssh"
HELPER_IMAGE="${CARGOHOLD_HELPER_IMAGE:-busybox:stable}"
DATA_HELPER_IMAGE="${CARGOHOLD_DATA_HELPER_IMAGE-cargohold-data-helper:current}"
START_TIMEOUT=60
STOP_TIMEOUT=30

LOG_PREFIX="engines: "
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh" # say, warn, die, have

data_root() { printf '%s/%s' "$DATA_BASE" "$1"; }
exec_root() { printf '%s/%s' "$RUN_BASE" "$1"; }
pid_file() { printf '%s/%s.pid' "$RUN_BASE" "$1"; }
sock_path() { printf '%s/%s.sock' "$RUN_BASE" "$1"; }
sock_url() { printf 'unix://%s' "$(sock_path "$1")"; }
log_file() { printf '%s/%s.log' "$VAR" "$1"; }

# The docker CLI against one extra engine (always through its unix socket).
edocker() { # engine, args...
  local name="$1"
  shift
  DOCKER_HOST="$(sock_url "$name")" docker "$@"
}

answers() { timeout 10 env DOCKER_HOST="$(sock_url "$1")" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The pid of engine $1's dockerd, if its pid file names a live dockerd started with *our* exec
# root: never the main engine's dockerd, never a reused pid.
engine_pid() {
  local pid
  pid="$(cat "$(pid_file "$1")" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "--exec-root=$(exec_root "$1")" || return 1
  printf '%s' "$pid"
}

# --- certificates ---------------------------------------------------------------------

# A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate, made
# once; keys 0600. Remade when a file is missing or a certificate expires within a day.
make_certs() {
  local f fresh=1
  for f in ca.pem ca-key.pem server-cert.pem server-key.pem cert.pem key.pem; do
    [ -s "$CERTS/$f" ] || fresh=0
  done
  if [ "$fresh" -eq 1 ]; then
    for f in ca.pem server-cert.pem cert.pem; do
      openssl x509 -checkend 86400 -noout -in "$CERTS/$f" >/dev/null 2>&1 || fresh=0
    done
  fi
  [ "$fresh" -eq 1 ] && return 0
  have openssl || die "openssl is needed to make e2's TLS certificates" "to install: apt-get install openssl"
  say "making a throwaway CA and TLS certificates in ${CERTS#"$ROOT"/}"
  rm -rf "$CERTS"
  mkdir -p "$CERTS"
  chmod 0700 "$CERTS"
  (
    cd "$CERTS"
    umask 077
    local days=825
    openssl genrsa -out ca-key.pem 3072 2>/dev/null
    openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=cargohold test engines CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.pem 2>/dev/null
    openssl genrsa -out server-key.pem 3072 2>/dev/null
    openssl req -new -key server-key.pem -subj "/CN=localhost" -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days "$days" \
      -extfile server.ext -out server-cert.pem 2>/dev/null
    openssl genrsa -out key.pem 3072 2>/dev/null
    openssl req -new -key key.pem -subj "/CN=cargohold-test-client" -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days "$days" \
      -extfile client.ext -out cert.pem 2>/dev/null
    rm -f server.csr client.csr server.ext client.ext ca.srl
    chmod 0600 ca-key.pem server-key.pem key.pem
    chmod 0644 ca.pem server-cert.pem cert.pem
  ) || die "openssl could not make the certificates in $CERTS"
}

# Bind 127.0.0.1:PORT, put the listening socket at fd 3 and exec the rest of argv with the
# systemd socket-activation variables set (the pid stays the same through unshare and dockerd).
# shellcheck disable=SC2016 # Python, not shell
LISTEN_AND_EXEC='
import os, socket, sys
port, argv = int(sys.argv[1]), sys.argv[2:]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", port))
except OSError as e:
    sys.exit(f"cannot listen on 127.0.0.1:{port}: {e} (set CARGOHOLD_ENGINES_E2_PORT to a free port)")
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # Python makes its descriptors close on exec
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execvp(argv[0], argv)
'

# --- one engine -----------------------------------------------------------------------

# Every flag that keeps an extra dockerd off the main engine's things. Checked in one place,
# before the first start (see the README's test-harness section for why each is there).
dockerd_args() { # engine, storage driver
  local name="$1" driver="$2"
  local args=(
    "--config-file=$VAR/$name/daemon.json" # not /etc/docker/daemon.json (the main engine's)
    "--data-root=$(data_root "$name")"
    "--exec-root=$(exec_root "$name")"
    "--pidfile=$(pid_file "$name")"
    "--host=$(sock_url "$name")"
    "--containerd-namespace=cargohold-$name"
    "--containerd-plugins-namespace=cargohold-$name-plugins"
    "--cgroup-parent=cargohold-$name"
    "--bridge=none"
    "--iptables=false"
    "--ip-forward=false"
    "--ip-masq=false"
    "--userland-proxy=false"
    "--storage-driver=$driver"
    "--log-level=info"
  )
  if [ "$name" = e2 ]; then
    args+=(
      "--host=fd://" # tcp://127.0.0.1:$E2_PORT, made in the host's namespace (start_dockerd)
      "--tlsverify"
      "--tlscacert=$CERTS/ca.pem"
      "--tlscert=$CERTS/server-cert.pem"
      "--tlskey=$CERTS/server-key.pem"
    )
  fi
  printf '%s\n' "${args[@]}"
}

check_args() { # engine, args...: refuse to start a dockerd that could share anything with the main one
  local name="$1" arg
  shift
  local must=("--bridge=none" "--iptables=false" "--ip-forward=false" "--ip-masq=false"
    "--data-root=$(data_root "$name")" "--exec-root=$(exec_root "$name")"
    "--pidfile=$(pid_file "$name")" "--host=$(sock_url "$name")")
  for arg in "${must[@]}"; do
    printf '%s\n' "$@" | grep -qxF -- "$arg" || die "internal error: dockerd for $name would start without $arg"
  done
  for arg in "$@"; do
    case "$arg" in
      --live-restore* | --host=unix:///var/run/docker.sock | --host=unix:///run/docker.sock | \
        --data-root=/var/lib/docker | --exec-root=/var/run/docker | --exec-root=/run/docker | \
        --pidfile=/var/run/docker.pid | --pidfile=/run/docker.pid)
        die "internal error: dockerd for $name would start with $arg (the main engine's)"
        ;;
    esac
  done
  [ "${#RUN_BASE}" -lt 60 ] || die "internal error: $RUN_BASE is too long for unix socket paths"
}

start_dockerd() { # engine, storage driver
  local name="$1" driver="$2" args
  mapfile -t args < <(dockerd_args "$name" "$driver")
  check_args "$name" "${args[@]}"
  mkdir -p "$(data_root "$name")" "$(exec_root "$name")" "$VAR/$name"
  chmod 0711 "$(data_root "$name")"
  # Its own trust key, so its own engine ID (docker info's ID), not /etc/docker/key.json's.
  printf '{"deprecated-key-path": "%s/key.json"}\n' "$(data_root "$name")" >"$VAR/$name/daemon.json"
  rm -f "$(pid_file "$name")" "$(sock_path "$name")"
  printf '\n---- %s: dockerd %s\n' "$(date -u +%FT%TZ)" "${args[*]}" >>"$(log_file "$name")"
  # setsid + nohup: the daemon outlives this script and `make test`'s shell.
  # 9>&-: it must not inherit (and hold forever) our lock.
  # unshare --net: dockerd runs in a network namespace of its own, with nothing in it but a
  # loopback. It must: a dockerd started with --bridge=none deletes any link named docker0
  # it can see (moby's removeDefaultBridgeInterface), which in the host's namespace is the
  # main engine's bridge. Its iptables, ip_forward and interfaces are that namespace's too.
  # unshare and nsenter exec in place (same pid), so dockerd keeps the pid we start.
  local launch=(unshare --net -- dockerd "${args[@]}")
  if [ "$name" = e2 ]; then
    # e2's TLS port must be reachable on the host's 127.0.0.1, which the namespace has not:
    # the listening socket is made here, in the host's namespace, and handed to dockerd as
    # systemd socket activation (LISTEN_FDS=1, fd 3; dockerd's -H fd://), still with TLS.
    launch=(python3 -c "$LISTEN_AND_EXEC" "$E2_PORT" "${launch[@]}")
  fi
  setsid nohup "${launch[@]}" >>"$(log_file "$name")" 2>&1 </dev/null 9>&- &
  local deadline=$((SECONDS + START_TIMEOUT))
  until answers "$name"; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$!" 2>/dev/null; then
      return 1
    fi
    sleep 0.5
  done
}

start_engine() { # engine
  local name="$1" driver pid
  if pid="$(engine_pid "$name")" && answers "$name"; then
    say "$name: running (pid $pid, $(sock_url "$name"))"
    return 0
  fi
  if pid="$(engine_pid "$name")"; then
    say "$name: dockerd (pid $pid) does not answer; stopping it first"
    stop_engine "$name"
  fi
  # A data root made with vfs (overlay2 failed once) keeps vfs: the images live in its store.
  driver="$STORAGE_DRIVER"
  if [ -z "${CARGOHOLD_ENGINES_STORAGE_DRIVER:-}" ] && [ -f "$(data_root "$name")/.storage-driver" ]; then
    driver="$(cat "$(data_root "$name")/.storage-driver")"
  fi
  say "$name: starting dockerd ($driver; log: ${VAR#"$ROOT"/}/$name.log)"
  if ! start_dockerd "$name" "$driver"; then
    stop_engine "$name" quiet
    if [ "$driver" = overlay2 ] && [ -z "${CARGOHOLD_ENGINES_STORAGE_DRIVER:-}" ] &&
      last_start_log "$name" | grep -qiE 'overlay|graphdriver|storage driver'; then
      warn "$name: dockerd with overlay2 did not come up; trying vfs (slower: every layer is a full copy)"
      last_start_log "$name" | tail -n 5 >&2 || true
      driver=vfs
      start_dockerd "$name" "$driver" || { stop_engine "$name" quiet; engine_failed "$name"; }
    else
      engine_failed "$name"
    fi
  fi
  printf '%s\n' "$driver" >"$(data_root "$name")/.storage-driver"
  say "$name: up (pid $(engine_pid "$name"), $(sock_url "$name")$([ "$name" = e2 ] && printf ', tcp://127.0.0.1:%s with TLS' "$E2_PORT"))"
}

last_start_log() { # what engine $1's dockerd logged since its last start
  awk '/^---- [0-9T:-]+Z: dockerd / {buf = ""; next} {buf = buf $0 "\n"} END {printf "%s", buf}' "$(log_file "$1")" 2>/dev/null
}

engine_failed() {
  echo "---- last lines of $(log_file "$1") ----" >&2
  last_start_log "$1" | tail -n 25 >&2 || true
  echo "----" >&2
  die "the extra engine $1 did not answer within $START_TIMEOUT s; its log: $(log_file "$1")" \
    "Is port $E2_PORT taken (CARGOHOLD_ENGINES_E2_PORT=...)? Is this root on a host that runs dockerd?"
}

# Processes of engine $1 that outlived its dockerd (a SIGKILLed dockerd leaves its containerd
# and shims): found by our exec root or containerd namespace on their command line, by pid.
leftover_pids() {
  local name="$1" dir pid cmd
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    cmd="$({ tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null || true)"
    case "$cmd" in
      *"$(exec_root "$name")/"* | *"-namespace cargohold-$name "*) printf '%s\n' "$pid" ;;
    esac
  done
}

unmount_under() { # dir: lazily unmount whatever is still mounted below it, deepest first
  local dir="$1" mnt
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
}

stop_engine() { # engine [quiet]
  local name="$1" quiet="${2:-}" pid deadline pids
  if pid="$(engine_pid "$name")"; then
    [ -n "$quiet" ] || say "$name: stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name: dockerd (pid $pid) still running after ${STOP_TIMEOUT} s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
    fi
  elif [ -z "$quiet" ]; then
    say "$name: not running"
  fi
  mapfile -t pids < <(leftover_pids "$name")
  if [ "${#pids[@]}" -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 2
    mapfile -t pids < <(leftover_pids "$name")
    [ "${#pids[@]}" -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  unmount_under "$(exec_root "$name")"
  unmount_under "$(data_root "$name")"
  rm -rf --one-file-system "$(exec_root "$name")"
  rm -f "$(pid_file "$name")" "$(sock_path "$name")"
}

# --- images ---------------------------------------------------------------------------

# Copy an image from the main engine when the extra engine lacks it or has another id.
copy_image() { # engine, image
  local name="$1" image="$2" want got
  want="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ||
    die "the main engine has no image $image" "Run scripts/setup.sh (it builds it), then start the engines again."
  got="$(edocker "$name" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  if [ "$want" = "$got" ]; then
    return 0
  fi
  say "$name: loading $image from the main engine"
  docker save "$image" | edocker "$name" load --quiet >/dev/null ||
    die "could not load $image into $name (docker save $image | docker -H $(sock_url "$name") load)"
  got="$(edocker "$name" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  [ "$want" = "$got" ] || die "$name: $image has id ${got:-none} after loading, expected $want"
}

check_engine() { # engine: a network-none container runs, and the main engine's docker0 is still there
  local name="$1" out
  if ! out="$(edocker "$name" run --rm --network none --label cargohold.engines-check=1 "$HELPER_IMAGE" true 2>&1)"; then
    die "$name: 'docker run --rm --network none $HELPER_IMAGE true' fails: $out" "its log: $(log_file "$name")"
  fi
  if [ "$name" = e2 ] && ! out="$(timeout 20 docker --tlsverify --tlscacert "$CERTS/ca.pem" --tlscert "$CERTS/cert.pem" \
    --tlskey "$CERTS/key.pem" -H "tcp://127.0.0.1:$E2_PORT" version --format '{{.Server.Version}}' 2>&1)"; then
    die "e2 does not answer with TLS at tcp://127.0.0.1:$E2_PORT: $out" "its log: $(log_file e2)"
  fi
}

main_bridge() { # the main engine's docker0 as the host's namespace has it: index, address
  [ -e /sys/class/net/docker0 ] || return 0
  printf '%s %s' "$(cat /sys/class/net/docker0/ifindex)" "$(cat /sys/class/net/docker0/address)"
}

main_engine_ok() {
  timeout 20 docker info >/dev/null 2>&1 ||
    die "the main Docker Engine does not answer ('docker info' fails)" "Run scripts/setup.sh first."
}

# --- e1 over ssh -------------------------------------------------------------------------

sshd_pid() {
  local pid
  pid="$(cat "$SSH_DIR/sshd.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

ssh_answers() { # the forced command reaches e1
  timeout 20 env PATH="$SSH_DIR/bin:$PATH" docker -H "ssh://root@127.0.0.1:$SSH_PORT" version \
    --format '{{.Server.Version}}' >/dev/null 2>&1
}

write_ssh_files() {
  if [ -z "$SSH_DIR" ] || [ "$SSH_DIR" = /ssh ]; then die "internal: SSH_DIR is unset"; fi
  mkdir -p "$SSH_DIR/bin"
  chmod 700 "$SSH_DIR"
  [ -f "$SSH_DIR/host_key" ] || ssh-keygen -q -t ed25519 -N "" -C cargohold-test-sshd -f "$SSH_DIR/host_key"
  [ -f "$SSH_DIR/client_key" ] || ssh-keygen -q -t ed25519 -N "" -C cargohold-test-worker -f "$SSH_DIR/client_key"
  printf 'restrict,command="DOCKER_HOST=%s exec docker system dial-stdio" %s\n' \
    "$(sock_url e1)" "$(cat "$SSH_DIR/client_key.pub")" >"$SSH_DIR/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSH_DIR/host_key.pub")" >"$SSH_DIR/known_hosts"
  printf '%s\n' "ListenAddress 127.0.0.1:$SSH_PORT" "HostKey $SSH_DIR/host_key" \
    "AuthorizedKeysFile $SSH_DIR/authorized_keys" "PidFile $SSH_DIR/sshd.pid" \
    "PermitRootLogin prohibit-password" "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "UsePAM no" "StrictModes no" "AllowTcpForwarding no" "X11Forwarding no" >"$SSH_DIR/sshd_config"
  printf '%s\n' "Host *" "  IdentityFile $SSH_DIR/client_key" "  IdentitiesOnly yes" \
    "  UserKnownHostsFile $SSH_DIR/known_hosts" "  StrictHostKeyChecking yes" "  BatchMode yes" \
    "  ServerAliveInterval 10" >"$SSH_DIR/ssh_config"
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$SSH_DIR/ssh_config" >"$SSH_DIR/bin/ssh"
  chmod 755 "$SSH_DIR/bin/ssh"
}

start_sshd() {
  [ -x /usr/sbin/sshd ] || die "sshd is not installed (the ssh:// host test needs it)" \
    "to install: apt-get install -y --no-install-recommends openssh-server (scripts/setup.sh does)"
  [ -x /usr/bin/ssh ] || die "ssh is not installed" "to install: apt-get install -y --no-install-recommends openssh-client"
  write_ssh_files
  mkdir -p /run/sshd # sshd's privilege-separation folder
  if ! sshd_pid >/dev/null; then
    /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$VAR/sshd.log" ||
      die "sshd did not start (log: ${VAR#"$ROOT"/}/sshd.log)" \
        "Is port $SSH_PORT on 127.0.0.1 taken? Set CARGOHOLD_ENGINES_SSH_PORT."
  fi
  local i
  for ((i = 0; i < 20; i++)); do
    if ssh_answers; then
      say "ssh: e1 answers over ssh://root@127.0.0.1:$SSH_PORT (sshd pid $(sshd_pid))"
      return 0
    fi
    sleep 0.5
  done
  die "e1 does not answer over ssh://root@127.0.0.1:$SSH_PORT (log: ${VAR#"$ROOT"/}/sshd.log)"
}

stop_sshd() {
  local pid
  if pid="$(sshd_pid)"; then
    say "ssh: stopping sshd (pid $pid)"
    kill "$pid" 2>/dev/null || true
  fi
  rm -f "$SSH_DIR/sshd.pid"
}

# --- env file and leases ----------------------------------------------------------------

write_env() {
  local tmp="$ENV_FILE.tmp.$$"
  {
    printf '# Written by scripts/engines.sh start at %s; removed by stop.\n' "$(date -u +%FT%TZ)"
    printf 'CARGOHOLD_TEST_ENGINE_E1=%s\n' "$(sock_url e1)"
    printf 'CARGOHOLD_TEST_ENGINE_E2=tcp://127.0.0.1:%s\n' "$E2_PORT"
    printf 'CARGOHOLD_TEST_ENGINE_E2_SOCKET=%s\n' "$(sock_url e2)"
    printf 'CARGOHOLD_TEST_ENGINE_E2_CA=%s\n' "$CERTS/ca.pem"
    printf 'CARGOHOLD_TEST_ENGINE_E2_CERT=%s\n' "$CERTS/cert.pem"
    printf 'CARGOHOLD_TEST_ENGINE_E2_KEY=%s\n' "$CERTS/key.pem"
    printf 'CARGOHOLD_TEST_ENGINE_E1_SSH=ssh://root@127.0.0.1:%s\n' "$SSH_PORT"
    printf 'CARGOHOLD_TEST_ENGINE_E1_SSH_PATH=%s\n' "$SSH_DIR/bin"
  } >"$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

lease_alive() { # lease file name: "manual" always; a pid while that process lives
  [ "$1" = manual ] && return 0
  [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null
}

other_live_leases() { # except $1
  local f
  for f in "$LEASES"/*; do
    [ -e "$f" ] || continue
    f="${f##*/}"
    [ "$f" = "$1" ] && continue
    if lease_alive "$f"; then printf '%s\n' "$f"; else rm -f "$LEASES/$f"; fi
  done
}

# --- commands -------------------------------------------------------------------------

cmd_start() {
  local lease="${1:-manual}" name
  [ "$(id -u)" -eq 0 ] || die "only root can start dockerd" "Run: sudo bash scripts/engines.sh start"
  have dockerd || die "dockerd is not installed" "to install: apt-get install docker.io"
  main_engine_ok
  make_certs
  local bridge_before
  bridge_before="$(main_bridge)"
  for name in "${ENGINES[@]}"; do
    start_engine "$name"
    if [ "$(main_bridge)" != "$bridge_before" ]; then
      local other
      for other in "${ENGINES[@]}"; do stop_engine "$other"; done
      die "the main engine's bridge changed while $name started (before: ${bridge_before:-none}, now: $(main_bridge))" \
        "Containers on the main engine's default network cannot start until docker0 is back:" \
        "recreate it as it was (ip link add docker0 type bridge; ip addr add 172.17.0.1/16 dev docker0;" \
        "ip link set docker0 up) and report this: it must never happen (see start_dockerd)."
    fi
  done
  for name in "${ENGINES[@]}"; do
    copy_image "$name" "$HELPER_IMAGE"
    [ -z "$DATA_HELPER_IMAGE" ] || copy_image "$name" "$DATA_HELPER_IMAGE"
    check_engine "$name"
  done
  start_sshd
  mkdir -p "$LEASES"
  : >"$LEASES/$lease"
  write_env
  say "env for the tests: ${ENV_FILE#"$ROOT"/}"
  sed -n 's/^CARGOHOLD/    CARGOHOLD/p' "$ENV_FILE"
}

cmd_stop() {
  local lease="$1" purge="$2" name others
  if [ -n "$lease" ]; then
    rm -f "$LEASES/$lease"
    others="$(other_live_leases "$lease" | tr '\n' ' ')"
    if [ -n "$others" ]; then
      say "still held by: $others(a plain 'stop' stops them anyway); leaving them running"
      return 0
    fi
  fi
  rm -rf "$LEASES"
  rm -f "$ENV_FILE"
  stop_sshd
  for name in "${ENGINES[@]}"; do stop_engine "$name"; done
  if [ "$purge" = 1 ]; then
    for name in "${ENGINES[@]}"; do
      say "$name: deleting its data root $(data_root "$name")"
      rm -rf --one-file-system "$(data_root "$name")"
    done
    rmdir "$DATA_BASE" 2>/dev/null || true
    rm -rf "$CERTS" "$SSH_DIR"
  fi
  rmdir "$RUN_BASE" 2>/dev/null || true
}

cmd_status() {
  local name pid rc=0
  for name in "${ENGINES[@]}"; do
    if pid="$(engine_pid "$name")" && answers "$name"; then
      say "$name: running (pid $pid, $(sock_url "$name"), $(edocker "$name" info --format '{{.Driver}}, {{.Images}} images, {{.Containers}} containers, id {{.ID}}'))"
    elif pid="$(engine_pid "$name")"; then
      say "$name: dockerd (pid $pid) runs but does not answer"
      rc=3
    else
      say "$name: stopped"
      rc=3
    fi
  done
  if pid="$(sshd_pid)"; then say "ssh: sshd running (pid $pid, 127.0.0.1:$SSH_PORT)"; else say "ssh: sshd stopped"; fi
  if [ -f "$ENV_FILE" ]; then say "env file: ${ENV_FILE#"$ROOT"/}"; else say "env file: none"; fi
  return "$rc"
}

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

command="${1:-}"
[ $# -gt 0 ] && shift
lease="" purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --lease)
      [ $# -ge 2 ] || usage
      lease="$2"
      shift 2
      ;;
    --purge)
      purge=1
      shift
      ;;
    *) usage ;;
  esac
done
[[ -z "$lease" || "$lease" =~ ^[0-9]+$ ]] || die "--lease takes a process id"

mkdir -p "$VAR"
case "$command" in
  start | stop)
    # Two starts (or a start and a stop) at once would race on the same daemons: take turns.
    exec 9>"$VAR/.lock"
    flock -w 300 9 || die "another scripts/engines.sh has held var/engines/.lock for 5 minutes"
    if [ "$command" = start ]; then cmd_start "$lease"; else cmd_stop "$lease" "$purge"; fi
    ;;
  status) cmd_status ;;
  *) usage ;;
esac
