#!/usr/bin/env bash
# Tests the container image with a real Docker daemon: builds it (docker/build.sh, from
# inside the test) and runs client/tests/docker_image.rs, which is ignored by a plain
# `cargo test` because the static build takes minutes. Without a daemon it says
# "skipped: no docker daemon" and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    echo "skipped: no docker daemon"
    exit 0
fi
cargo test --locked -p fjord-client --test docker_image -- --ignored --nocapture
