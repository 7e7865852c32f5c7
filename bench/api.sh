#!/usr/bin/env bash
# FHIR API load benchmark (issue 5): a PostgreSQL schema seeded with ROWS
# synthetic Communications (sealed with the server's key ring), carebridge
# serve on it, and bench/api driving it with CONNS connections: read by id,
# create, and the inbox search (recipient + status, newest first, 20 a
# page). Loopback only.
#
# By default it runs on a PostgreSQL cluster of its own, made with initdb in
# a temporary folder and configured as a production server would be
# (bench/postgresql.conf: a quarter of the memory as shared_buffers,
# checkpoints spaced out, compressed full-page images; durability as
# always). Set DATABASE_URL to run on another server instead, in a
# throwaway schema.
#
# Each load also reports the CPU that the server, the cluster (when it is
# made here) and the load generator took per request, and the ceiling the
# machine's cores put on the rate with the load generator elsewhere: on a
# small machine the three share the cores, and these figures say what a
# rate measured there means for another.
#
#   bench/api.sh                       # 1,000,000 rows, 32 connections, 15 s each
#   ROWS=100000 DURATION=5s bench/api.sh
#   OPS="pipeline" bench/api.sh        # HL7 at PIPELINE_RATE/s (20) while the API creates flat out
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bench/api.sh
#   RATES="1000 2000" bench/api.sh     # also each operation at a fixed offered rate (open loop)
#
# Each measured load follows WARMUP (2s) of the same requests, uncounted: a
# server just started answers its first requests slowly (its database
# connections prepare their statements), which a server in service does
# not. WARMUP=0 measures that start too.
#
# An open loop (RATES) sends requests on a schedule whether or not the
# server keeps up and measures each from when it was due: the latency a
# client sees at that rate, where the closed loop's latency is only 32
# divided by its throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
CONNS=${CONNS:-32}
DURATION=${DURATION:-15s}
OPS=${OPS:-read search create}
RATES=${RATES:-}
WARMUP=${WARMUP:-2s}
work=$(mktemp -d)
schema="cbapi_$$"
pgbin=$( (pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null) | tail -1)
cluster=""
# as root, the cluster runs as the postgres user (initdb refuses root)
pgrun() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	if [ -n "$cluster" ]; then
		pgrun "$pgbin/pg_ctl" -D "$cluster" -m immediate stop >/dev/null 2>&1 || true
	elif [ -n "${PG:-}" ]; then
		PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${DATABASE_URL:-}" ]; then
	PG=$DATABASE_URL
elif [ -x "$pgbin/initdb" ]; then
	cluster="$work/pg"
	port=${PGPORT_BENCH:-25433}
	if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
	pgrun "$pgbin/initdb" -D "$cluster" -A trust -U postgres >"$work/initdb.log" 2>&1 ||
		{ cat "$work/initdb.log"; exit 1; }
	mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
	{
		cat bench/postgresql.conf
		echo "port = $port"
		echo "unix_socket_directories = '$work'"
		echo "shared_buffers = $((mem_kb / 4 / 1024))MB"
		echo "effective_cache_size = $((mem_kb / 2 / 1024))MB"
	} >>"$cluster/postgresql.conf"
	pgrun "$pgbin/pg_ctl" -D "$cluster" -l "$work/postgres.log" -w start >/dev/null ||
		{ cat "$work/postgres.log"; exit 1; }
	PG="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
else
	echo "no initdb found (install PostgreSQL's server, or set DATABASE_URL)" >&2
	exit 1
fi
case $PG in *\?*) sep='&' ;; *) sep='?' ;; esac

go build -o "$work/carebridge" ./cmd/carebridge
go build -o "$work/api" ./bench/api
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), PostgreSQL $(psql "$PG" -tAc 'SHOW server_version') (shared_buffers $(psql "$PG" -tAc 'SHOW shared_buffers'))"

PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
db="$PG${sep}search_path=$schema"
data="$work/data"
"$work/carebridge" migrate --data-dir "$data" --database-url "$db" >/dev/null
"$work/api" seed --database-url "$db" --data-dir "$data" --rows "$ROWS"
if [ -n "$cluster" ]; then
	# COPY bypasses the shared buffers; a server in service has its hot
	# tables there, so load them with PostgreSQL's pg_prewarm (contrib)
	psql "$PG" -qAtc "CREATE EXTENSION pg_prewarm SCHEMA public;
		SELECT sum(public.pg_prewarm(c.oid)) FROM pg_class c
		WHERE c.relnamespace = '$schema'::regnamespace AND c.relkind IN ('r', 'i')" >/dev/null ||
		echo "pg_prewarm is not installed: the first reads find the tables cold" >&2
fi
"$work/carebridge" keys --ehr-key "$work/bench.pem" >"$work/bench.jwks" 2>/dev/null
"$work/carebridge" clients add --data-dir "$data" --database-url "$db" --client-id bench --jwks "$work/bench.jwks" \
	--scope 'system/Communication.cruds' >/dev/null
serve() {
	"$work/carebridge" serve --data-dir "$data" --database-url "$db" --mllp-addr 127.0.0.1:22577 --http-addr 127.0.0.1:28082 \
		--log-level warn "$@" >>"$work/serve.log" 2>&1 &
	server=$!
	for _ in $(seq 100); do curl -sf http://127.0.0.1:28082/readyz >/dev/null && break; sleep 0.1; done
}
load() {
	# the CPU each process takes per request (Linux): the server's, and
	# the database's when it is the cluster made here
	local cpu=(--cpu "carebridge=$server")
	[ -n "$cluster" ] && cpu+=(--cpu "postgres=$(head -1 "$cluster/postmaster.pid")+")
	"$work/api" load --fhir-url http://127.0.0.1:28082/fhir --client-id bench --key "$work/bench.pem" \
		--conns "$CONNS" --rows "$ROWS" --warmup "$WARMUP" "${cpu[@]}" "$@"
}
serve
for op in $OPS; do
	[ "$op" = pipeline ] && continue
	load --op "$op" --duration "$DURATION" --database-url "$db"
	for rate in $RATES; do
		load --op "$op" --duration "$DURATION" --database-url "$db" --rate "$rate"
	done
done
case " $OPS " in *" pipeline "*)
	# The pipeline beside a loaded API: HL7 messages at PIPELINE_RATE/s
	# through bench/latency (five clinicians' inbox streams open, as in
	# bench/latency.sh) while the API creates flat out for 30 s.
	rate=${PIPELINE_RATE:-20}
	go build -o "$work/latency" ./bench/latency
	"$work/latency" --print-message | "$work/carebridge" map --summary --rules bench/latency/rules.yaml - 2>/dev/null |
		grep -o '<Practitioner/[^>]*>' | tr -d '<>' | awk '{printf "bench-token-%02d-0123456789 %s\n", NR, $1}' >"$work/tokens"
	chmod 600 "$work/tokens"
	kill -TERM "$server" && wait "$server" || true
	serve --rules bench/latency/rules.yaml --inbox-dev-tokens "$work/tokens"
	load --op create --duration 30s >"$work/beside.log" &
	loader=$!
	sleep 3
	printf 'pipeline beside creates: '
	"$work/latency" --addr 127.0.0.1:22577 --http 127.0.0.1:28082 --tokens "$work/tokens" --rate "$rate" --messages $((rate * 20)) --wait 120s
	wait "$loader"
	sed 's/^/        /' "$work/beside.log"
	;;
esac
