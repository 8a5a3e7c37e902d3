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
if [ "$scope" != faults ]; then
  exec node --import tsx --test --test-concurrency=2 --test-timeout=300000 "${files[@]}"
fi
status=0
node --import tsx --test --test-concurrency=2 --test-timeout=300000 "${files[@]}" || status=$?
echo
node --import tsx scripts/fault-table.ts || { [ "$status" = 0 ] && status=1; }
exit "$status"
