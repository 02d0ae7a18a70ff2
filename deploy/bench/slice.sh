#!/usr/bin/env bash
# Origin bytes / client bytes for a sliced large object: Meridian
# (site.slice_bytes) against nginx's slice module (slice + proxy_cache),
# both with 1 MiB slices, in front of one Range-capable origin (nginx
# serving a static file, one port and one access log per cache, so that
# each cache's origin bytes are counted apart). The same client workload
# for both: clients at once, each asking for random ranges, the whole
# object, random ranges again.
# Every answer is checked byte for byte against the file. See README.md
# in this folder, "Sliced large objects: slice.sh".
#
#   deploy/bench/slice.sh                  a 64 MiB object, 4 clients, 100 + 100 ranges each
#   deploy/bench/slice.sh --size-mib 200   a larger one
#
# Needs nginx (with its slice module, as Debian's), curl and Go; no root
# unless nginx must be installed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh" # start, ready, stop_started
SIZE_MIB=64
RANGES=100
CLIENTS=4
SLICE=1048576
OUT="$HERE/results"
BASE=${BENCH_PORT_BASE:-18800}

while [ $# -gt 0 ]; do
	case "$1" in
	--size-mib) SIZE_MIB=${2:?}; shift ;;
	--ranges) RANGES=${2:?}; shift ;;
	--clients) CLIENTS=${2:?}; shift ;;
	--out) OUT=${2:?}; shift ;;
	-h|--help) sed -n 2,16p "$0"; exit 0 ;;
	*) echo "slice bench: unknown flag $1" >&2; exit 2 ;;
	esac
	shift
done
die() { echo "slice bench: $*" >&2; exit 1; }
log() { echo "slice bench: $(date +%T) $*" >&2; }
command -v nginx >/dev/null || die "needs nginx (apt-get install nginx)"
nginx -V 2>&1 | grep -q with-http_slice_module || die "this nginx has no slice module"

ORIGIN_M=$((BASE + 1)) # the origin as Meridian sees it
ORIGIN_N=$((BASE + 2)) # the same origin as nginx sees it
MERIDIAN_PORT=$((BASE + 80))
NGINX_PORT=$((BASE + 81))
for p in $ORIGIN_M $ORIGIN_N $MERIDIAN_PORT $NGINX_PORT; do
	[ -z "$(ss -Hltn "sport = :$p")" ] || die "port $p is busy: set BENCH_PORT_BASE"
done

TMP=$(mktemp -d /tmp/meridian-bench-slice.XXXXXX)
chmod 755 "$TMP" # nginx's workers (nobody) read and write under it
STARTED=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_started # lib.sh
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${MERIDIAN_BIN:-}" ]; then
	cp "$MERIDIAN_BIN" "$TMP/meridian"
else
	log "building meridian"
	(cd "$ROOT" && go build -o "$TMP/meridian" ./cmd/meridian) || die "go build failed"
fi
M="$TMP/meridian"

mkdir -p "$TMP/www" "$TMP/origin" "$TMP/nginx" "$TMP/nginx-cache"
SIZE=$((SIZE_MIB << 20))
head -c "$SIZE" /dev/urandom >"$TMP/www/object.bin"
touch -d '2026-01-01 00:00:00 UTC' "$TMP/www/object.bin"

# The origin: nginx serving the file (Range, ETag, Last-Modified), one
# server per cache, each logging the body bytes it sent.
cat >"$TMP/origin.conf" <<EOF
worker_processes 1;
pid $TMP/origin/nginx.pid;
error_log $TMP/origin/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    log_format bytes '\$body_bytes_sent \$status "\$http_range"';
    client_body_temp_path $TMP/origin/cb; proxy_temp_path $TMP/origin/p;
    fastcgi_temp_path $TMP/origin/f; uwsgi_temp_path $TMP/origin/u; scgi_temp_path $TMP/origin/s;
    sendfile on;
    server { listen 127.0.0.1:$ORIGIN_M; root $TMP/www; expires 1h; access_log $TMP/origin/meridian.log bytes; }
    server { listen 127.0.0.1:$ORIGIN_N; root $TMP/www; expires 1h; access_log $TMP/origin/nginx.log bytes; }
}
EOF
# nginx's slice module as its documentation sets it up: the slice's range
# in the cache key and in the upstream request, 200 and 206 cached.
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/cb; proxy_temp_path $TMP/nginx/p;
    fastcgi_temp_path $TMP/nginx/f; uwsgi_temp_path $TMP/nginx/u; scgi_temp_path $TMP/nginx/s;
    proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=slice:16m max_size=2g inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN_N; keepalive 16; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            slice $SLICE;
            proxy_cache slice;
            proxy_cache_key \$uri\$is_args\$args\$slice_range;
            proxy_set_header Range \$slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://origin;
        }
    }
}
EOF
cat >"$TMP/edge.yaml" <<EOF
name: bench-slice
listen: 127.0.0.1:$MERIDIAN_PORT
access_log: off
admin:
  listen: 127.0.0.1:$((BASE + 91))
cache:
  max_bytes: 536870912          # 512 MiB: the object's slices fit in memory, as in nginx's cache
sites:
  - hosts: [127.0.0.1, localhost, slice.test]
    origin: http://127.0.0.1:$ORIGIN_M
    slice_bytes: $SLICE
EOF
"$M" validate "$TMP/edge.yaml" >/dev/null || die "edge config does not validate"
nginx -t -q -c "$TMP/origin.conf" -p "$TMP/origin/" || die "origin.conf does not validate"
nginx -t -q -c "$TMP/nginx.conf" -p "$TMP/nginx/" || die "nginx.conf does not validate"

nginx -c "$TMP/origin.conf" -p "$TMP/origin/" >"$TMP/origin.out" 2>&1 &
STARTED+=($!)
nginx -c "$TMP/nginx.conf" -p "$TMP/nginx/" >"$TMP/nginx.out" 2>&1 &
STARTED+=($!)
"$M" edge --config "$TMP/edge.yaml" >"$TMP/meridian.out" 2>&1 &
STARTED+=($!)
for url in "http://127.0.0.1:$ORIGIN_M/object.bin" "http://127.0.0.1:$NGINX_PORT/" "http://127.0.0.1:$MERIDIAN_PORT/"; do
	for _ in $(seq 150); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 "$url" 2>/dev/null || true)
		[ "$code" != 000 ] && break
		sleep 0.1
	done
done
: >"$TMP/origin/meridian.log"
: >"$TMP/origin/nginx.log"

# The workload, the same lists of requests for both: CLIENTS clients at
# once, each with its own list: RANGES random ranges of 1 byte to 1.5
# slices, the whole object, RANGES more ranges. The clients overlap, so
# that concurrent requests for one slice must be coalesced.
for c in $(seq "$CLIENTS"); do
	RANDOM=$((17 + c))
	{
		for _ in $(seq "$RANGES"); do echo "range $(((RANDOM << 15 | RANDOM) % SIZE)) $((1 + (RANDOM << 15 | RANDOM) % (SLICE + SLICE / 2)))"; done
		echo whole
		for _ in $(seq "$RANGES"); do echo "range $(((RANDOM << 15 | RANDOM) % SIZE)) $((1 + (RANDOM << 15 | RANDOM) % (SLICE + SLICE / 2)))"; done
	} >"$TMP/workload.$c"
done
WANT_SUM=$(sha256sum <"$TMP/www/object.bin" | cut -d' ' -f1)

# client SERVER PORT C: plays client C's workload, checks every answer,
# prints the client body bytes.
client() {
	local server=$1 port=$2 c=$3 total=0 kind off n last got want part="$TMP/part.$3"
	while read -r kind off n; do
		if [ "$kind" = whole ]; then
			curl -fsS -o "$part" "http://127.0.0.1:$port/object.bin" || die "$server: the whole object failed"
			got=$(sha256sum <"$part" | cut -d' ' -f1)
			[ "$got" = "$WANT_SUM" ] || die "$server: the whole object differs from the origin's"
			total=$((total + $(stat -c %s "$part")))
			continue
		fi
		last=$((off + n - 1))
		[ $last -lt $SIZE ] || last=$((SIZE - 1))
		curl -fsS -r "$off-$last" -o "$part" "http://127.0.0.1:$port/object.bin" || die "$server: range $off-$last failed"
		want=$((last - off + 1))
		[ "$(stat -c %s "$part")" = $want ] || die "$server: range $off-$last: $(stat -c %s "$part") bytes, want $want"
		cmp -s -i "$off:0" -n $want "$TMP/www/object.bin" "$part" || die "$server: range $off-$last differs from the origin's bytes"
		total=$((total + want))
	done <"$TMP/workload.$c"
	echo $total >"$TMP/client-bytes.$server.$c"
}

# run SERVER PORT: the clients at once; prints their body bytes.
run() {
	local pids=() c total=0
	for c in $(seq "$CLIENTS"); do
		client "$1" "$2" "$c" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || die "$1: a client failed"; done
	for c in $(seq "$CLIENTS"); do total=$((total + $(cat "$TMP/client-bytes.$1.$c"))); done
	echo $total
}

log "Meridian: $CLIENTS clients at once, $(cat "$TMP"/workload.* | wc -l) requests"
CLIENT_M=$(run meridian $MERIDIAN_PORT)
log "nginx: the same requests"
CLIENT_N=$(run nginx $NGINX_PORT)
sleep 2 # slices read in part are filled to their end in the background by both; let the logs settle
ORIGIN_BYTES_M=$(awk '{n += $1} END {printf "%d", n}' "$TMP/origin/meridian.log")
ORIGIN_BYTES_N=$(awk '{n += $1} END {printf "%d", n}' "$TMP/origin/nginx.log")
REQS_M=$(wc -l <"$TMP/origin/meridian.log")
REQS_N=$(wc -l <"$TMP/origin/nginx.log")
SLICES=$(((SIZE + SLICE - 1) / SLICE))

mkdir -p "$OUT"
{
	echo "# Sliced large object: origin bytes per client byte"
	echo
	echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), meridian $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nginx -v 2>&1 | sed 's/.*: //'). One ${SIZE_MIB} MiB object ($SLICES slices of $((SLICE >> 20)) MiB), served by a static nginx origin; the workload: $CLIENTS clients at once, each asking for $RANGES random ranges (1 byte to 1.5 slices), the whole object, $RANGES more ranges (its own list, the same for both servers), every answer checked byte for byte against the file. Load average $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| server | client bytes | origin requests | origin bytes | origin bytes / object size | origin bytes / client bytes |"
	echo "|---|--:|--:|--:|--:|--:|"
	for s in meridian nginx; do
		if [ $s = meridian ]; then c=$CLIENT_M o=$ORIGIN_BYTES_M r=$REQS_M; else c=$CLIENT_N o=$ORIGIN_BYTES_N r=$REQS_N; fi
		echo "| $s | $c | $r | $o | $(awk -v o="$o" -v s="$SIZE" 'BEGIN {printf "%.4f", o / s}') | $(awk -v o="$o" -v c="$c" 'BEGIN {printf "%.4f", o / c}') |"
	done
	echo
	echo "Origin requests by Range, Meridian: $(awk '{print $3}' "$TMP/origin/meridian.log" | sort | uniq -c | awk '$1 > 1' | wc -l) ranges asked more than once; nginx: $(awk '{print $3}' "$TMP/origin/nginx.log" | sort | uniq -c | awk '$1 > 1' | wc -l)."
} >"$OUT/slice.md"
cat "$OUT/slice.md"
