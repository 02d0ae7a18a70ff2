# Shell functions the bench scripts share (sourced; not run on its own).
# They use the caller's TMP (a directory for logs), STARTED (an array of
# the PIDs to stop at exit) and die.

# start NAME CORE CMD...: runs CMD in the background, pinned to CORE
# (taskset; an empty CORE: not pinned), logging to $TMP/NAME.log, and sets
# LAST_PID.
start() {
	local name=$1 core=$2
	shift 2
	if [ -n "$core" ]; then
		taskset -c "$core" "$@" >"$TMP/$name.log" 2>&1 &
	else
		"$@" >"$TMP/$name.log" 2>&1 &
	fi
	LAST_PID=$!
	STARTED+=("$LAST_PID")
}

# ready NAME PID URL [CURL ARGS]: waits until URL answers 200, at most 15 s.
ready() {
	local name=$1 pid=$2 url=$3
	shift 3
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || { tail -20 "$TMP/$name.log" >&2; die "$name exited at start"; }
		curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	tail -20 "$TMP/$name.log" >&2
	die "$name did not answer $url within 15 s"
}

# stop_started stops every process start started: SIGTERM to all, then
# SIGKILL to any still running 5 s later.
stop_started() {
	local pid
	for pid in "${STARTED[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
