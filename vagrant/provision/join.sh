#!/usr/bin/env bash
# node2, node3: run the join command node1 left in the shared folder (waiting for it if node1 is
# still provisioning). The node name is the hostname; the interface is the one routing to node1.
set -euo pipefail
SHARED="${NETKUBE_SHARED:-/vagrant/vagrant/.lab}"
NAME="${NETKUBE_CLUSTER:-netkube}"
WAIT="${NETKUBE_JOIN_WAIT:-600}"
if [ -f "/var/lib/netkube/$NAME/machine.json" ]; then
  echo "provision/join.sh: $(hostname) already joined $NAME (run \`netkube reset --yes\` to start over)"
  exit 0
fi
for _ in $(seq "$WAIT"); do
  [ -s "$SHARED/join-command" ] && break
  sleep 1
done
if [ ! -s "$SHARED/join-command" ]; then
  echo "provision/join.sh: no $SHARED/join-command after ${WAIT}s; provision node1 first" >&2
  exit 1
fi
read -r -a argv < "$SHARED/join-command"
if [ "${argv[0]:-}" != netkube ] || [ "${argv[1]:-}" != join ]; then
  echo "provision/join.sh: $SHARED/join-command is not a \`netkube join\` command" >&2
  exit 1
fi
# only the URL, token and hash are taken from the file; never run it as a shell line
netkube join "${argv[@]:2}" --yes ${NETKUBE_IFACE:+--iface "$NETKUBE_IFACE"}
