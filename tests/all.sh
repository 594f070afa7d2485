#!/usr/bin/env bash
# Every test this project has: the native suite (`cargo test`: unit tests,
# integration tests, restic end to end), then the static ARM binaries under
# qemu (tests/emulated.sh). This is the test command README.md gives.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test
tests/emulated.sh
