#!/usr/bin/env bash
# FHIR API load benchmark (issue 5): a throwaway PostgreSQL schema seeded
# with ROWS synthetic Communications (sealed with the server's key ring),
# carebridge serve on it, and bench/api driving it with CONNS connections:
# read by id, create, and the inbox search (recipient + status, newest
# first, 20 a page). Loopback only.
#
#   bench/api.sh                       # 1,000,000 rows, 32 connections, 15 s each
#   ROWS=100000 DURATION=5s bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${CAREBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
ROWS=${ROWS:-1000000}
CONNS=${CONNS:-32}
DURATION=${DURATION:-15s}
OPS=${OPS:-read search create}
work=$(mktemp -d)
schema="cbapi_$$"
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/carebridge" ./cmd/carebridge
go build -o "$work/api" ./bench/api
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(psql "$PG" -tAc 'SHOW server_version')"

PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
db="$PG&search_path=$schema"
data="$work/data"
"$work/carebridge" migrate --data-dir "$data" --database-url "$db" >/dev/null
"$work/api" seed --database-url "$db" --data-dir "$data" --rows "$ROWS"
"$work/carebridge" keys --ehr-key "$work/bench.pem" >"$work/bench.jwks" 2>/dev/null
"$work/carebridge" clients add --data-dir "$data" --database-url "$db" --client-id bench --jwks "$work/bench.jwks" \
	--scope 'system/Communication.cruds' >/dev/null
"$work/carebridge" serve --data-dir "$data" --database-url "$db" --mllp-addr 127.0.0.1:22577 --http-addr 127.0.0.1:28082 \
	--log-level warn >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf http://127.0.0.1:28082/readyz >/dev/null && break; sleep 0.1; done
for op in $OPS; do
	"$work/api" load --op "$op" --fhir-url http://127.0.0.1:28082/fhir --client-id bench --key "$work/bench.pem" \
		--conns "$CONNS" --duration "$DURATION" --rows "$ROWS" --database-url "$db"
done
