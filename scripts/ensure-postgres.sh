#!/usr/bin/env bash
# Start the machine's PostgreSQL when it is installed but not running (CI starts from a stopped one).
set -u
if ! command -v pg_isready >/dev/null 2>&1; then
  echo "PostgreSQL client not installed: PostgreSQL ledger tests will be skipped" >&2
  exit 0
fi
if pg_isready -q -h 127.0.0.1 -p 5432; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
