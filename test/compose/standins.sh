#!/usr/bin/env bash
# standins.sh: make the base images that compose.yaml and the Dockerfile name, on a machine that
# cannot pull them, from Debian bookworm and this machine's own Node.js. The compose test runs it.
#
#   node:20-bookworm-slim   Debian bookworm (debootstrap --variant=minbase), this machine's node and
#                           npm in /usr/local as in the official image, a `node` user with uid 1000,
#                           and this machine's CA bundle with NODE_EXTRA_CA_CERTS pointing at it
#                           (Node.js trusts only its own bundle; npm ci in docker build needs this one)
#   redis:7-bookworm        the same root with Debian's redis-server, /data as its working directory,
#                           protected mode off (the official image does the same at build time, or
#                           Redis refuses every client from another container)
#   bysu-test/node:bookworm the same root with openssh-server: a cluster node for the test
#
# Each image carries a label with a stamp of what it was built from (this script, the node and npm
# versions, the apt sources); an image whose stamp matches is kept, so a second run costs nothing.
# An image of the same name without the label is a real one, pulled or loaded by someone: it is
# used as it is and never replaced.
#
# Needs: root, a running Docker daemon, debootstrap, and Debian's mirror (the machine's apt sources).
set -euo pipefail

label=org.bysu.standin-stamp
here=$(cd "$(dirname "$0")" && pwd)
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
ca_bundle=/etc/ssl/certs/ca-certificates.crt

stamp=$( {
  cat "$0"
  "$node_bin" --version
  cat "$npm_dir/package.json"
  echo "$mirror"
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true
} | sha256sum | cut -c1-16)

# Debian's docker CLI when installed: it is the daemon's own version (a newer CLI elsewhere on the PATH warns about its legacy builder).
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }

say() { printf 'standins: %s\n' "$*" >&2; }

# current IMAGE: 0 when IMAGE exists and is either real (no label) or a stand-in of this stamp.
current() {
  local got
  got=$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null) || return 1
  [ "$got" = "<no value>" ] || [ -z "$got" ] || [ "$got" = "$stamp" ]
}

work=$(mktemp -d /tmp/bysu-standins.XXXXXX)
trap 'rm -rf "$work"' EXIT

base=bysu-test/bookworm:minbase
if ! current "$base"; then
  say "building $base with debootstrap from $mirror (once per machine; about two minutes)"
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # The machine's apt sources (bookworm, its updates and security), so that apt in the images
  # installs what apt on the machine would.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$work/root/etc/apt/sources.list.d/debian.sources"
    : > "$work/root/etc/apt/sources.list"
  fi
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  tar -C "$work/root" -c . | docker import \
    --change "LABEL $label=$stamp" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$base" > /dev/null
  rm -rf "$work/root"
fi

# build IMAGE: docker build of the Dockerfile on standard input, with $work/ctx as its context.
build() {
  say "building $1"
  docker build --quiet --network host --label "$label=$stamp" -t "$1" -f - "$work/ctx" > /dev/null
}

if ! current node:20-bookworm-slim; then
  rm -rf "$work/ctx" && mkdir -p "$work/ctx"
  cp "$node_bin" "$work/ctx/node"
  cp -a "$npm_dir" "$work/ctx/npm"
  cp "$ca_bundle" "$work/ctx/ca-certificates.crt"
  build node:20-bookworm-slim <<EOF
FROM $base
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
ENV NODE_VERSION=$("$node_bin" -p process.versions.node) NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
EOF
fi

if ! current redis:7-bookworm; then
  rm -rf "$work/ctx" && mkdir -p "$work/ctx"
  build redis:7-bookworm <<EOF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server > /dev/null \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir /data && chown redis:redis /data \\
 && printf '#!/bin/sh\nexec /usr/bin/redis-server "\$@" --protected-mode no\n' > /usr/local/bin/redis-server \\
 && chmod 0755 /usr/local/bin/redis-server
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
EOF
fi

if ! current bysu-test/node:bookworm; then
  rm -rf "$work/ctx" && mkdir -p "$work/ctx"
  build bysu-test/node:bookworm <<EOF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server > /dev/null \\
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* \\
 && mkdir -p /run/sshd
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
EOF
fi
# Stand-ins replaced by this run are left without a name: remove them (never an image of anyone else).
docker image prune --force --filter "label=$label" > /dev/null
say "images ready (stamp $stamp)"
