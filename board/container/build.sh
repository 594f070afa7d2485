#!/bin/sh
# Builds the container image for linux/amd64, linux/arm64 and linux/arm/v7
# from the static binaries (`cargo build-x86_64`, `cargo build-aarch64`,
# `cargo build-armv7`; see docs/building.md), offline, with buildah: one image
# per architecture from board/container/Containerfile, no compiler and no
# emulation, combined into one manifest list and saved as an archive.
#
#   board/container/build.sh [ARCHIVE]
#
# ARCHIVE defaults to target/container/rest-server-<version>.tar. The
# manifest list is also left in buildah's local storage as
# localhost/rest-server:<version> (IMAGE_NAME overrides the name).
set -eu
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
archive=${1:-target/container/rest-server-$version.tar}
name=${IMAGE_NAME:-localhost/rest-server:$version}
source=$(git config --get remote.origin.url || true)

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/data"
cp board/container/Containerfile "$context/"
# <TARGETARCH><TARGETVARIANT>, as the Containerfile's COPY names them.
stage() {
    mkdir "$context/$1"
    cp "target/$2/release/rest-server" "$context/$1/rest-server"
}
stage amd64 x86_64-unknown-linux-musl
stage arm64 aarch64-unknown-linux-musl
stage armv7 armv7-unknown-linux-gnueabihf

buildah manifest rm "$name" >/dev/null 2>&1 || true
buildah manifest create "$name" >/dev/null
for platform in linux/amd64 linux/arm64 linux/arm/v7; do
    # Docker's image format: OCI's image config has no HEALTHCHECK.
    buildah build --quiet --format docker --platform "$platform" \
        --build-arg VERSION="$version" --build-arg SOURCE="$source" --manifest "$name" \
        -f "$context/Containerfile" "$context" >/dev/null
done
mkdir -p "$(dirname "$archive")"
rm -f "$archive"
buildah manifest push --quiet --all --format v2s2 "$name" "oci-archive:$archive"
echo "$archive: $name for linux/amd64, linux/arm64, linux/arm/v7"
