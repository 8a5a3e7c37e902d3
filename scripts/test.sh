#!/usr/bin/env bash
# `npm test`: set up what is missing, type-check, then run the tests with
# node's test runner (each file in its own process; integration tests start
# their own redis-server and sshd processes on random loopback ports).
#   npm test                 all tests
#   npm test -- unit         only test/unit (no Redis, no sshd)
#   npm test -- integration  only test/integration (real redis-server and sshd)
#   npm test -- browser      only the dashboard's browser test (Chromium)
#   npm test -- faults       only the fault suite (npm run test:faults also prints its table)
#   npm test -- compose      only the docker compose test (root: it installs Docker and starts dockerd)
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests run bin/bysu.js themselves: no `bysu` link is made (it would point the machine's `bysu` at whatever checkout ran them).
bash scripts/setup.sh --no-link
npx tsc --noEmit -p .

scope="${1:-all}"
case "$scope" in
  unit) dirs=(test/unit) ;;
  integration) dirs=(test/integration) ;;
  browser) dirs=(test/browser) ;;
  faults) dirs=(test/faults) ;;
  compose) dirs=(test/compose) ;;
  all) dirs=(test/unit test/integration test/browser test/faults test/compose) ;;
  *) echo "usage: npm test [-- unit|integration|browser|faults|compose|all]" >&2; exit 2 ;;
esac
mapfile -t files < <(find "${dirs[@]}" -name '*.test.ts' 2>/dev/null | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found in ${dirs[*]}" >&2; exit 1; fi
# The fault tests write a ledger. `npm run test:faults` prints its table after the run;
# `npm test` leaves it in test-artifacts/faults.jsonl so that its output ends with the runner's summary.
export BYSU_FAULT_LEDGER="${BYSU_FAULT_LEDGER:-$PWD/test-artifacts/faults.jsonl}"
mkdir -p test-artifacts && rm -f "$BYSU_FAULT_LEDGER"
# Each test file is bounded at 5 minutes, but the two long ones at 20: the compose test (on a cold machine it
# builds its stand-in base images and the BYSU image first, minutes, and most of the rest is waiting on
# containers) and the benchmark's smoke run (every scenario once: 90 s alone, 150 to 234 s among the others,
# too close to 5 minutes; about 300 s beside the compose test's build, within its own 600 s). In a full run
# they run beside the others, in a runner of their own (its output follows theirs), so that the compose test's
# waits overlap the others' work instead of adding to the wall time.
runner=(node --import tsx --test --test-concurrency=3)
long=() others=()
for f in "${files[@]}"; do
  case "$f" in test/compose/* | test/integration/bench-smoke.test.ts) long+=("$f") ;; *) others+=("$f") ;; esac
done
status=0
if [ ${#others[@]} -eq 0 ]; then
  "${runner[@]}" --test-timeout=1200000 "${long[@]}" || status=$?
  exit "$status"
fi
long_pid=
if [ ${#long[@]} -gt 0 ]; then
  "${runner[@]}" --test-timeout=1200000 "${long[@]}" > test-artifacts/long-run.tap 2>&1 &
  long_pid=$!
fi
"${runner[@]}" --test-timeout=300000 "${others[@]}" || status=$?
if [ -n "$long_pid" ]; then
  long_status=0
  wait "$long_pid" || long_status=$?
  echo
  echo "# the long tests (${long[*]}), run beside the others; also in test-artifacts/long-run.tap:"
  cat test-artifacts/long-run.tap
  [ "$long_status" = 0 ] || status=$long_status
fi
if [ "$scope" = faults ]; then
  echo
  node --import tsx scripts/fault-table.ts || { [ "$status" = 0 ] && status=1; }
fi
exit "$status"
