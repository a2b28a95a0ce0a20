#!/usr/bin/env bash
# Transfers between random accounts of a table sharded over `mycelium up`'s three nodes (SQLite,
# or PostgreSQL databases when PG_URL is set): two thirds of them touch two nodes, in either
# order, so they cross and would deadlock. pgbench retries serialization failures (40001), as
# an application should.
#
#   bench/scripts/crossing_transfers.sh [BINARY] [CLIENTS] [SECONDS]
#   PG_URL=postgres://user:password@host:port/db bench/scripts/crossing_transfers.sh ...
#
# Prints pgbench's summary, and the account count and total before and after (unchanged: no
# money is created or lost).
set -euo pipefail
binary=${1:-target/release/mycelium}
clients=${2:-8}
seconds=${3:-20}
port=${PORT:-6650}
dir=$(mktemp -d /tmp/mycelium-crossing-XXXXXX)
backend=()
if [ -n "${PG_URL:-}" ]; then backend=(--backend postgres --pg-url "$PG_URL"); fi
"$binary" up --data-dir "$dir/data" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$((port + 1))" "${backend[@]}" >"$dir/log" 2>&1 &
up=$!
trap 'kill $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$dir"' EXIT
export PGPASSWORD=${MYCELIUM_PASSWORD:-mycelium}
sql() { psql -X -q -A -t -h 127.0.0.1 -p "$port" -U mycelium -c "$1" mycelium; }
for _ in $(seq 1 120); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
sql "CREATE TABLE acct (id bigint PRIMARY KEY, balance bigint NOT NULL)
     WITH (mycelium.shard_keys = 'id', mycelium.shards = 6)"
sql "INSERT INTO acct SELECT g, 1000 FROM generate_series(1, 600) g"
echo "before: $(sql 'SELECT count(*), sum(balance) FROM acct')"
cat >"$dir/transfer.sql" <<'SQL'
\set a random(1, 600)
\set b random(1, 600)
BEGIN;
UPDATE acct SET balance = balance - 1 WHERE id = :a;
UPDATE acct SET balance = balance + 1 WHERE id = :b;
END;
SQL
pgbench -n -h 127.0.0.1 -p "$port" -U mycelium -M prepared -c "$clients" -j 2 -T "$seconds" \
  --max-tries=1000 -f "$dir/transfer.sql" mycelium |
  grep -E "processed|failed|retried|latency average|tps"
echo "after: $(sql 'SELECT count(*), sum(balance) FROM acct')"
