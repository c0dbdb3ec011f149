#!/usr/bin/env bash
# Alternates two fjord-broker binaries (say, before and after a change) under the same
# fjord-bench scenarios, ROUNDS times, each run against a fresh broker on a new data
# directory, so that both face the same machine noise. Prints one line per run:
# scenario, binary, MB/s, p50 ms, p99 ms.
#
# usage: benches/scripts/compare-brokers.sh OLD_BROKER NEW_BROKER [ROUNDS (default 3)]
# FJORD_BENCH overrides the bench binary (default target/release/fjord-bench);
# FJORD_BENCH_DIR the data directory's parent (default target/bench-data).
set -euo pipefail
old=$1
new=$2
rounds=${3:-3}
bench=${FJORD_BENCH:-target/release/fjord-bench}
parent=${FJORD_BENCH_DIR:-target/bench-data}
mkdir -p "$parent"
data=$(mktemp -d "$parent/compare.XXXXXX")
trap 'rm -rf "$data"' EXIT

run() { # name broker args...
    local name=$1 broker=$2
    shift 2
    rm -rf "$data/broker"
    env -u RUST_LOG "$broker" --data-dir "$data/broker" --listen 127.0.0.1:19192 \
        --http-listen 127.0.0.1:19193 --internal-listen 127.0.0.1:19194 >"$data/broker.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do
        curl -sf 127.0.0.1:19193/readyz >/dev/null && break
        sleep 0.1
    done
    "$bench" "$@" --bootstrap 127.0.0.1:19192 --json | python3 -c '
import json, sys
role = json.load(sys.stdin)["roles"][0]
print(sys.argv[1], sys.argv[2], round(role["megabytes_per_second"], 1),
      role["latency"]["p50_ms"], role["latency"]["p99_ms"])' "$name" "$broker"
    kill -TERM "$pid"
    wait "$pid" || true
}

for _ in $(seq 1 "$rounds"); do
    for broker in "$old" "$new"; do
        run "produce-1000B" "$broker" produce --message-size 1000 --batch-messages 1000 --messages 1000000 --durability interval --acks leader
        run "consume-1000B" "$broker" consume --message-size 1000 --batch-messages 1000 --messages 1000000 --durability interval
        run "produce-100B" "$broker" produce --message-size 100 --batch-messages 1000 --messages 1000000 --durability interval --acks leader
        run "fsync-4x4" "$broker" produce --message-size 1000 --batch-messages 1000 --messages 1000000 --durability fsync --acks all --producers 4 --partitions 4
    done
done
