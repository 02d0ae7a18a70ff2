#!/usr/bin/env bash
# Disk-tier hits side by side: Meridian's disk tier (cache.disk, a memory
# tier too small for the objects) against nginx's proxy_cache on the same
# ext4 file system, sendfile off and on, the page cache warm for both.
# See README.md in this folder, "Disk-tier hits: disk.sh".
#
#   deploy/bench/disk.sh            5 s per measurement, 3 repetitions
#   deploy/bench/disk.sh --quick    1 s per measurement
#
# Needs root (apt-get, taskset) and two cores, as run.sh. Every process it
# starts is stopped when it exits, however it exits.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh" # start, ready, stop_started

DUR=5
REPS=3
CONNS=64
OUT="$HERE/results"
NAME=disk
INSTALL=1
PROFILE=0
BASE=${BENCH_PORT_BASE:-18700}
SERVER_CORE=0
LOAD_CORE=1

usage() {
	cat <<EOF
usage: $0 [--quick] [--reps N] [--duration SECONDS] [--profile] [--no-install] [--out DIR]

  --quick        1 s per measurement (results/disk-quick.*)
  --reps N       repetitions (default $REPS)
  --duration S   seconds per measurement (default $DUR)
  --profile      also take a CPU profile of Meridian serving each size from disk
  --no-install   do not apt-get install missing tools
  --out DIR      where disk.md and disk.json go (default deploy/bench/results)

MERIDIAN_BIN=FILE uses that binary instead of building ./cmd/meridian;
MERIDIAN_B_BIN=FILE adds a second Meridian, "meridian-b", from that binary
(same config, its own disk tier), interleaved with the others: a change's
before and after in one run.
MERIDIAN_FRONT=nethttp measures the net/http HTTP/1.1 front.
Ports: 127.0.0.1:BASE+{0,80,81,83,84,90,91,92}; BASE=\$BENCH_PORT_BASE (default 18700).
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) DUR=1; NAME=disk-quick ;;
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

die() { echo "disk bench: $*" >&2; exit 1; }
log() { echo "disk bench: $(date +%T) $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and pins processes to cores"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores, have $(nproc)"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps: want a positive number, got $REPS"
[[ "$DUR" =~ ^[1-9][0-9]*$ ]] || die "--duration: want whole seconds, got $DUR"
command -v go >/dev/null || die "go is not installed (needed to build meridian)"

declare -A PKG=([nginx]=nginx [wrk]=wrk [taskset]=util-linux [openssl]=openssl [ss]=iproute2 [curl]=curl [jq]=jq)
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
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl disable --now nginx >/dev/null 2>&1 || true
elif command -v service >/dev/null; then
	service nginx stop >/dev/null 2>&1 || true
fi

ORIGIN_PORT=$BASE
MERIDIAN_PORT=$((BASE + 80))
NGINX_PORT=$((BASE + 81))
NGINX_SF_PORT=$((BASE + 83))
MERIDIAN_B_PORT=$((BASE + 84))
DEBUG_PORT=$((BASE + 90))
ADMIN_PORT=$((BASE + 91))
ADMIN_B_PORT=$((BASE + 92))
for p in $ORIGIN_PORT $MERIDIAN_PORT $NGINX_PORT $NGINX_SF_PORT $MERIDIAN_B_PORT $DEBUG_PORT $ADMIN_PORT $ADMIN_B_PORT; do
	if [ -n "$(ss -Hltn "sport = :$p")" ]; then
		die "port $p is busy (TCP): stop what listens there ($(ss -Hltnp "sport = :$p" | awk '{print $NF}' | head -1)) or set BENCH_PORT_BASE"
	fi
done

# Every cache under /tmp's file system (ext4 here), not tmpfs: this is the
# disk tier's benchmark. The page cache holds the files once written.
TMP=$(mktemp -d /tmp/meridian-bench-disk.XXXXXX)
chmod 755 "$TMP" # nginx's workers (nobody) write their cache under it
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
	cp "$MERIDIAN_BIN" "$TMP/meridian" || die "MERIDIAN_BIN=$MERIDIAN_BIN: cannot copy"
else
	log "building meridian"
	(cd "$ROOT" && go build -o "$TMP/meridian" ./cmd/meridian) || die "go build ./cmd/meridian failed"
fi
M="$TMP/meridian"
if [ -n "${MERIDIAN_B_BIN:-}" ]; then
	cp "$MERIDIAN_B_BIN" "$TMP/meridian-b" || die "MERIDIAN_B_BIN=$MERIDIAN_B_BIN: cannot copy"
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=bench.test 2>/dev/null \
	|| die "openssl could not make a certificate" # nginx.conf names one; nothing listens with TLS here

mkdir -p "$TMP/nginx" "$TMP/nginx-sendfile" "$TMP/nginx-cache" "$TMP/nginx-sendfile-cache"
subst() {
	sed -e "s#@TMP@#$TMP#g" -e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
		-e "s#@MERIDIAN_PORT@#$MERIDIAN_PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" \
		-e "s#@FRONT@#${MERIDIAN_FRONT:-fast}#g" "$1"
}
subst "$HERE/edge-disk.yaml" >"$TMP/edge.yaml"
sed -e "s#127.0.0.1:$MERIDIAN_PORT#127.0.0.1:$MERIDIAN_B_PORT#" -e "s#127.0.0.1:$ADMIN_PORT#127.0.0.1:$ADMIN_B_PORT#" \
	-e "s#$TMP/meridian-disk#$TMP/meridian-b-disk#" "$TMP/edge.yaml" >"$TMP/edge-b.yaml"
# run.sh's nginx.conf (every knob of "The anchors' settings"), with its
# cache on ext4 instead of tmpfs, no TLS listener, twice: sendfile off
# and on.
for v in nginx nginx-sendfile; do
	sf=off port=$NGINX_PORT
	[ $v = nginx-sendfile ] && sf=on port=$NGINX_SF_PORT
	subst "$HERE/nginx.conf" | sed -e "s#@NGINX_DIR@#$TMP/$v#g" -e "s#@CACHE_DIR@#$TMP/$v-cache#g" \
		-e "s#@SENDFILE@#$sf#g" -e "s#@TLS@#\# #g" -e "s#@NGINX_PORT@#$port#g" >"$TMP/$v.conf"
	nginx -t -q -c "$TMP/$v.conf" -p "$TMP/$v/" || die "$v.conf does not validate"
done
"$M" validate "$TMP/edge.yaml" >/dev/null || die "edge-disk.yaml does not validate"


HOST=bench.test
CC='cc=max-age%3D3600'
log "starting the demo origin, meridian and the two nginx"
start origin $LOAD_CORE "$M" origin --listen "127.0.0.1:$ORIGIN_PORT"
ORIGIN_PID=$LAST_PID
ready origin $ORIGIN_PID "http://127.0.0.1:$ORIGIN_PORT/healthz"
start meridian $SERVER_CORE "$M" bench edge --config "$TMP/edge.yaml" --debug-listen "127.0.0.1:$DEBUG_PORT"
MERIDIAN_PID=$LAST_PID
start nginx $SERVER_CORE nginx -c "$TMP/nginx.conf" -p "$TMP/nginx/"
NGINX_PID=$LAST_PID
start nginx-sendfile $SERVER_CORE nginx -c "$TMP/nginx-sendfile.conf" -p "$TMP/nginx-sendfile/"
NGINX_SF_PID=$LAST_PID

declare -A PORT=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT [nginx-sendfile]=$NGINX_SF_PORT [meridian-b]=$MERIDIAN_B_PORT)
declare -A PID=([meridian]=$MERIDIAN_PID [nginx]=$NGINX_PID [nginx-sendfile]=$NGINX_SF_PID)
declare -A ADMIN=([meridian]=$ADMIN_PORT [meridian-b]=$ADMIN_B_PORT)
SERVERS=(meridian nginx nginx-sendfile)
if [ -n "${MERIDIAN_B_BIN:-}" ]; then
	start meridian-b $SERVER_CORE "$TMP/meridian-b" edge --config "$TMP/edge-b.yaml"
	PID[meridian-b]=$LAST_PID
	SERVERS+=(meridian-b)
fi
MERIDIANS=(meridian)
[ -n "${MERIDIAN_B_BIN:-}" ] && MERIDIANS+=(meridian-b)
for s in "${SERVERS[@]}"; do
	ready "$s" "${PID[$s]}" "http://127.0.0.1:${PORT[$s]}/warm?size=1024&$CC" -H "Host: $HOST"
done

declare -A SIZE=([64k]=65536 [1m]=1048576)
SIZES=(64k 1m)
disk_path() { echo "/disk/$1?size=${SIZE[$1]}&$CC"; }

# disk_hits SERVER: a Meridian's meridian_edge_disk_hits_total, summed over labels.
disk_hits() {
	curl -fsS "http://127.0.0.1:${ADMIN[$1]}/metrics" |
		awk '/^meridian_edge_disk_hits_total/ {n += $NF} END {printf "%d\n", n}'
}

# Fill the objects under test everywhere, then push Meridian's out of its
# 4 MiB memory tier with 8 MiB of others.
for s in "${SERVERS[@]}"; do
	for k in "${SIZES[@]}"; do
		curl -fsS -o /dev/null -H "Host: $HOST" "http://127.0.0.1:${PORT[$s]}$(disk_path "$k")"
	done
done
for s in "${MERIDIANS[@]}"; do
	for i in $(seq 8); do
		curl -fsS -o /dev/null -H "Host: $HOST" "http://127.0.0.1:${PORT[$s]}/evict/$i?size=1048576&$CC"
	done
done
# Each object once more everywhere (the page cache holds what was just
# written; this reads it once more), and check where Meridian's came from.
for k in "${SIZES[@]}"; do
	for s in "${SERVERS[@]}"; do
		[ -z "${ADMIN[$s]:-}" ] || before=$(disk_hits "$s")
		status=$(curl -fsS -o /dev/null -D - -H "Host: $HOST" "http://127.0.0.1:${PORT[$s]}$(disk_path "$k")" |
			tr -d '\r' | grep -i -E '^(x-cache-status|cache-status):' || true)
		if [ -n "${ADMIN[$s]:-}" ]; then
			[ "$(disk_hits "$s")" -gt "$before" ] || die "$s did not serve $k from its disk tier ($status)"
		else
			echo "$status" | grep -q HIT || die "$s did not serve $k from its cache ($status)"
		fi
	done
done
log "meridian's disk tier: $(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^meridian_edge_disk_(objects|bytes)' | tr '\n' ' ')"

SAMPLES="$TMP/samples.jsonl"
NOTES="$TMP/notes.txt"
{
	echo "Disk-tier hits (disk.sh): meridian $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') ($(go version | awk '{print $3}'), front ${MERIDIAN_FRONT:-fast}), $(nginx -v 2>&1 | sed 's/.*: //'); load: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')."
	echo "Each server on core $SERVER_CORE alone, wrk and the demo origin on core $LOAD_CORE; $DUR s per measurement, $REPS repetitions, $CONNS connections (wrk -t1), one object per row; server order rotated every repetition."
	echo "Meridian: 4 MiB memory tier, cache.disk of 2 GiB under $TMP (ext4); the objects were pushed out of memory before the runs, and every run's disk hits (meridian_edge_disk_hits_total) are checked against its requests. nginx: run.sh's nginx.conf (open_file_cache, keepalive_requests raised, access_log off) with proxy_cache_path on the same ext4 file system; nginx: sendfile off, nginx-sendfile: sendfile on (tcp_nopush off in both). Page cache warm for both."
	[ -z "${MERIDIAN_B_BIN:-}" ] || echo "meridian-b: the same config from another binary ($MERIDIAN_B_BIN, $(sha256sum <"$MERIDIAN_B_BIN" | cut -c1-12))."
	echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
} >"$NOTES"

FAILED=0
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

WRK=(taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d${DUR}s -H "Host: $HOST" -s "$HERE/wrk/bench.lua")
for rep in $(seq "$REPS"); do
	order=()
	for i in "${!SERVERS[@]}"; do order+=("${SERVERS[$(((i + rep - 1) % ${#SERVERS[@]}))]}"); done
	log "repetition $rep/$REPS (order: ${order[*]}; load average $(cut -d' ' -f1 /proc/loadavg))"
	for k in "${SIZES[@]}"; do
		for s in "${order[@]}"; do
			[ -z "${ADMIN[$s]:-}" ] || before=$(disk_hits "$s")
			measure "$rep" "disk-$k" "$s" -- "${WRK[@]}" "http://127.0.0.1:${PORT[$s]}$(disk_path "$k")"
			if [ -n "${ADMIN[$s]:-}" ]; then
				hits=$(($(disk_hits "$s") - before))
				reqs=$(tail -1 "$SAMPLES" | jq -r '.requests // 0')
				echo "rep $rep disk-$k: $s's disk hits $hits for $reqs requests (load average $(cut -d' ' -f1 /proc/loadavg))" >>"$NOTES"
				# Every request a disk hit (a few more hits than wrk counts:
				# those in flight when it stopped).
				if [ "$hits" -lt "$reqs" ]; then
					FAILED=$((FAILED + 1))
					echo "FAILED: rep $rep disk-$k: only $hits of $reqs requests were disk hits" >>"$NOTES"
				fi
			fi
		done
	done
done

mkdir -p "$OUT"
if [ $PROFILE = 1 ]; then
	for k in "${SIZES[@]}"; do
		log "profiling meridian: $k disk hits under wrk for 10 s"
		curl -fsS -o "$OUT/cpu-disk-$k.pprof" "http://127.0.0.1:$DEBUG_PORT/debug/pprof/profile?seconds=10" &
		prof=$!
		sleep 0.5
		taskset -c $LOAD_CORE wrk -t1 -c$CONNS -d11s -H "Host: $HOST" "http://127.0.0.1:$MERIDIAN_PORT$(disk_path "$k")" >/dev/null
		wait $prof || die "could not fetch the CPU profile"
		go tool pprof -top -nodecount=40 "$M" "$OUT/cpu-disk-$k.pprof" >"$OUT/cpu-disk-$k.top.txt" 2>/dev/null || true
	done
fi

echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$NOTES"
"$M" bench report --in "$SAMPLES" --notes "$NOTES" --md "$OUT/$NAME.md" --json "$OUT/$NAME.json"
# The repetitions one by one, beside the medians: the spread.
{
	echo
	echo "## Every repetition"
	echo
	echo "| scenario | server | rep | req/s | CPU µs/req | × nginx req/s | × nginx CPU | × nginx-sendfile req/s | × nginx-sendfile CPU |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|--:|"
	jq -rs '
		(map({key: "\(.scenario) \(.rep) \(.server)", value: .}) | from_entries) as $by
		| sort_by(.scenario, .server, .rep)[]
		| . as $s
		| ($by["\(.scenario) \(.rep) nginx"]) as $n
		| ($by["\(.scenario) \(.rep) nginx-sendfile"]) as $f
		| def r(a; b): if (b // 0) == 0 or (a // 0) == 0 then "–" else ((a / b * 100 | round) / 100 | tostring) end;
		"| \(.scenario) | \(.server) | \(.rep) | \((.rps // 0) | round) | \((.cpu_us_per_req // 0) * 10 | round / 10) | \(r(.rps; $n.rps)) | \(r(.cpu_us_per_req; $n.cpu_us_per_req)) | \(r(.rps; $f.rps)) | \(r(.cpu_us_per_req; $f.cpu_us_per_req)) |"
	' "$SAMPLES"
} >>"$OUT/$NAME.md"
log "wrote $OUT/$NAME.md and $OUT/$NAME.json"
cat "$OUT/$NAME.md"
[ $FAILED = 0 ] || die "$FAILED measurements failed (see the notes in $OUT/$NAME.md)"
