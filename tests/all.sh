#!/usr/bin/env bash
# Every test this project has: the native suite (`cargo test`: unit tests,
# integration tests, restic end to end), then the static ARM binaries under
# qemu (tests/emulated.sh). This is the test command README.md gives.
#
# A test whose tool (or root) is missing prints a SKIP line and passes; the
# skips are listed again at the end. With REST_SERVER_TEST_REQUIRE_TOOLS=1
# (.ci/run sets it) such a test fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests append their SKIP lines here (tests/util/mod.rs, tests/emulated.sh).
REST_SERVER_TEST_SKIP_LOG=$(mktemp)
export REST_SERVER_TEST_SKIP_LOG
list_skips() {
    if [ -s "$REST_SERVER_TEST_SKIP_LOG" ]; then
        echo "== skipped (install what they need and run again; README.md, \"Quick start\"):"
        sort -u "$REST_SERVER_TEST_SKIP_LOG"
    fi
    rm -f "$REST_SERVER_TEST_SKIP_LOG"
}
trap list_skips EXIT

cargo test
tests/emulated.sh
