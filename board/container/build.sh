#!/bin/sh
# Builds the container image for linux/amd64, linux/arm64 and linux/arm/v7
# from the static binaries (`cargo build-x86_64`, `cargo build-aarch64`,
# `cargo build-armv7`; see docs/building.md), offline, with buildah: one image
# per architecture from board/container/Containerfile, no compiler and no
# emulation, combined into one manifest list and saved as an archive.
#
#   board/container/build.sh [ARCHIVE]
#   board/container/build.sh --stage DIR
#
# ARCHIVE defaults to <target dir>/container/rest-server-<version>.tar. The
# manifest list is also left in buildah's local storage as
# localhost/rest-server:<version> (IMAGE_NAME overrides the name);
# CONTAINERS_STORAGE_CONF, naming a storage.conf with its own graphroot and
# runroot, keeps that storage apart from the machine's (tests/emulated.sh
# does so).
#
# --stage DIR only writes the build context into DIR (which must not exist)
# and prints the Docker Buildx command that builds the same three images from
# it; buildah is not needed then.
#
# The binaries are taken from $CARGO_TARGET_DIR (as cargo puts them there),
# else from the project's target/. Relative paths are the caller's.
set -eu
here=$PWD
# absolute PATH: PATH as the caller meant it, from the project's folder.
absolute() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$here/$1" ;;
    esac
}
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
target_dir=$(absolute "${CARGO_TARGET_DIR:-$PWD/target}")
name=${IMAGE_NAME:-localhost/rest-server:$version}
source=$(git config --get remote.origin.url || true)
platforms="linux/amd64 linux/arm64 linux/arm/v7"

staged=""
case "${1:-}" in
    --stage)
        [ $# -eq 2 ] || { echo "usage: $0 --stage DIR" >&2; exit 2; }
        staged=$(absolute "$2")
        if [ -e "$staged" ]; then
            echo "$0: $staged exists; --stage writes a new folder" >&2
            exit 2
        fi
        context=$staged
        ;;
    -*)
        echo "usage: $0 [ARCHIVE] | --stage DIR" >&2
        exit 2
        ;;
    *)
        archive=$(absolute "${1:-$target_dir/container/rest-server-$version.tar}")
        context=$(mktemp -d)
        trap 'rm -rf "$context"' EXIT
        ;;
esac

# <TARGETARCH><TARGETVARIANT>, as the Containerfile's COPY names them, and
# the target each binary is built for; all are looked for before anything is
# written.
binaries="amd64=x86_64-unknown-linux-musl arm64=aarch64-unknown-linux-musl armv7=armv7-unknown-linux-gnueabihf"
for pair in $binaries; do
    bin="$target_dir/${pair#*=}/release/rest-server"
    if [ ! -f "$bin" ]; then
        echo "$0: no $bin: build it first (docs/building.md)" >&2
        exit 1
    fi
done
mkdir -p "$context/data"
cp board/container/Containerfile "$context/"
for pair in $binaries; do
    mkdir "$context/${pair%%=*}"
    cp "$target_dir/${pair#*=}/release/rest-server" "$context/${pair%%=*}/rest-server"
done

if [ -n "$staged" ]; then
    echo "$staged: the build context; build the images with"
    echo "  docker buildx build --platform $(echo "$platforms" | tr ' ' ',')" \
        "--build-arg VERSION=$version${source:+ --build-arg SOURCE=$source}" \
        "-f $staged/Containerfile -t rest-server:$version $staged"
    echo "(and --push to send them to a registry, or one --platform and --load)"
    exit 0
fi

buildah manifest rm "$name" >/dev/null 2>&1 || true
buildah manifest create "$name" >/dev/null
for platform in $platforms; do
    # Docker's image format: OCI's image config has no HEALTHCHECK.
    buildah build --quiet --format docker --platform "$platform" \
        --build-arg VERSION="$version" --build-arg SOURCE="$source" --manifest "$name" \
        -f "$context/Containerfile" "$context" >/dev/null
done
mkdir -p "$(dirname "$archive")"
rm -f "$archive"
buildah manifest push --quiet --all --format v2s2 "$name" "oci-archive:$archive"
echo "$archive: $name for linux/amd64, linux/arm64, linux/arm/v7"
