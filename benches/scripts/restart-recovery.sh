#!/usr/bin/env bash
# Restart timings of the real broker with many partitions (issue #11, item 10):
#   1. 2,000 partitions (8 topics of 250, plus the 8 of __consumer_offsets) holding
#      ~20 MB, kill -9, then the time from the new process's start to /readyz 200;
#   2. the same after a clean stop (SIGTERM): the SIGTERM-to-exit time, then the
#      restart time;
#   3. 3,280 empty partitions: SIGTERM-to-exit time.
# Usage: benches/scripts/restart-recovery.sh BROKER_BINARY FJORD_CLI WORK_DIR [EXTRA BROKER ARGS…]
set -euo pipefail
broker_binary=$1 cli=$2 work=$3
shift 3
extra=("$@")
client_port=19392 http_port=19393 internal_port=19394
bootstrap=127.0.0.1:$client_port

start_broker() { # data_dir → sets pid
  "$broker_binary" --data-dir "$1" --listen 127.0.0.1:$client_port \
    --http-listen 127.0.0.1:$http_port --internal-listen 127.0.0.1:$internal_port \
    --max-partitions 5000 "${extra[@]}" >"$1.log" 2>&1 &
  pid=$!
}
seconds_now() { date +%s.%N; }
wait_ready() { # → seconds from now until /readyz answers 200
  local started; started=$(seconds_now)
  for _ in $(seq 1 12000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$http_port/readyz)" = 200 ]; then
      echo "$(seconds_now) - $started" | bc; return
    fi
    sleep 0.01
  done
  echo "not ready after 120 s" >&2; exit 1
}
stop_broker() { # sets stopped: seconds from SIGTERM to exit (not in a subshell: wait needs the parent)
  local started; started=$(seconds_now)
  kill -TERM "$pid"; wait "$pid" || true
  stopped=$(echo "$(seconds_now) - $started" | bc)
}
create_topics() { # count partitions_each
  for topic in $(seq 1 "$1"); do
    curl -sf -o /dev/null -X POST http://127.0.0.1:$http_port/v1/topics \
      -H 'content-type: application/json' -d "{\"name\": \"t$topic\", \"partitions\": $2}"
  done
}

rm -rf "$work"; mkdir -p "$work"
data=$work/data
start_broker "$data"; wait_ready >/dev/null
create_topics 8 250
# 8 topics × 25,000 lines of 100 bytes = 20 MB, spread over the partitions by the producer.
line=$(printf 'x%.0s' $(seq 1 99))
for _ in $(seq 1 25000); do echo "$line"; done >"$work/lines"
for topic in $(seq 1 8); do
  "$cli" --bootstrap $bootstrap produce "t$topic" --file "$work/lines" --acks leader >/dev/null 2>&1
done
echo "data: $(du -sm "$data" | cut -f1) MiB in $(find "$data" -name '*.log' | wc -l) segments"
kill -9 "$pid"; wait "$pid" || true
start_broker "$data"; echo "restart after kill -9: $(wait_ready) s"
stop_broker; echo "SIGTERM with 2,008 partitions holding data: $stopped s"
start_broker "$data"; echo "restart after a clean stop: $(wait_ready) s"
stop_broker

rm -rf "$data"
start_broker "$data"; wait_ready >/dev/null
create_topics 16 204 # + 8 of __consumer_offsets = 3,272
stop_broker; echo "SIGTERM with 3,272 empty partitions: $stopped s"
start_broker "$data"; echo "restart of 3,272 empty partitions after a clean stop: $(wait_ready) s"
stop_broker
rm -rf "$work"
