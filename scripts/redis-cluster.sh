#!/bin/sh
# A local Redis Cluster for trying the cluster mode: 3 masters + 3 replicas
# (Redis >= 7: redis-server and redis-cli on PATH) on loopback, in a
# temporary directory, without persistence.
#
#   scripts/redis-cluster.sh start    # prints the -redis-cluster-addrs value
#   scripts/redis-cluster.sh stop     # kills exactly the processes start made
#   scripts/redis-cluster.sh status   # CLUSTER SHARDS-like summary
#
# Ports: PORT (default 7000) to PORT+5; each node also uses its port + 10000
# for the cluster bus, so 7000-7005 and 17000-17005 must be free. The state
# (process ids, the directory) is kept in ${TMPDIR:-/tmp}/primus-redis-cluster-$PORT.
set -eu
port=${PORT:-7000}
state=${TMPDIR:-/tmp}/primus-redis-cluster-$port
n=6

addrs() {
	i=0
	out=""
	while [ $i -lt $n ]; do
		out="$out${out:+,}127.0.0.1:$((port + i))"
		i=$((i + 1))
	done
	echo "$out"
}

start() {
	if [ -d "$state" ]; then
		echo "already started ($state); run: $0 stop" >&2
		exit 1
	fi
	for bin in redis-server redis-cli; do
		command -v $bin >/dev/null || { echo "$bin not found (apt-get install redis-server, Redis >= 7)" >&2; exit 1; }
	done
	mkdir -p "$state"
	i=0
	while [ $i -lt $n ]; do
		p=$((port + i))
		if [ "$p" = 6379 ]; then echo "refusing port 6379" >&2; exit 1; fi
		mkdir -p "$state/$p"
		redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
			--repl-ping-replica-period 1 --dir "$state/$p" --logfile "$state/$p/redis.log" \
			--daemonize no >"$state/$p/stdout" 2>&1 &
		echo $! >"$state/$p/pid"
		i=$((i + 1))
	done
	# Wait until every node answers.
	i=0
	while [ $i -lt $n ]; do
		p=$((port + i))
		tries=0
		until redis-cli -p "$p" ping >/dev/null 2>&1; do
			tries=$((tries + 1))
			if [ $tries -gt 100 ]; then
				echo "node on port $p did not start:" >&2
				cat "$state/$p/stdout" "$state/$p/redis.log" >&2 2>/dev/null || true
				stop
				exit 1
			fi
			sleep 0.1
		done
		i=$((i + 1))
	done
	hosts=$(addrs | tr ',' ' ')
	# shellcheck disable=SC2086
	redis-cli --cluster create $hosts --cluster-replicas 1 --cluster-yes >"$state/create.log" 2>&1 ||
		{ cat "$state/create.log" >&2; stop; exit 1; }
	until [ "$(redis-cli -p "$port" cluster info | tr -d '\r' | sed -n 's/^cluster_state://p')" = ok ]; do
		sleep 0.1
	done
	echo "Redis Cluster up (3 masters + 3 replicas, state in $state). Start nodes with:" >&2
	echo "  go run ./cmd/primus-server -addr :8081 -redis-cluster-addrs $(addrs)" >&2
	addrs
}

stop() {
	[ -d "$state" ] || { echo "not started" >&2; return 0; }
	for f in "$state"/*/pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	# Wait for them to exit, then remove the state.
	for f in "$state"/*/pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		tries=0
		while kill -0 "$pid" 2>/dev/null && [ $tries -lt 50 ]; do
			sleep 0.1
			tries=$((tries + 1))
		done
		kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf "$state"
	echo "stopped" >&2
}

status() {
	[ -d "$state" ] || { echo "not started" >&2; exit 1; }
	redis-cli -p "$port" cluster nodes | awk '{ split($2, a, "@"); print a[1], $3, $9, $10 }' | sort
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
