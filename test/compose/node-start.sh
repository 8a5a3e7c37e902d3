#!/bin/sh
# The compose test's cluster node: a Debian container with openssh-server, set up the way the
# README sets up a node (contrib/node/setup-node.sh: the bysu user, the forced-command wrapper,
# the allow-list), with an app's data to dump. /node-setup (from the test) holds the host key,
# BYSU's public key and the allow-list; /bysu-node is contrib/node of the checkout.
set -eu
install -m 0600 /node-setup/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
install -m 0644 /node-setup/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub

# The shop's data: a text dump and a directory of uploads, the same at every start.
mkdir -p /srv/shop/uploads
i=0
: > /srv/shop/shop.sql
while [ "$i" -lt 2000 ]; do
  echo "INSERT INTO orders VALUES ($i, 'order $i');" >> /srv/shop/shop.sql
  i=$((i + 1))
done
for name in a b c; do
  head -c 65536 /dev/zero | tr '\0' "$name" > "/srv/shop/uploads/$name.dat"
done

sh /bysu-node/setup-node.sh --key-file /node-setup/id_ed25519.pub --allow-list /node-setup/allowed-commands
exec /usr/sbin/sshd -D -e -h /etc/ssh/ssh_host_ed25519_key
