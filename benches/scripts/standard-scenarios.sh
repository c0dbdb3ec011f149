#!/usr/bin/env bash
# The standard fjord-bench scenarios of docs/benchmarks.md, each RUNS times, against a
# broker at BOOTSTRAP that is already running (start it with the README's command).
# Prints every run as one JSON line, then a table of medians (needs python3).
#
# usage: benches/scripts/standard-scenarios.sh [RUNS (default 3)] [BOOTSTRAP (default 127.0.0.1:9192)]
set -euo pipefail
runs=${1:-3}
export FJORD_BOOTSTRAP=${2:-127.0.0.1:9192}
bench=${FJORD_BENCH:-target/release/fjord-bench}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

scenario() {
    local name=$1
    shift
    for run in $(seq 1 "$runs"); do
        "$bench" "$@" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); r["name"]=sys.argv[1]; print(json.dumps(r))' "$name" | tee -a "$out" | cut -c1-120
    done
}

scenario "produce 1000B interval"   produce --message-size 1000 --batch-messages 1000 --messages 1000000 --durability interval --acks leader
scenario "consume 1000B"            consume --message-size 1000 --batch-messages 1000 --messages 1000000 --durability interval
scenario "produce 100B interval"    produce --message-size 100 --batch-messages 1000 --messages 1000000 --durability interval --acks leader
scenario "consume 100B"             consume --message-size 100 --batch-messages 1000 --messages 1000000 --durability interval
scenario "produce 1000B fsync x1"   produce --message-size 1000 --batch-messages 1000 --messages 1000000 --durability fsync --acks all
scenario "produce 1000B fsync x4p4" produce --message-size 1000 --batch-messages 1000 --messages 1000000 --durability fsync --acks all --producers 4 --partitions 4
scenario "latency 50k/s interval"   latency --message-size 1000 --batch-messages 50 --messages 500000 --rate 50000 --durability interval
scenario "latency 50k/s fsync"      latency --message-size 1000 --batch-messages 50 --messages 500000 --rate 50000 --durability fsync

python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["name"], []).append(r)
print(f'{"scenario":26} {"role":9} {"MB/s":>8} {"msg/s":>11} {"p50 ms":>8} {"p99 ms":>8} {"p99.9 ms":>9}  (median of runs)')
for name, runs in rows.items():
    for index, role in enumerate(runs[0]["roles"]):
        pick = lambda key, sub=None: statistics.median((r["roles"][index][key] if sub is None else r["roles"][index][key][sub]) for r in runs)
        print(f'{name:26} {role["role"]:9} {pick("megabytes_per_second"):8.1f} {pick("messages_per_second"):11.0f} '
              f'{pick("latency", "p50_ms"):8.3f} {pick("latency", "p99_ms"):8.3f} {pick("latency", "p99.9_ms"):9.3f}')
PY
