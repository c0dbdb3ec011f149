#!/usr/bin/env bash
# Builds statically linked `fjord-broker` and `fjord`, then the container image from
# docker/Dockerfile. Usage: docker/build.sh [TAG]   (default: $FJORD_IMAGE, else fjord:dev)
#
# The binaries are built with the installed toolchain for the gnu target with glibc
# linked in (`+crt-static`), because the image is `FROM scratch`: no base image can be
# pulled, so there is no libc in it. `--target` is given explicitly so that RUSTFLAGS
# reach only the binaries, not build scripts and proc-macros (which cannot be static).
# They go to their own target directory (under CARGO_TARGET_DIR when that is set, so a
# CI cache keeps it too) so that the normal build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${1:-${FJORD_IMAGE:-fjord:dev}}"
target=x86_64-unknown-linux-gnu
target_dir="${FJORD_STATIC_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/static}"
context="$target_dir/image-context"
user_id=10001

started=$SECONDS
# Without debug info (the release profile keeps line tables for profiling): the image
# is a third of the size; backtraces still name functions.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked \
    --target "$target" --target-dir "$target_dir" \
    -p fjord-broker -p fjord-client --bin fjord-broker --bin fjord
binaries="$target_dir/$target/release"
for binary in fjord-broker fjord; do
    # A static binary needs no library, which the empty image does not have. ldd says
    # "not a dynamic executable" for a classic static binary and "statically linked"
    # for a static-pie one (what rustc makes, keeping address randomisation); anything
    # else lists libraries.
    if ! ldd "$binaries/$binary" 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; then
        echo "error: $binaries/$binary is not statically linked:" >&2
        ldd "$binaries/$binary" >&2 || true
        exit 1
    fi
done
echo "static binaries built in $((SECONDS - started)) s"

# The build context holds exactly what the Dockerfile copies, nothing of the workspace.
rm -rf "$context"
mkdir -p "$context/etc" "$context/var/lib/fjord"
cp "$binaries/fjord-broker" "$binaries/fjord" "$context/"
printf 'root:x:0:0:root:/:/sbin/nologin\nfjord:x:%d:%d:fjord:/var/lib/fjord:/sbin/nologin\n' \
    "$user_id" "$user_id" >"$context/etc/passwd"
printf 'root:x:0:\nfjord:x:%d:\n' "$user_id" >"$context/etc/group"

started=$SECONDS
docker build --quiet --file docker/Dockerfile --tag "$image" "$context" >/dev/null
echo "image $image built in $((SECONDS - started)) s: $(docker image inspect --format '{{.Size}}' "$image") bytes"
