#!/usr/bin/env bash
# Issue 13's attacks against Meridian on this machine's loopback: for each
# attack, a fresh `meridian edge` with a small memory budget in front of a
# fresh demo origin, a cached object that a legitimate client asks for
# every 10 ms during the attack, and `meridian bench attack` to send it and
# measure. Writes results/attack.md. See README.md in this folder.
#
#   deploy/bench/attack.sh                       every attack, 10 s each
#   deploy/bench/attack.sh --kinds h2-reset --rate 2000 --duration 5
#
# No root needed. Every process it starts is stopped when it exits,
# however it exits.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh" # start, ready, stop_started

KINDS="h1-close h2-reset h3-cancel unique-keys slow-misses"
DUR=10                       # seconds per attack
RATE=""                      # requests/s for every attack (default: per attack, below)
MAX_BYTES=$((64 << 20))      # cache.max_bytes
MAX_INFLIGHT=$((16 << 20))   # cache.max_inflight_bytes
ORIGIN_CAP_RPS=50            # origin requests/s the edge's caps should hold an attack to (the verdict's)
KILL_ABOVE=$((2 << 30))      # kill an edge whose RSS passes this: the machine is shared
EDGE_CONFIG=""               # a template instead of the built-in config
OUT="$HERE/results/attack.md"
PIN=1
BASE=${BENCH_PORT_BASE:-18600}

# Default rates: what two shared cores can generate while the edge and the
# origin run, and enough to have hurt the edge of issue 13.
declare -A KIND_RATE=([h1-close]=300 [h2-reset]=1000 [h3-cancel]=300 [unique-keys]=100 [slow-misses]=200)

usage() {
	cat <<EOF
usage: $0 [--kinds "K ..."] [--rate R] [--duration S] [--max-bytes N] [--max-inflight-bytes N]
          [--origin-cap-rps R] [--kill-above N] [--edge-config FILE] [--out FILE] [--no-pin]

  --kinds K...           attacks to run (default: $KINDS)
  --rate R               requests/s of every attack (default per attack: h1-close ${KIND_RATE[h1-close]},
                         h2-reset ${KIND_RATE[h2-reset]}, h3-cancel ${KIND_RATE[h3-cancel]}, unique-keys ${KIND_RATE[unique-keys]}, slow-misses ${KIND_RATE[slow-misses]})
  --duration S           seconds per attack (default $DUR)
  --max-bytes N          the edge's cache.max_bytes (default $MAX_BYTES, 64 MiB)
  --max-inflight-bytes N the edge's cache.max_inflight_bytes (default $MAX_INFLIGHT, 16 MiB);
                         the budget is max-bytes + max-inflight-bytes + 64 MiB
  --origin-cap-rps R     origin requests per second the edge's caps should allow (default $ORIGIN_CAP_RPS):
                         the verdict wants origin requests <= R x duration
  --kill-above N         kill an edge whose RSS passes N bytes (default $KILL_ABOVE, 2 GiB)
  --edge-config FILE     edge config template instead of the built-in one; it may use
                         @EDGE_PORT@ @TLS_PORT@ @ADMIN_PORT@ @ORIGIN_PORT@ @TMP@ @MAX_BYTES@ @MAX_INFLIGHT@
                         @CLIENT_RPS@ (the built-in config's per-client rate limit: --origin-cap-rps)
  --out FILE             the table (default deploy/bench/results/attack.md)
  --no-pin               do not pin the edge to core 0 and the rest to core 1

MERIDIAN_BIN=FILE uses that binary instead of building ./cmd/meridian;
MERIDIAN_EDGE_BIN=FILE runs the edge and the origin from that one (an older
commit, say) and the attacks from the other.
Ports: 127.0.0.1:BASE+{0,80,90,443} (443 also UDP); BASE=\$BENCH_PORT_BASE (default 18600).
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--kinds) KINDS=${2:?--kinds needs a list}; shift ;;
	--rate) RATE=${2:?--rate needs a number}; shift ;;
	--duration) DUR=${2:?--duration needs seconds}; shift ;;
	--max-bytes) MAX_BYTES=${2:?--max-bytes needs bytes}; shift ;;
	--max-inflight-bytes) MAX_INFLIGHT=${2:?--max-inflight-bytes needs bytes}; shift ;;
	--origin-cap-rps) ORIGIN_CAP_RPS=${2:?--origin-cap-rps needs a number}; shift ;;
	--kill-above) KILL_ABOVE=${2:?--kill-above needs bytes}; shift ;;
	--edge-config) EDGE_CONFIG=${2:?--edge-config needs a file}; shift ;;
	--out) OUT=${2:?--out needs a file}; shift ;;
	--no-pin) PIN=0 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

die() { echo "attack: $*" >&2; exit 1; }
log() { echo "attack: $(date +%T) $*" >&2; }

[[ "$DUR" =~ ^[1-9][0-9]*$ ]] || die "--duration: want whole seconds, got $DUR"
[ -z "$RATE" ] || [[ "$RATE" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--rate: want a number, got $RATE"
[[ "$MAX_BYTES" =~ ^[1-9][0-9]*$ ]] || die "--max-bytes: want bytes, got $MAX_BYTES"
[[ "$MAX_INFLIGHT" =~ ^[1-9][0-9]*$ ]] || die "--max-inflight-bytes: want bytes, got $MAX_INFLIGHT"
[[ "$ORIGIN_CAP_RPS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--origin-cap-rps: want a number, got $ORIGIN_CAP_RPS"
[[ "$KILL_ABOVE" =~ ^[0-9]+$ ]] || die "--kill-above: want bytes, got $KILL_ABOVE"
for k in $KINDS; do
	[ -n "${KIND_RATE[$k]:-}" ] || die "--kinds: unknown attack $k (want: ${!KIND_RATE[*]})"
done
[ -z "$EDGE_CONFIG" ] || [ -r "$EDGE_CONFIG" ] || die "--edge-config: cannot read $EDGE_CONFIG"
for c in curl openssl ss; do
	command -v $c >/dev/null 2>&1 || die "$c is not installed (Debian: apt-get install curl openssl iproute2)"
done
BUDGET=$((MAX_BYTES + MAX_INFLIGHT + (64 << 20)))

# ---- ports -----------------------------------------------------------------

ORIGIN_PORT=$BASE
EDGE_PORT=$((BASE + 80))
ADMIN_PORT=$((BASE + 90))
TLS_PORT=$((BASE + 443))
for p in $ORIGIN_PORT $EDGE_PORT $ADMIN_PORT $TLS_PORT; do
	if [ -n "$(ss -Hltn "sport = :$p")" ]; then
		die "port $p is busy (TCP): stop what listens there or set BENCH_PORT_BASE"
	fi
done
[ -z "$(ss -Hlun "sport = :$TLS_PORT")" ] || die "port $TLS_PORT is busy (UDP, for HTTP/3): set BENCH_PORT_BASE"

# ---- pinning ---------------------------------------------------------------

EDGE_CORE= LOAD_CORE= LOAD_PIN=()
if [ $PIN = 1 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
	EDGE_CORE=0 # Go then picks GOMAXPROCS=1
	LOAD_CORE=1 LOAD_PIN=(taskset -c 1)
	PINNING="the edge pinned to core 0 (GOMAXPROCS=1 from the affinity); the demo origin and the attack tool to core 1 (taskset)"
else
	PINNING="no pinning: the edge, the origin and the attack tool share all $(nproc) cores"
fi

# ---- cleanup ---------------------------------------------------------------

TMP=$(mktemp -d /tmp/meridian-attack.XXXXXX)
STARTED=()
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${STARTED[@]}"; do
		stop_pid "$pid"
	done
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build and configure ---------------------------------------------------

if [ -n "${MERIDIAN_BIN:-}" ]; then
	cp "$MERIDIAN_BIN" "$TMP/meridian" || die "MERIDIAN_BIN=$MERIDIAN_BIN: cannot copy"
	COMMIT="MERIDIAN_BIN=$MERIDIAN_BIN"
else
	command -v go >/dev/null || die "go is not installed (needed to build meridian)"
	log "building meridian"
	(cd "$ROOT" && go build -o "$TMP/meridian" ./cmd/meridian) || die "go build ./cmd/meridian failed"
	COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD 2>/dev/null || echo '+changes')"
fi
M="$TMP/meridian"
E="$M" # the edge and the origin
EDGE_NOTE=""
if [ -n "${MERIDIAN_EDGE_BIN:-}" ]; then # another edge (an older commit, say) under the same attacks
	cp "$MERIDIAN_EDGE_BIN" "$TMP/meridian-edge" || die "MERIDIAN_EDGE_BIN=$MERIDIAN_EDGE_BIN: cannot copy"
	E="$TMP/meridian-edge"
	EDGE_NOTE=" (MERIDIAN_EDGE_BIN=$MERIDIAN_EDGE_BIN)"
fi
"$M" bench help 2>/dev/null | grep -q '^  attack' || die "this meridian has no 'bench attack' (cmd/meridian/bench.go)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=bench.test \
	-addext "subjectAltName=DNS:bench.test,DNS:localhost,IP:127.0.0.1" 2>/dev/null \
	|| die "openssl could not make a certificate"

if [ -z "$EDGE_CONFIG" ]; then
	EDGE_CONFIG="$TMP/edge.yaml.in"
	cat >"$EDGE_CONFIG" <<'EOF'
# Meridian under attack: a small budget, so that memory beyond it shows.
name: attack
listen: 127.0.0.1:@EDGE_PORT@
tls:                          # HTTPS + HTTP/2 on TCP, HTTP/3 on UDP, same port
  listen: 127.0.0.1:@TLS_PORT@
  cert_file: @TMP@/cert.pem
  key_file: @TMP@/key.pem
admin:
  listen: 127.0.0.1:@ADMIN_PORT@
access_log: off
cache:
  max_bytes: @MAX_BYTES@
  max_inflight_bytes: @MAX_INFLIGHT@
sites:
  - hosts: [127.0.0.1, localhost, bench.test]
    origin: http://127.0.0.1:@ORIGIN_PORT@
    limits:                   # per client, on requests bound upstream (hits are never limited)
      rate: @CLIENT_RPS@
      burst: @CLIENT_RPS@
EOF
fi
sed -e "s#@TMP@#$TMP#g" -e "s#@EDGE_PORT@#$EDGE_PORT#g" -e "s#@TLS_PORT@#$TLS_PORT#g" \
	-e "s#@ADMIN_PORT@#$ADMIN_PORT#g" -e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
	-e "s#@MAX_BYTES@#$MAX_BYTES#g" -e "s#@MAX_INFLIGHT@#$MAX_INFLIGHT#g" -e "s#@CLIENT_RPS@#$ORIGIN_CAP_RPS#g" "$EDGE_CONFIG" >"$TMP/edge.yaml"
"$E" validate "$TMP/edge.yaml" >/dev/null 2>&1 || die "the edge config does not validate: $("$E" validate "$TMP/edge.yaml" 2>&1 | tail -1)"

# ---- servers ---------------------------------------------------------------


# stop PID: stops a process that start started and forgets it.
stop() {
	local pid=$1 keep=()
	stop_pid "$pid"
	for p in "${STARTED[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	STARTED=("${keep[@]}")
}

HOST=bench.test
HIT_PATH="/legit/hit?size=1024&cc=max-age%3D3600"
QUERY="size=1048576&cc=max-age%3D600" # a 1 MiB body that may be cached for 10 minutes
SAMPLES="$TMP/samples.jsonl"
NOTES="$TMP/notes.txt"
MEMLIMIT=""

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
for kind in $KINDS; do
	rate=${RATE:-${KIND_RATE[$kind]}}
	log "$kind: $rate/s for $DUR s against a fresh edge and origin"
	start "origin-$kind" "$LOAD_CORE" "$E" origin --listen "127.0.0.1:$ORIGIN_PORT"
	origin_pid=$LAST_PID
	ready "origin-$kind" $origin_pid "http://127.0.0.1:$ORIGIN_PORT/healthz"
	start "edge-$kind" "$EDGE_CORE" "$E" edge --config "$TMP/edge.yaml"
	edge_pid=$LAST_PID
	ready "edge-$kind" $edge_pid "http://127.0.0.1:$EDGE_PORT$HIT_PATH" -H "Host: $HOST"
	ready "edge-$kind" $edge_pid "https://127.0.0.1:$TLS_PORT$HIT_PATH" -k
	[ -n "$MEMLIMIT" ] || MEMLIMIT=$(grep -o '"memory limit set from the cache budgets[^"]*"[^}]*"bytes":[0-9]*' "$TMP/edge-$kind.log" | grep -o '[0-9]*$' || true)
	# The object is cached now (ready fetched it); the attack tool fetches
	# it once more before it starts, and fails if it cannot.
	case $kind in
	h2-reset|h3-cancel) url="https://127.0.0.1:$TLS_PORT/attack/$kind?$QUERY" ;;
	slow-misses) url="http://127.0.0.1:$EDGE_PORT/attack/$kind?$QUERY&delay=2s" ;;
	*) url="http://127.0.0.1:$EDGE_PORT/attack/$kind?$QUERY" ;;
	esac
	if ! "${LOAD_PIN[@]}" "$M" bench attack --kind "$kind" --url "$url" --host "$HOST" --rate "$rate" --duration "${DUR}s" \
		--pid "$edge_pid" --origin-stats "http://127.0.0.1:$ORIGIN_PORT/_stats" \
		--hit-url "http://127.0.0.1:$EDGE_PORT$HIT_PATH" --budget-bytes "$BUDGET" \
		--origin-cap-rps "$ORIGIN_CAP_RPS" --origin-cap-burst "$ORIGIN_CAP_RPS" --kill-above "$KILL_ABOVE" --insecure \
		--out "$SAMPLES" --scenario "attack-$kind" --server meridian; then
		log "$kind: the attack tool failed (see above); the edge's last log lines:"
		tail -5 "$TMP/edge-$kind.log" >&2 || true
		echo "$kind: the attack tool failed: $(tail -1 "$TMP/edge-$kind.log" 2>/dev/null | cut -c1-200)" >>"$NOTES"
	fi
	stop $edge_pid
	stop $origin_pid
done

[ -s "$SAMPLES" ] || die "no attack produced a sample"
{
	echo "Meridian $COMMIT ($(go version 2>/dev/null | awk '{print $3}')); \`deploy/bench/attack.sh --duration $DUR${RATE:+ --rate $RATE} --origin-cap-rps $ORIGIN_CAP_RPS\`."
	if [ -n "$MEMLIMIT" ]; then memlimit="$((MEMLIMIT >> 20)) MiB"; else memlimit="none logged"; fi
	echo "Edge: a fresh \`meridian edge\`$EDGE_NOTE per attack, cache.max_bytes $((MAX_BYTES >> 20)) MiB, cache.max_inflight_bytes $((MAX_INFLIGHT >> 20)) MiB: a budget of $((BUDGET >> 20)) MiB with the 64 MiB headroom; the Go memory limit the edge set from its config: $memlimit. sites[0].limits rate and burst $ORIGIN_CAP_RPS per client (the attacker is one client; hits are not limited); other settings at their defaults; TLS with a self-signed certificate (HTTP/2 and HTTP/3 on port $TLS_PORT)."
	echo "Attack requests: GET /attack/KIND?$QUERY&k=RUN-N (slow-misses also delay=2s, abandoned by the client after 1 s), each N a new key, Host $HOST; h2-reset on 4 connections, h3-cancel on 1."
	echo "Origin cap: the verdict wants origin requests ≤ $ORIGIN_CAP_RPS/s × the duration + $ORIGIN_CAP_RPS (the built-in config's per-client rate limit and its burst) (--origin-cap-rps: set it to what the edge's configured caps allow)."
	echo "An edge whose RSS passed $((KILL_ABOVE >> 20)) MiB would have been killed (SIGKILL) and its attack cut short, so as not to take the shared machine down."
	echo "Machine: $PINNING; shared with other engineers' builds and tests (load average $LOAD_BEFORE before the run, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') after it, on $(nproc) cores): latencies are noisy."
} >>"$NOTES"
mkdir -p "$(dirname "$OUT")"
"$M" bench attack report --in "$SAMPLES" --md "$OUT" --notes "$NOTES"
log "wrote $OUT"
cat "$OUT"
