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
# Each test file is bounded at 5 minutes, but the compose test's at 20: on a cold machine it builds its
# stand-in base images and the BYSU image first (minutes), and most of the rest is waiting on containers.
# In a full run it runs beside the others, in its own runner (its output follows theirs), so that its waits
# overlap their work instead of adding to the wall time.
runner=(node --import tsx --test --test-concurrency=4)
compose=() others=()
for f in "${files[@]}"; do case "$f" in test/compose/*) compose+=("$f") ;; *) others+=("$f") ;; esac; done
status=0
if [ ${#others[@]} -eq 0 ]; then
  "${runner[@]}" --test-timeout=1200000 "${compose[@]}" || status=$?
  exit "$status"
fi
compose_pid=
if [ ${#compose[@]} -gt 0 ]; then
  "${runner[@]}" --test-timeout=1200000 "${compose[@]}" > test-artifacts/compose-run.tap 2>&1 &
  compose_pid=$!
fi
"${runner[@]}" --test-timeout=300000 "${others[@]}" || status=$?
if [ -n "$compose_pid" ]; then
  compose_status=0
  wait "$compose_pid" || compose_status=$?
  echo
  echo "# the compose test (test/compose, run beside the others; also in test-artifacts/compose-run.tap):"
  cat test-artifacts/compose-run.tap
  [ "$compose_status" = 0 ] || status=$compose_status
fi
if [ "$scope" = faults ]; then
  echo
  node --import tsx scripts/fault-table.ts || { [ "$status" = 0 ] && status=1; }
fi
exit "$status"
