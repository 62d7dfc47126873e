#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server on loopback for the multi-worker storage test and
# prints the URL to use (postgresql://hwssl:hwssl@127.0.0.1:5432/hwssl_test). Debian only.
# Exit status non-zero (and nothing printed on stdout) when it cannot: the test then skips.
set -euo pipefail
# The server package comes from scripts/install.sh (HWSSL_EXTRA_APT=postgresql, as .ci/run sets it).
command -v pg_ctlcluster >/dev/null 2>&1 || { echo "postgresql is not installed" >&2; exit 1; }
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 0.5
done
su postgres -c "psql -q -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='hwssl') THEN CREATE ROLE hwssl LOGIN PASSWORD 'hwssl'; END IF; END \\\$\\\$;\"" >&2
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='hwssl_test'\" | grep -q 1 || createdb -O hwssl hwssl_test" >&2
echo "postgresql://hwssl:hwssl@127.0.0.1:5432/hwssl_test"
