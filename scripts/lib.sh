# shellcheck shell=bash
# Shared by scripts/setup.sh, scripts/postgres.sh and scripts/engines.sh (sourced): how they
# speak. LOG_PREFIX (e.g. "engines: ") goes after the arrow of every line.
say() { printf '==> %s%s\n' "${LOG_PREFIX:-}" "$*"; }
warn() { printf '==> %sWARNING: %s\n' "${LOG_PREFIX:-}" "$*" >&2; }
die() {
  printf '==> %sERROR: %s\n' "${LOG_PREFIX:-}" "$1" >&2
  shift
  local line
  for line in "$@"; do printf '    %s\n' "$line" >&2; done
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
