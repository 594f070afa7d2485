#!/usr/bin/env bash
# Every test this project has: the native suite (`cargo test`: unit tests,
# integration tests, restic end to end), then the static ARM binaries under
# qemu (tests/emulated.sh). This is the test command README.md gives
# (docs/testing.md says more).
#
# A test whose tool (or root) is missing prints a SKIP line and passes; the
# skips are listed again at the end. With REST_SERVER_TEST_REQUIRE_TOOLS=1
# (.ci/run sets it) such a test fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests append their SKIP lines here (tests/util/tools.rs, tests/emulated.sh).
REST_SERVER_TEST_SKIP_LOG=$(mktemp)
export REST_SERVER_TEST_SKIP_LOG
list_skips() {
    if [ -s "$REST_SERVER_TEST_SKIP_LOG" ]; then
        echo "== skipped (install what they need and run again; docs/testing.md):"
        sort -u "$REST_SERVER_TEST_SKIP_LOG"
    fi
    rm -f "$REST_SERVER_TEST_SKIP_LOG"
}
# Everything the parts print, for the closing summary.
REST_SERVER_TEST_OUTPUT=$(mktemp)
summary() {
    local status=$?
    list_skips
    # One line over every part that ran: libtest's "test result" lines.
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) passed += $i
                if ($(i + 1) ~ /^failed/) failed += $i
                if ($(i + 1) ~ /^ignored/) ignored += $i
            }
        }
        END { printf "== all tests: %d passed, %d failed, %d ignored\n", passed, failed, ignored }' \
        "$REST_SERVER_TEST_OUTPUT"
    rm -f "$REST_SERVER_TEST_OUTPUT"
    if [ "$status" -ne 0 ]; then
        echo "== a part failed (exit code $status): see above"
    fi
}
trap summary EXIT

cargo test 2>&1 | tee -a "$REST_SERVER_TEST_OUTPUT"
tests/emulated.sh 2>&1 | tee -a "$REST_SERVER_TEST_OUTPUT"
