#!/usr/bin/env bash
# Side-by-side benchmark of Meridian, nginx proxy_cache and Varnish on this
# machine's loopback. See README.md in this folder.
#
#   deploy/bench/run.sh            full run: 5 s per measurement, 3 repetitions
#   deploy/bench/run.sh --quick    smoke run: 1 s per measurement, 3 repetitions
#
# It needs root (apt-get, taskset) and two cores. It installs nginx, varnish,
# wrk and h2load from Debian's packages when they are missing, stops the
# services that those packages start, and runs its own instances with its
# own configs under a temporary directory. Every process it starts is
# stopped when it exits, however it exits.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh" # start, ready, stop_started

DUR=5          # seconds per throughput measurement
REPS=3         # repetitions; the report takes medians
MEM_1K=10000   # 1 KiB objects cached for the memory measurement
MEM_64K=1000   # 64 KiB objects
CONNS=64       # connections of the throughput measurements
CLIENTS=200    # concurrent clients of the coalescing measurement
OUT="$HERE/results"
NAME=latest
PROFILE=0
INSTALL=1
BASE=${BENCH_PORT_BASE:-18000}
SERVER_CORE=0
LOAD_CORE=1

usage() {
	cat <<EOF
usage: $0 [--quick] [--reps N] [--duration SECONDS] [--profile] [--no-install] [--out DIR]

  --quick        1 s per measurement and fewer objects (results/quick.*)
  --reps N       repetitions (default $REPS, at least 3 for a median worth the name)
  --duration S   seconds per throughput measurement (default $DUR)
  --profile      also take a 10 s CPU profile of Meridian serving 1 KiB hits
  --no-install   do not apt-get install missing tools
  --out DIR      where latest.md and latest.json go (default deploy/bench/results)

MERIDIAN_BIN=FILE uses that binary instead of building ./cmd/meridian.
MERIDIAN_FRONT=nethttp measures Meridian's net/http HTTP/1.1 front instead
of its fast one.
Ports: 127.0.0.1:BASE+{0,80,81,82,83,90,443,444}; BASE=\$BENCH_PORT_BASE (default 18000).
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) DUR=1; MEM_1K=2000; MEM_64K=200; NAME=quick ;;
	--reps) REPS=${2:?--reps needs a number}; shift ;;
	--duration) DUR=${2:?--duration needs seconds}; shift ;;
	--profile) PROFILE=1 ;;
	--no-install) INSTALL=0 ;;
	--out) OUT=${2:?--out needs a directory}; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $(date +%T) $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and pins processes to cores"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server on core $SERVER_CORE, load on core $LOAD_CORE), have $(nproc)"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps: want a positive number, got $REPS"
[[ "$DUR" =~ ^[1-9][0-9]*$ ]] || die "--duration: want whole seconds, got $DUR"
command -v go >/dev/null || die "go is not installed (needed to build meridian)"

# ---- tools -----------------------------------------------------------------

# command -> Debian package
declare -A PKG=([nginx]=nginx [varnishd]=varnish [wrk]=wrk [h2load]=nghttp2-client
	[taskset]=util-linux [openssl]=openssl [ss]=iproute2 [curl]=curl)
missing=()
for c in "${!PKG[@]}"; do
	command -v "$c" >/dev/null 2>&1 || missing+=("${PKG[$c]}")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ $INSTALL = 1 ] || die "missing packages: ${missing[*]} (run without --no-install)"
	log "installing ${missing[*]}"
	apt-get update -qq >/dev/null || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
		|| die "apt-get install ${missing[*]} failed"
fi

# The packages start (or would start at boot) system instances on port 80
# and 6081; stop and disable those, and touch nothing else.
for svc in nginx varnish varnishncsa; do
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif command -v service >/dev/null; then
		service "$svc" stop >/dev/null 2>&1 || true
		command -v update-rc.d >/dev/null && update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done
for pidfile in /run/nginx.pid /var/run/nginx.pid /run/varnishd.pid /var/run/varnishd.pid; do
	if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		kill "$(cat "$pidfile")" 2>/dev/null || true
	fi
done

# ---- ports -----------------------------------------------------------------

ORIGIN_PORT=$BASE
MERIDIAN_PORT=$((BASE + 80))
NGINX_PORT=$((BASE + 81))
VARNISH_PORT=$((BASE + 82))
NGINX_SF_PORT=$((BASE + 83)) # nginx with sendfile on, for the hit rows
MEM_PORT=$((BASE + 84))      # the fresh Meridian of each repetition's memory rows
FLOOR_PORT=$((BASE + 85))    # the all-miss row's calibration (bench.Floor)
DEBUG_PORT=$((BASE + 90))
MEM_DEBUG_PORT=$((BASE + 91))
MEM_ADMIN_PORT=$((BASE + 92)) # (the long-running one has the default admin port)
MERIDIAN_TLS_PORT=$((BASE + 443))
NGINX_TLS_PORT=$((BASE + 444))
MEM_TLS_PORT=$((BASE + 445))
for p in $ORIGIN_PORT $MERIDIAN_PORT $NGINX_PORT $VARNISH_PORT $NGINX_SF_PORT $MEM_PORT $FLOOR_PORT $DEBUG_PORT $MEM_DEBUG_PORT $MEM_ADMIN_PORT $MERIDIAN_TLS_PORT $NGINX_TLS_PORT $MEM_TLS_PORT; do
	if [ -n "$(ss -Hltn "sport = :$p")" ]; then
		die "port $p is busy (TCP): stop what listens there ($(ss -Hltnp "sport = :$p" | awk '{print $NF}' | head -1)) or set BENCH_PORT_BASE"
	fi
done
if [ -n "$(ss -Hlun "sport = :$MERIDIAN_TLS_PORT")" ]; then
	die "port $MERIDIAN_TLS_PORT is busy (UDP, for HTTP/3): set BENCH_PORT_BASE"
fi

# ---- cleanup ---------------------------------------------------------------

TMP=$(mktemp -d /tmp/meridian-bench.XXXXXX)
CACHE_DIR=$(mktemp -d /dev/shm/meridian-bench-nginx.XXXXXX) # tmpfs
CACHE_DIR_SF=$(mktemp -d /dev/shm/meridian-bench-nginx-sf.XXXXXX)
STARTED=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_started # lib.sh
	rm -rf "$TMP" "$CACHE_DIR" "$CACHE_DIR_SF"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build and configure ---------------------------------------------------

if [ -n "${MERIDIAN_BIN:-}" ]; then # a binary built elsewhere
	cp "$MERIDIAN_BIN" "$TMP/meridian" || die "MERIDIAN_BIN=$MERIDIAN_BIN: cannot copy"
else
	log "building meridian"
	(cd "$ROOT" && go build -o "$TMP/meridian" ./cmd/meridian) || die "go build ./cmd/meridian failed"
fi
M="$TMP/meridian"
"$M" bench help >/dev/null 2>&1 || die "this meridian has no 'bench' command: cmd/meridian/main.go must dispatch \"bench\" to runBench"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=bench.test \
	-addext "subjectAltName=DNS:bench.test,DNS:localhost,IP:127.0.0.1" 2>/dev/null \
	|| die "openssl could not make a certificate"

mkdir -p "$TMP/nginx" "$TMP/nginx-sendfile" "$TMP/varnish"
subst() {
	sed -e "s#@TMP@#$TMP#g" \
		-e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
		-e "s#@MERIDIAN_PORT@#$MERIDIAN_PORT#g" -e "s#@MERIDIAN_TLS_PORT@#$MERIDIAN_TLS_PORT#g" \
		-e "s#@NGINX_PORT@#$NGINX_PORT#g" -e "s#@NGINX_TLS_PORT@#$NGINX_TLS_PORT#g" \
		-e "s#@FRONT@#${MERIDIAN_FRONT:-fast}#g" "$1"
}
subst "$HERE/edge.yaml" >"$TMP/edge.yaml"
# The memory rows' Meridian: the same config on ports of its own (see
# mem_edge below).
{
	sed -e "s#127.0.0.1:$MERIDIAN_PORT\$#127.0.0.1:$MEM_PORT#" -e "s#127.0.0.1:$MERIDIAN_TLS_PORT\$#127.0.0.1:$MEM_TLS_PORT#" "$TMP/edge.yaml"
	printf 'admin:\n  listen: 127.0.0.1:%s\n' "$MEM_ADMIN_PORT"
} >"$TMP/edge-mem.yaml"
grep -q "127.0.0.1:$MEM_PORT" "$TMP/edge-mem.yaml" || die "edge-mem.yaml: the listen address was not replaced"
"$M" validate "$TMP/edge-mem.yaml" >/dev/null || die "edge-mem.yaml does not validate"
# The same nginx config twice: "nginx" with sendfile off, the TLS listener
# and every scenario; "nginx-sendfile" with sendfile on, for the hit rows
# (see nginx.conf).
subst "$HERE/nginx.conf" | sed -e "s#@NGINX_DIR@#$TMP/nginx#g" -e "s#@CACHE_DIR@#$CACHE_DIR#g" \
	-e "s#@SENDFILE@#off#g" -e "s#@TLS@##g" >"$TMP/nginx.conf"
subst "$HERE/nginx.conf" | sed -e "s#@NGINX_DIR@#$TMP/nginx-sendfile#g" -e "s#@CACHE_DIR@#$CACHE_DIR_SF#g" \
	-e "s#@SENDFILE@#on#g" -e "s#@TLS@#\# #g" -e "s#listen 127.0.0.1:$NGINX_PORT;#listen 127.0.0.1:$NGINX_SF_PORT;#" >"$TMP/nginx-sendfile.conf"
subst "$HERE/varnish.vcl" >"$TMP/varnish.vcl"
"$M" validate "$TMP/edge.yaml" >/dev/null || die "edge.yaml does not validate"
nginx -t -q -c "$TMP/nginx.conf" -p "$TMP/nginx/" || die "nginx.conf does not validate"
nginx -t -q -c "$TMP/nginx-sendfile.conf" -p "$TMP/nginx-sendfile/" || die "nginx.conf (sendfile on) does not validate"

# ---- servers ---------------------------------------------------------------


HOST=bench.test
# QUIC wants large UDP socket buffers (quic-go asks for 7 MiB and warns
# when the kernel caps it); raise the caps for this run, as its docs advise.
if [ "$(id -u)" = 0 ] && command -v sysctl >/dev/null 2>&1; then
	sysctl -q -w net.core.rmem_max=7500000 net.core.wmem_max=7500000 2>/dev/null ||
		log "could not raise the UDP buffer caps; HTTP/3 numbers may suffer"
fi

log "starting the demo origin, meridian, nginx and varnish"
# The origin shares the load generator's core, so that the servers' core
# runs nothing but the server under test.
start origin $LOAD_CORE "$M" origin --listen "127.0.0.1:$ORIGIN_PORT"
ORIGIN_PID=$LAST_PID
ready origin $ORIGIN_PID "http://127.0.0.1:$ORIGIN_PORT/healthz"

start meridian $SERVER_CORE "$M" bench edge --config "$TMP/edge.yaml" --debug-listen "127.0.0.1:$DEBUG_PORT"
MERIDIAN_PID=$LAST_PID
start nginx $SERVER_CORE nginx -c "$TMP/nginx.conf" -p "$TMP/nginx/"
NGINX_PID=$LAST_PID
start nginx-sendfile $SERVER_CORE nginx -c "$TMP/nginx-sendfile.conf" -p "$TMP/nginx-sendfile/"
NGINX_SF_PID=$LAST_PID
# Varnish as its operators size it for one core (see README.md, "The
# anchors' settings"): one thread pool (pools are there to spread lock
# contention over CPUs), 300 threads kept ready (the 64 load connections
# and the 200 coalescing clients each hold a worker thread while their
# request is served), at most 1,000; bodies in malloc storage of 2 GiB.
start varnish $SERVER_CORE varnishd -F -j none -n "$TMP/varnish" -a "127.0.0.1:$VARNISH_PORT" -T none \
	-f "$TMP/varnish.vcl" -s malloc,2g -p thread_pools=1 -p thread_pool_min=300 -p thread_pool_max=1000
VARNISH_PID=$LAST_PID
# The all-miss row's calibration: the least a Go server does for a miss
# (the miss's I/O, the body kept in a map; bench.Floor), on the same core.
start go-floor $SERVER_CORE "$M" bench floor --listen "127.0.0.1:$FLOOR_PORT" --origin "127.0.0.1:$ORIGIN_PORT"
FLOOR_PID=$LAST_PID

declare -A PORT=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT [nginx-sendfile]=$NGINX_SF_PORT [go-floor]=$FLOOR_PORT)
declare -A TLS_PORT=([meridian]=$MERIDIAN_TLS_PORT [nginx]=$NGINX_TLS_PORT)
declare -A PID=([meridian]=$MERIDIAN_PID [nginx]=$NGINX_PID [varnish]=$VARNISH_PID [nginx-sendfile]=$NGINX_SF_PID [go-floor]=$FLOOR_PID)
SERVERS=(meridian nginx varnish)
HIT_SERVERS=(meridian nginx nginx-sendfile varnish) # the hit rows add nginx with sendfile on
CC='cc=max-age%3D3600' # every object: fresh for an hour in all three caches

for s in "${HIT_SERVERS[@]}"; do
	ready "$s" "${PID[$s]}" "http://127.0.0.1:${PORT[$s]}/warm?size=1024&$CC" -H "Host: $HOST"
done
ready meridian-tls "$MERIDIAN_PID" "https://127.0.0.1:$MERIDIAN_TLS_PORT/warm?size=1024&$CC" -k
ready nginx-tls "$NGINX_PID" "https://127.0.0.1:$NGINX_TLS_PORT/warm?size=1024&$CC" -k
ready go-floor "$FLOOR_PID" "http://127.0.0.1:$FLOOR_PORT/warm?size=1024&$CC" -H "Host: $HOST"

declare -A SIZE=([1k]=1024 [64k]=65536 [1m]=1048576)
hit_path() { echo "/hit/$1?size=${SIZE[$1]}&$CC"; }
for s in "${HIT_SERVERS[@]}"; do # fill the hit objects
	for k in 1k 64k 1m; do
		curl -fsS -o /dev/null -H "Host: $HOST" "http://127.0.0.1:${PORT[$s]}$(hit_path "$k")"
	done
done
for s in meridian nginx; do
	curl -fsSk -o /dev/null "https://127.0.0.1:${TLS_PORT[$s]}$(hit_path 1k)"
done

# ---- notes -----------------------------------------------------------------

SAMPLES="$TMP/samples.jsonl"
NOTES="$TMP/notes.txt"
{
	echo "Servers: meridian $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') ($(go version | awk '{print $3}')), $(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | head -1 | sed 's/ revision.*//; s/varnishd (//'); load: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), h2load $(h2load --version | awk '{print $NF}')."
	echo "Each server on core $SERVER_CORE alone (Go picks GOMAXPROCS=1 from the affinity; nginx runs 1 worker; Varnish 1 thread pool of 300 to 1,000 threads); wrk, h2load, the Go clients and the demo origin on core $LOAD_CORE."
	echo "$DUR s per throughput measurement, $REPS repetitions, $CONNS connections (wrk -t1, h2load -t1 -m1, or -m10 where a row says so); server order rotated every repetition."
	echo "Equivalent configs (deploy/bench/): TTL from the origin's Cache-Control max-age=3600 everywhere; nginx proxy_cache on tmpfs with proxy_cache_lock on, open_file_cache (10,000 files, revalidated every 60 s), sendfile off (nginx-sendfile: on; tcp_nopush off in both), keepalive to the origin, access_log off, keepalive_requests raised; Varnish malloc 2 GiB, built-in VCL, thread_pools=1, thread_pool_min=300, thread_pool_max=1000; Meridian 2 GiB store, access_log off."
	echo "Memory: each object is filled, then hit once, then the memory is read (a hit may add per-object state, as Meridian's hit stamp)."
	echo "CPU µs/req = the server processes' utime+stime (/proc/PID/stat, 10 ms ticks) over the run, divided by the requests."
	echo "The machine is shared with other engineers' builds and tests: numbers are noisy, which is why the servers are interleaved and medians reported."
} >"$NOTES"

# ---- measurements ----------------------------------------------------------

FAILED=0
# measure REP SCENARIO SERVER [--latency-log F] -- CMD...: one load run on the
# load core, with the server's CPU time. A failure is noted, not fatal.
measure() {
	local rep=$1 scenario=$2 server=$3
	shift 3
	if ! "$M" bench measure --rep "$rep" --scenario "$scenario" --server "$server" --out "$SAMPLES" \
		--pids "${PID[$server]}" "$@" 2>"$TMP/measure.err"; then
		FAILED=$((FAILED + 1))
		echo "FAILED: rep $rep $scenario $server: $(tail -3 "$TMP/measure.err" | tr '\n' ' ')" >>"$NOTES"
		log "FAILED $scenario $server (rep $rep): $(tail -3 "$TMP/measure.err")"
	fi
}

# note_failure REP SCENARIO SERVER: for the tools that append their own sample.
note_failure() {
	FAILED=$((FAILED + 1))
	echo "FAILED: rep $1 $2 $3: $(tail -3 "$TMP/tool.err" | tr '\n' ' ')" >>"$NOTES"
	log "FAILED $2 $3 (rep $1): $(tail -3 "$TMP/tool.err")"
}

# mem_edge REP starts the Meridian that the memory rows measure (MEM_PID):
# a fresh process each repetition, warmed by 1,000 fills of its own. The
# long-running one holds whatever the earlier rows stored (the all-miss
# row's hundreds of thousands of objects), and its store's index, a Go
# map, grows its tables in bursts (most of them at about the same
# count): 10,000 new objects on top of that measure the burst when they
# happen to cross it (about 300 B more per object in one repetition of
# two), not the cost of an object. On a fresh store the index grows from
# 1,000 to 11,000 entries during the measurement, which includes its
# growth as it comes; the warm-up fills make the process's one-time
# allocations (origin connections, buffers) before the first reading.
mem_edge() {
	start "meridian-mem-$1" $SERVER_CORE "$M" bench edge --config "$TMP/edge-mem.yaml" --debug-listen "127.0.0.1:$MEM_DEBUG_PORT"
	MEM_PID=$LAST_PID
	ready "meridian-mem-$1" "$MEM_PID" "http://127.0.0.1:$MEM_PORT/warm?size=1024&$CC" -H "Host: $HOST"
	taskset -c $LOAD_CORE "$M" bench memory --rep "$1" --scenario warm --server meridian --out "$TMP/mem-warm.jsonl" \
		--url "http://127.0.0.1:$MEM_PORT" --host "$HOST" --prefix "/mem/r$1-warm/" --objects 1000 --size 1024 \
		--pids "$MEM_PID" --debug-url "http://127.0.0.1:$MEM_DEBUG_PORT/debug/memstats" 2>"$TMP/tool.err" \
		|| die "the memory rows' meridian did not warm up: $(tail -3 "$TMP/tool.err")"
}

WRK=(taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${DUR}s -H "Host: $HOST" -s "$HERE/wrk/bench.lua")

for rep in $(seq "$REPS"); do
	# Rotate the order so that no server always runs first or last.
	order=()
	for i in 0 1 2; do order+=("${SERVERS[$(((i + rep - 1) % 3))]}"); done
	hit_order=()
	for i in 0 1 2 3; do hit_order+=("${HIT_SERVERS[$(((i + rep - 1) % 4))]}"); done
	log "repetition $rep/$REPS (order: ${order[*]})"

	for k in 1k 64k 1m; do
		for s in "${hit_order[@]}"; do
			measure "$rep" "hit-$k" "$s" -- "${WRK[@]}" "http://127.0.0.1:${PORT[$s]}$(hit_path "$k")"
		done
	done
	for s in "${order[@]}" go-floor; do
		BENCH_MISS_PREFIX="/miss/r$rep-$s/" BENCH_MISS_QUERY="size=1024&$CC" \
			measure "$rep" miss-1k "$s" -- "${WRK[@]}" "http://127.0.0.1:${PORT[$s]}/"
	done
	for sc in 1k:1 64k:1 1m:1 1k:10; do
		k=${sc%:*} streams=${sc#*:}
		name=h2-$k
		[ "$streams" = 1 ] || name=h2-$k-m$streams
		for s in "${order[@]}"; do
			[ -n "${TLS_PORT[$s]:-}" ] || continue # Varnish has no TLS
			rm -f "$TMP/h2.log"
			measure "$rep" "$name" "$s" --latency-log "$TMP/h2.log" -- taskset -c $LOAD_CORE \
				h2load -t1 -c$CONNS -m"$streams" -D "$DUR" --warm-up-time=1 --log-file="$TMP/h2.log" \
				"https://127.0.0.1:${TLS_PORT[$s]}$(hit_path "$k")"
		done
	done
	for proto in h1 h2 h3; do
		url="https://127.0.0.1:$MERIDIAN_TLS_PORT$(hit_path 1k)"
		[ $proto = h1 ] && url="http://127.0.0.1:$MERIDIAN_PORT$(hit_path 1k)"
		measure "$rep" "gen-$proto" meridian -- taskset -c $LOAD_CORE "$M" bench load --proto $proto \
			--url "$url" --host "$HOST" --conns $CONNS --duration "${DUR}s" --insecure
	done
	# The demo origin counts 100,000 keys at most, and the misses above
	# used them up: clear its counts so that the coalesced key is counted.
	curl -fsS -o /dev/null -X POST "http://127.0.0.1:$ORIGIN_PORT/_stats/reset" || die "cannot reset the origin's counts"
	for s in "${order[@]}"; do
		base="http://127.0.0.1:${PORT[$s]}"
		taskset -c $LOAD_CORE "$M" bench coalesce --rep "$rep" --scenario coalesce --server "$s" --out "$SAMPLES" \
			--url "$base/coalesce/r$rep-$s?delay=50ms&$CC" --warm-url "$base$(hit_path 1k)" --host "$HOST" \
			--clients $CLIENTS --stats-url "http://127.0.0.1:$ORIGIN_PORT/_stats" 2>"$TMP/tool.err" \
			|| note_failure "$rep" coalesce "$s"
	done
	for s in "${order[@]}"; do
		extra=()
		port=${PORT[$s]} pid=${PID[$s]}
		[ "$s" = nginx ] && extra=(--dir "$CACHE_DIR")
		if [ "$s" = meridian ]; then
			mem_edge "$rep"
			port=$MEM_PORT pid=$MEM_PID
			extra=(--debug-url "http://127.0.0.1:$MEM_DEBUG_PORT/debug/memstats")
		fi
		for k in 1k 64k; do
			n=$MEM_1K
			[ $k = 64k ] && n=$MEM_64K
			taskset -c $LOAD_CORE "$M" bench memory --rep "$rep" --scenario "mem-$k" --server "$s" --out "$SAMPLES" \
				--url "http://127.0.0.1:$port" --host "$HOST" --prefix "/mem/r$rep-$k/" \
				--objects "$n" --size "${SIZE[$k]}" --pids "$pid" "${extra[@]}" 2>"$TMP/tool.err" \
				|| note_failure "$rep" "mem-$k" "$s"
		done
		if [ "$s" = meridian ]; then
			kill -TERM "$MEM_PID"
			wait "$MEM_PID" 2>/dev/null || true
		fi
	done
done

mkdir -p "$OUT"
if [ $PROFILE = 1 ]; then
	log "profiling meridian: 1 KiB hits under wrk for 10 s"
	curl -fsS -o "$OUT/cpu-hit-1k.pprof" "http://127.0.0.1:$DEBUG_PORT/debug/pprof/profile?seconds=10" &
	prof=$!
	sleep 0.5
	taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d11s -H "Host: $HOST" "http://127.0.0.1:$MERIDIAN_PORT$(hit_path 1k)" >/dev/null
	wait $prof || die "could not fetch the CPU profile"
	go tool pprof -top -nodecount=40 "$TMP/meridian" "$OUT/cpu-hit-1k.pprof" >"$OUT/cpu-hit-1k.top.txt" 2>/dev/null || true
	log "profile: $OUT/cpu-hit-1k.pprof (top: $OUT/cpu-hit-1k.top.txt)"
fi

# ---- report ----------------------------------------------------------------

"$M" bench report --in "$SAMPLES" --notes "$NOTES" --md "$OUT/$NAME.md" --json "$OUT/$NAME.json"
log "wrote $OUT/$NAME.md and $OUT/$NAME.json"
cat "$OUT/$NAME.md"
[ $FAILED = 0 ] || die "$FAILED measurements failed (see the notes in $OUT/$NAME.md)"
