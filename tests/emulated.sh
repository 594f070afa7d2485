#!/usr/bin/env bash
# Builds the static binaries and tests them: under qemu user-mode emulation
# the whole integration suite (restic end to end included) against aarch64 and
# the restic end-to-end test against armv7; natively the restic end-to-end test
# against x86_64 musl. Then the Debian packages and the container image made
# of them. Part of tests/all.sh.
#
# A target whose toolchain or emulator is missing is skipped with a message
# saying what to install; nothing is skipped silently. With
# REST_SERVER_TEST_REQUIRE_TOOLS set (to anything but empty or 0; .ci/run sets
# it) a missing tool fails instead, as in the cargo tests (tests/util/tools.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

# Budget for the stripped aarch64 binary (docs/building.md, "Binary size budget").
MAX_AARCH64_BYTES=$((3 * 1024 * 1024))

# skip WHAT WHY: reports that WHAT cannot run because of WHY (and appends the
# line to $REST_SERVER_TEST_SKIP_LOG, which tests/all.sh lists at the end);
# exits with failure instead under REST_SERVER_TEST_REQUIRE_TOOLS.
skip() {
    case "${REST_SERVER_TEST_REQUIRE_TOOLS:-0}" in
        "" | 0) ;;
        *)
            echo "FAIL $1 cannot run: $2 (REST_SERVER_TEST_REQUIRE_TOOLS is set, so this fails instead of skipping)" >&2
            exit 1
            ;;
    esac
    echo "SKIP $1: $2"
    if [ -n "${REST_SERVER_TEST_SKIP_LOG:-}" ]; then
        echo "SKIP $1: $2" >>"$REST_SERVER_TEST_SKIP_LOG"
    fi
}

# can_build TARGET LINKER QEMU: prints why not and fails when something is missing.
can_build() {
    local target=$1 linker=$2 qemu=$3
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        skip "emulated tests for $target" "the Rust standard library is missing (rustup target add $target)"
        return 1
    fi
    if ! command -v "$linker" >/dev/null; then
        skip "emulated tests for $target" "$linker is missing (see .ci/run for the Debian packages)"
        return 1
    fi
    if ! command -v "$qemu" >/dev/null; then
        skip "emulated tests for $target" "$qemu is missing (apt-get install qemu-user-static)"
        return 1
    fi
    if ! "$qemu" --version >/dev/null 2>&1; then
        skip "emulated tests for $target" "$qemu cannot run on this machine"
        return 1
    fi
}

# build_static TARGET: builds the release binary and checks it is static.
build_static() {
    local target=$1 bin
    cargo build --release --target "$target"
    bin="target/$target/release/rest-server"
    local kind
    kind=$(file -b "$bin")
    echo "$target: $(stat -c %s "$bin") bytes; $kind"
    case "$kind" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) echo "FAIL: $bin is not statically linked"; exit 1 ;;
    esac
}

# wrapper TARGET QEMU: a script that runs the target's binary under qemu, for
# the test suite's REST_SERVER_BIN.
wrapper() {
    local target=$1 qemu=$2 dir
    dir="$PWD/target/emulated"
    mkdir -p "$dir"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$(command -v "$qemu")" \
        "$PWD/target/$target/release/rest-server" >"$dir/rest-server-$target"
    chmod +x "$dir/rest-server-$target"
    echo "$dir/rest-server-$target"
}

if can_build aarch64-unknown-linux-musl aarch64-linux-gnu-gcc qemu-aarch64-static; then
    build_static aarch64-unknown-linux-musl
    size=$(stat -c %s target/aarch64-unknown-linux-musl/release/rest-server)
    if [ "$size" -gt "$MAX_AARCH64_BYTES" ]; then
        echo "FAIL: the aarch64 binary has $size bytes, over the budget of $MAX_AARCH64_BYTES"
        exit 1
    fi
    bin=$(wrapper aarch64-unknown-linux-musl qemu-aarch64-static)
    echo "== integration suite against the aarch64 binary under qemu"
    REST_SERVER_BIN="$bin" cargo test --test integration

    missing=""
    for tool in qemu-system-aarch64 mkfs.vfat mcopy sfdisk cpio depmod; do
        command -v "$tool" >/dev/null || missing="$missing $tool"
    done
    if [ -n "$missing" ]; then
        skip "the image test" "missing$missing (see .ci/run for the Debian packages)"
    else
        echo "== the flashable image, booted under qemu-system-aarch64"
        image/build.sh --binary target/aarch64-unknown-linux-musl/release/rest-server --out target/image
        REST_SERVER_IMAGE_DIR="$PWD/target/image" cargo test --test integration image:: -- --include-ignored
    fi
fi

if can_build armv7-unknown-linux-gnueabihf arm-linux-gnueabihf-gcc qemu-arm-static; then
    build_static armv7-unknown-linux-gnueabihf
    bin=$(wrapper armv7-unknown-linux-gnueabihf qemu-arm-static)
    echo "== restic end to end against the armv7 binary under qemu"
    REST_SERVER_BIN="$bin" cargo test --test integration restic::
fi

if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    build_static x86_64-unknown-linux-musl
    echo "== restic end to end against the static x86_64 musl binary"
    REST_SERVER_BIN="$PWD/target/x86_64-unknown-linux-musl/release/rest-server" \
        cargo test --test integration restic::
else
    skip "emulated tests for x86_64-unknown-linux-musl" "the Rust standard library is missing (rustup target add x86_64-unknown-linux-musl)"
fi

# The Debian packages of the static builds above (board/deb/build.sh), their
# contents and lintian, and the amd64 one installed, upgraded and purged in a
# throwaway Debian root (tests/packages.rs; mmdebstrap fetches the root's
# packages from the Debian mirror image/build.sh uses).
missing=""
for tool in dpkg-deb lintian mmdebstrap; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    skip "the Debian packages" "missing$missing (see .ci/run for the Debian packages)"
else
    target_dir=${CARGO_TARGET_DIR:-$PWD/target}
    debs=""
    for pair in arm64=aarch64-unknown-linux-musl armhf=armv7-unknown-linux-gnueabihf amd64=x86_64-unknown-linux-musl; do
        bin="$target_dir/${pair#*=}/release/rest-server"
        # A target skipped above (and said so) has no binary.
        if [ -x "$bin" ]; then debs="$debs ${pair%%=*}=$bin"; fi
    done
    if [ -z "$debs" ]; then
        skip "the Debian packages" "no static binary was built"
    else
        echo "== the Debian packages: lintian, then install, upgrade and purge in a Debian root"
        rm -rf "$target_dir/deb"
        # shellcheck disable=SC2086
        board/deb/build.sh --out "$target_dir/deb" $debs
        REST_SERVER_DEB_DIR="$target_dir/deb" cargo test --test integration packages:: -- --include-ignored
    fi
fi

# The container image (board/container/) of the three static builds above,
# built with buildah in a storage of its own under the target dir (a vfs
# storage: plain folders, no mounts left), saved as an OCI archive; then
# tests/container.rs checks the archive and runs the amd64 image with podman
# (runc as its runtime) in network namespaces of its own.
missing=""
for tool in buildah podman runc ip; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
unbuilt=""
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
    # A target skipped above (and said so) has no binary.
    [ -x "$target_dir/$target/release/rest-server" ] || unbuilt="$unbuilt $target"
done
if [ -n "$missing" ]; then
    skip "the container image" "missing$missing (see .ci/run for the Debian packages)"
elif [ -n "$unbuilt" ]; then
    skip "the container image" "no static binary for$unbuilt"
else
    echo "== the container image: the archive, then the amd64 image under podman"
    storage="$target_dir/container-storage"
    rm -rf "$storage"
    mkdir -p "$storage"
    printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$storage/graph" "$storage/run" >"$storage/storage.conf"
    archive="$target_dir/container/rest-server.tar"
    CARGO_TARGET_DIR="$target_dir" CONTAINERS_STORAGE_CONF="$storage/storage.conf" \
        board/container/build.sh "$archive"
    rm -rf "$storage"
    REST_SERVER_CONTAINER_ARCHIVE="$archive" cargo test --test integration container:: -- --include-ignored
fi
