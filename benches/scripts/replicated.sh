#!/usr/bin/env bash
# Replication's cost: alternates, ROUNDS times, one broker against a cluster of three
# (all on this host, each run on fresh data directories) under the same fjord-bench
# scenarios, with fsync durability and acks=all; the cluster's topic has three
# replicas. Prints one line per run: scenario, setup, MB/s, msg/s, p50, p99 and
# p99.9 ms.
#
# usage: benches/scripts/replicated.sh [ROUNDS (default 3)]
# FJORD_BROKER and FJORD_BENCH override the binaries (default target/release/…);
# FJORD_BENCH_DIR the data directories' parent (default target/bench-data).
set -euo pipefail
rounds=${1:-3}
broker=${FJORD_BROKER:-target/release/fjord-broker}
bench=${FJORD_BENCH:-target/release/fjord-bench}
parent=${FJORD_BENCH_DIR:-target/bench-data}
mkdir -p "$parent"
data=$(mktemp -d "$parent/replicated.XXXXXX")
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$data"' EXIT

start() { # node-id voters
    local id=$1 voters=$2 base=$((19000 + $1 * 100))
    env -u RUST_LOG "$broker" --node-id "$id" --data-dir "$data/node-$id" \
        --listen "127.0.0.1:$((base + 92))" --http-listen "127.0.0.1:$((base + 93))" \
        --internal-listen "127.0.0.1:$((base + 94))" --controller-quorum-voters "$voters" \
        >"$data/node-$id.log" 2>&1 &
    pids+=($!)
}

ready() { # node-ids...
    for id in "$@"; do
        for _ in $(seq 1 600); do
            curl -sf "127.0.0.1:$((19000 + id * 100 + 93))/readyz" >/dev/null && break
            sleep 0.1
        done
    done
}

run() { # scenario setup bench-args...
    local name=$1 setup=$2
    shift 2
    rm -rf "$data"/node-*
    if [ "$setup" = single ]; then
        start 1 ""
        ready 1
    else
        local voters=1@127.0.0.1:19194,2@127.0.0.1:19294,3@127.0.0.1:19394
        start 1 "$voters"; start 2 "$voters"; start 3 "$voters"
        ready 1 2 3
    fi
    "$bench" "$@" --bootstrap 127.0.0.1:19192 --json | python3 -c '
import json, sys
roles = json.load(sys.stdin)["roles"]
# The latency scenario reports the consumer end to end; the others the producer.
role = next((r for r in roles if r["latency_kind"] == "end to end"), roles[0])
latency = role["latency"]
print(sys.argv[1], sys.argv[2], round(role["megabytes_per_second"], 1),
      round(role["messages_per_second"]), latency["p50_ms"], latency["p99_ms"],
      latency["p99.9_ms"])' "$name" "$setup"
    stop_all
}

for _ in $(seq 1 "$rounds"); do
    for setup in single rf3; do
        run "produce-1000B-fsync-all" "$setup" produce --message-size 1000 --batch-messages 1000 \
            --messages 500000 --durability fsync --acks all
        run "latency-10k-fsync-all" "$setup" latency --rate 10000 --batch-messages 10 \
            --message-size 1000 --messages 100000 --durability fsync --acks all
    done
done
