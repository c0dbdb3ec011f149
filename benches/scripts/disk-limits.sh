#!/usr/bin/env bash
# Raw limits of the disk that holds DIR, to set the storage benchmarks against:
#   write_buffered      2 GiB of 1 MiB writes into the page cache, no sync (MiB/s)
#   write_fdatasync     2 GiB of 1 MiB writes, then one fdatasync, timed together (MiB/s)
#   read_direct         the same 2 GiB read back with O_DIRECT, bypassing the page cache (MiB/s)
#   write_dsync_4KiB    2000 appends of 4 KiB with O_DSYNC: ms per write, i.e. per fdatasync
#   write_dsync_100KiB  1000 appends of 100 KiB with O_DSYNC (one 100-record batch per sync)
#   write_dsync_1MiB    200 appends of 1 MiB with O_DSYNC (one 1000-record batch per sync)
#   write_dsync_8MiB    32 appends of 8 MiB with O_DSYNC (eight 1 MiB batches per sync)
# Each test runs REPEATS times on a new file; every file is deleted at the end.
#
# usage: benches/scripts/disk-limits.sh [DIR (default target/bench-data)] [REPEATS (default 3)]
set -euo pipefail
export LC_ALL=C

dir=${1:-$(dirname "$0")/../../target/bench-data}
repeats=${2:-3}
mkdir -p "$dir"
file="$dir/disk-limits.$$"
trap 'rm -f "$file"' EXIT

# Runs dd with the given arguments and prints "<bytes> <seconds>" from its summary line.
timed_dd() {
    dd "$@" 2>&1 | awk '/copied/ { print $1, $(NF - 3) }'
}

# Prints one result line: test, run, MiB/s, and ms per write when a write count is given.
report() {
    local test=$1 run=$2 bytes=$3 seconds=$4 writes=${5:-}
    awk -v test="$test" -v run="$run" -v bytes="$bytes" -v seconds="$seconds" -v writes="$writes" '
        BEGIN {
            line = sprintf("%-18s run=%d  %8.1f MiB/s", test, run, bytes / 1048576 / seconds)
            if (writes != "") line = line sprintf("  %7.3f ms/write", seconds * 1000 / writes)
            print line
        }'
}

echo "# $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)  rustc processes: $(pgrep -c rustc || true)"
for run in $(seq 1 "$repeats"); do
    rm -f "$file"
    read -r bytes seconds < <(timed_dd if=/dev/zero of="$file" bs=1M count=2048)
    report write_buffered "$run" "$bytes" "$seconds"
    sync "$file" # untimed: let the next test start with clean pages
    rm -f "$file"

    read -r bytes seconds < <(timed_dd if=/dev/zero of="$file" bs=1M count=2048 conv=fdatasync)
    report write_fdatasync "$run" "$bytes" "$seconds"
    read -r bytes seconds < <(timed_dd if="$file" of=/dev/null bs=1M iflag=direct)
    report read_direct "$run" "$bytes" "$seconds"
    rm -f "$file"

    for size in 4K:2000 100K:1000 1M:200 8M:32; do
        block=${size%:*}
        count=${size#*:}
        read -r bytes seconds < <(timed_dd if=/dev/zero of="$file" bs="$block" count="$count" oflag=dsync)
        report "write_dsync_${block}iB" "$run" "$bytes" "$seconds" "$count"
        rm -f "$file"
    done
done
