#!/usr/bin/env bash
# End-to-end pipeline benchmark: builds carebridge, starts "serve" on
# SQLite, on PostgreSQL (a throwaway schema) and on PostgreSQL with NATS
# JetStream, five clinicians' inbox streams open, and drives it with
# bench/latency: first at a fixed rate (latency), then flat out
# (throughput). Loopback only.
#
#   bench/latency.sh                          # every store
#   STORES=sqlite bench/latency.sh            # one
#   RATE=500 MESSAGES=10000 bench/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${CAREBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS=${CAREBRIDGE_TEST_NATS:-nats://127.0.0.1:4222}
STORES=${STORES:-sqlite postgres nats}
RATE=${RATE:-1000}
MESSAGES=${MESSAGES:-10000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/carebridge" ./cmd/carebridge
go build -o "$work/latency" ./bench/latency
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3)"

# One development token per clinician the benchmark message reaches.
"$work/latency" --print-message | "$work/carebridge" map --summary --rules bench/latency/rules.yaml - 2>/dev/null |
	grep -o '<Practitioner/[^>]*>' | tr -d '<>' | awk '{printf "bench-token-%02d-0123456789 %s\n", NR, $1}' >"$work/tokens"
chmod 600 "$work/tokens"

for st in $STORES; do
	for mode in rate max; do
		args=(--data-dir "$work/data-$st-$mode" --mllp-addr 127.0.0.1:22576 --http-addr 127.0.0.1:28081 --log-level warn
			--rules bench/latency/rules.yaml --inbox-dev-tokens "$work/tokens")
		schema="cblat_$$_$mode"
		if [ "$st" != sqlite ]; then
			PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
			args+=(--database-url "$PG&search_path=$schema")
		fi
		if [ "$st" = nats ]; then args+=(--nats-url "$NATS" --nats-prefix "cblat$$$mode"); fi
		"$work/carebridge" serve "${args[@]}" >"$work/serve-$st.log" 2>&1 &
		pid=$!
		for _ in $(seq 1 100); do curl -sf http://127.0.0.1:28081/readyz >/dev/null && break; sleep 0.1; done
		r=$RATE
		[ "$mode" = max ] && r=0
		printf '%-8s ' "$st"
		"$work/latency" --addr 127.0.0.1:22576 --http 127.0.0.1:28081 --tokens "$work/tokens" --rate "$r" --messages "$MESSAGES" --wait 120s
		kill -TERM $pid; wait $pid || true
		if [ "$st" != sqlite ]; then PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA $schema CASCADE"; fi
	done
done
