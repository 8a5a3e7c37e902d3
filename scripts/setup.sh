#!/usr/bin/env bash
# Installs what BYSU's tests, demo and benchmark need on a Debian machine: npm
# packages, and redis-server, OpenSSH sshd, the PostgreSQL client and aiosmtpd
# (the SMTP server the email alert tests send to) when missing (and, optional,
# chromium, busybox, bsdtar and rsnapshot).
# As root it installs them with apt-get; otherwise it prints the exact command.
# Then it puts a `bysu` command on the PATH: a symbolic link to this checkout's
# bin/bysu.js, in /usr/local/bin as root, else in ~/.local/bin.
#   bash scripts/setup.sh              all of it
#   bash scripts/setup.sh --link-only  only the `bysu` link (a production install needs no test tools)
#   bash scripts/setup.sh --no-link    all but the link (what `npm test` runs)
# BYSU_LINK_DIR=<dir> puts the link there instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  '') ;;
  --link-only) mode=link-only ;;
  --no-link) mode=no-link ;;
  *) echo "usage: bash scripts/setup.sh [--link-only|--no-link]" >&2; exit 2 ;;
esac

# The `bysu` command: a symbolic link to this checkout's bin/bysu.js (which runs itself: its #! line finds
# node and carries the V8 flags). Idempotent; a `bysu` that is not a link to this checkout is never replaced,
# except a link to a bin/bysu.js that no longer exists (a checkout moved or deleted). Returns 1 when it left
# someone else's `bysu` in place.
link_bysu() {
  local target dir link current
  target="$PWD/bin/bysu.js"
  if [ -n "${BYSU_LINK_DIR:-}" ]; then dir="$BYSU_LINK_DIR"
  elif [ "$(id -u)" = 0 ]; then dir=/usr/local/bin
  else dir="$HOME/.local/bin"
  fi
  link="$dir/bysu"
  if [ -L "$link" ]; then
    current="$(readlink "$link")"
    if [ "$current" = "$target" ] || { [ -e "$link" ] && [ "$(readlink -f "$link")" = "$(readlink -f "$target")" ]; }; then
      echo "setup: bysu is already linked: $link -> $current"
    elif [ ! -e "$link" ] && [[ "$current" == */bin/bysu.js ]]; then
      ln -sfn "$target" "$link"
      echo "setup: $link pointed at $current, which no longer exists; relinked: $link -> $target"
    else
      echo "setup: $link is a link to $current, not to this checkout: left alone. To use this checkout's instead: ln -sfn '$target' '$link'" >&2
      return 1
    fi
  elif [ -e "$link" ]; then
    echo "setup: $link exists and is not a link to BYSU: left alone. Run '$target' instead, or remove $link and run: bash scripts/setup.sh --link-only" >&2
    return 1
  else
    mkdir -p "$dir"
    ln -s "$target" "$link"
    echo "setup: linked $link -> $target"
  fi
  case ":$PATH:" in
    *":$dir:"*) ;;
    *)
      local shown="$dir"
      [ "${dir#"$HOME"/}" != "$dir" ] && shown="\$HOME/${dir#"$HOME"/}"
      echo "setup: $dir is not on your PATH, so \`bysu\` is not found yet. Add it with:"
      echo "  echo 'export PATH=\"$shown:\$PATH\"' >> ~/.profile && export PATH=\"$shown:\$PATH\""
      ;;
  esac
}

if [ "$mode" = link-only ]; then
  link_bysu
  exit $?
fi

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

# Someone else's `bysu` left in place is said above; it does not fail the rest of the setup.
if [ "$mode" = all ]; then link_bysu || true; fi
