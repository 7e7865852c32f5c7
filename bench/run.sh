#!/usr/bin/env bash
# End-to-end ingest benchmark: builds carebridge, starts "serve" on SQLite
# and then on PostgreSQL (a throwaway schema), and drives it with
# bench/ingest over 1 and 16 MLLP connections. Loopback only.
#
#   bench/run.sh                      # both stores
#   STORES=sqlite bench/run.sh        # one store
#   MESSAGES=40000 bench/run.sh       # longer runs
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${CAREBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
STORES=${STORES:-sqlite postgres}
MESSAGES=${MESSAGES:-20000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/carebridge" ./cmd/carebridge
go build -o "$work/ingest" ./bench/ingest
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3)"

for st in $STORES; do
	args=(--data-dir "$work/data-$st" --mllp-addr 127.0.0.1:22575 --http-addr 127.0.0.1:28080 --log-level warn)
	if [ "$st" = postgres ]; then
		schema="cbbench_$$"
		psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
		args+=(--database-url "$PG&search_path=$schema")
	fi
	"$work/carebridge" serve "${args[@]}" >"$work/serve-$st.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do curl -sf http://127.0.0.1:28080/readyz >/dev/null && break; sleep 0.1; done
	for c in 1 16; do
		n=$MESSAGES
		[ "$c" = 1 ] && n=$((MESSAGES / 2))
		printf '%-8s ' "$st"
		"$work/ingest" --addr 127.0.0.1:22575 --connections "$c" --messages "$n"
	done
	kill -TERM $pid; wait $pid || true
	if [ "$st" = postgres ]; then psql "$PG" -qc "DROP SCHEMA $schema CASCADE"; fi
done
