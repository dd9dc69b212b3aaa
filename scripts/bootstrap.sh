#!/usr/bin/env bash
# First-use installer behind `make test` / `make rehearse`: idempotent, Debian/Ubuntu aware.
# Usage: scripts/bootstrap.sh venv|pg|node|checkov|bench
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
have_apt() { command -v apt-get >/dev/null 2>&1; }

apt_install() {
  have_apt || die "need: $* (no apt-get here; install them by hand, see README)"
  say "apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null 2>&1 || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

python311() {
  command -v python3.11 >/dev/null 2>&1 || apt_install python3.11 python3.11-venv ||
    die "Python 3.11 is required (Lambda runtime python3.11; sam build needs it on PATH)"
  command -v python3.11
}

venv() {
  local py; py=$(python311)
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $py"
    "$py" -m venv .venv 2>/dev/null || { apt_install python3.11-venv; rm -rf .venv; "$py" -m venv .venv; }
  fi
  say "installing dev requirements (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
}

pg() {
  [ -x "$PG_BIN/initdb" ] && return 0
  have_apt || die "PostgreSQL 15 server binaries not found in $PG_BIN; install PostgreSQL 15 and set PG_BIN"
  apt_install postgresql-15 postgresql-client-15 ||
    die "could not apt-get install postgresql-15; on Ubuntu add the PGDG repo (apt.postgresql.org) first"
  [ -x "$PG_BIN/initdb" ] || die "postgresql-15 installed but $PG_BIN/initdb is missing"
}

node() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  say "npm ci (asl-validator)"
  npm ci --silent --no-audit --no-fund >/dev/null
}

bench() {  # bench/patroni.py's baseline: etcd, and venv support for /usr/bin/python3 (Patroni's own venv)
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server etcd-client
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv  # Debian: ensurepip ships in *-venv
}

checkov() {
  local py; py=$(python311)
  [ -x .venv-checkov/bin/python ] || "$py" -m venv .venv-checkov
  say "installing checkov into .venv-checkov"
  .venv-checkov/bin/python -m pip install -q --disable-pip-version-check -r requirements-checkov.txt
}

"$@"
