#!/usr/bin/env bash
# Tests the container image with a real Docker daemon: builds it (docker/build.sh, from
# inside each test) and runs client/tests/docker_image.rs (one broker) and
# client/tests/docker_cluster.rs (the compose cluster, and the chaos run, whose report
# goes to target/chaos-report.json), which a plain `cargo test` ignores because the
# static build takes minutes. One test at a time: each runs brokers, and the chaos run
# measures unavailability. Without a daemon it says "skipped: no docker daemon" and
# succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    echo "skipped: no docker daemon"
    exit 0
fi
cargo test --locked -p fjord-client --test docker_image --test docker_cluster -- \
    --ignored --nocapture --test-threads 1
