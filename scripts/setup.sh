#!/usr/bin/env bash
# Installs what BYSU's tests, demo and benchmark need on a Debian machine: npm
# packages, and redis-server, OpenSSH sshd, the PostgreSQL client and aiosmtpd
# (the SMTP server the email alert tests send to) when missing (and, optional,
# chromium, busybox, bsdtar and rsnapshot).
# As root it installs them with apt-get; otherwise it prints the exact command.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/redis-server ] || [ -x /usr/local/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v psql >/dev/null 2>&1 && command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v sha256sum >/dev/null 2>&1 && command -v tar >/dev/null 2>&1 || missing+=(coreutils tar)
# Debian's python3 (a python3 earlier on the PATH, pyenv's, may not see Debian's modules).
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Chromium drives the browser test of the dashboard. Optional: without it that one test is skipped, saying so.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium with apt-get, a few hundred MB, for the browser tests of the dashboard (the demo itself does not use it; it takes a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing, so the browser test will be skipped. To run it: sudo apt-get install -y chromium" >&2
  fi
fi

# busybox sh is the other shell the node wrapper (contrib/node/bysu-allow) is tested under. Optional: without it those tests are skipped, saying so.
if [ ! -x /usr/bin/busybox ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing busybox with apt-get (to test the node wrapper under busybox sh)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq busybox >/dev/null || { apt-get update -qq && apt-get install -y -qq busybox >/dev/null; }
  else
    echo "setup: busybox is missing, so the node wrapper is tested under dash only. To add busybox sh: sudo apt-get install -y busybox" >&2
  fi
fi

# bsdtar lets the tar validator's tests compare BYSU's verdicts with a second tar implementation. Optional: without it they are skipped, saying so.
if ! command -v bsdtar >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing libarchive-tools with apt-get (bsdtar, for the tar validator's tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libarchive-tools >/dev/null
  else
    echo "setup: bsdtar is missing, so the tar validator's comparison tests will be skipped. To run them: sudo apt-get install -y libarchive-tools" >&2
  fi
fi

# rsnapshot is the baseline of the benchmark's scenario (r) (rsync over ssh, as an operator would pick instead). Optional:
# without it `npm run bench` skips that scenario, saying so.
if ! command -v rsnapshot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing rsnapshot with apt-get (the benchmark's rsnapshot baseline)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends rsnapshot >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends rsnapshot >/dev/null; }
  else
    echo "setup: rsnapshot is missing, so the benchmark skips its rsnapshot baseline. To run it: sudo apt-get install -y rsnapshot" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Compile to dist/ when the sources changed (a no-op otherwise; bin/bysu.js runs the sources through tsx when dist/ is stale).
node scripts/build.mjs
