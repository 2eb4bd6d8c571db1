#!/usr/bin/env bash
# Make sure PostgreSQL server binaries exist for the embedded server, unless DATABASE_URL
# (or PG_HOST) points at a server. On Debian as root, installs them with apt-get.
set -euo pipefail
if [[ -n "${DATABASE_URL:-}" || -n "${PG_HOST:-}" ]]; then
  exit 0
fi
have_binaries() {
  local dir
  if command -v pg_config >/dev/null && dir=$(pg_config --bindir 2>/dev/null) && [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
    return 0
  fi
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if have_binaries; then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  have_binaries && exit 0
fi
echo "PostgreSQL server binaries (initdb, postgres) are needed for the embedded database." >&2
echo "Install PostgreSQL (e.g. 'sudo apt-get install postgresql') or set DATABASE_URL." >&2
exit 1
