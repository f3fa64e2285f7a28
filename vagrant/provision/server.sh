#!/usr/bin/env bash
# node1: `netkube server` (control plane + DNS + this machine as node1), then leaves the join
# command in the shared folder for node2 and node3. Settings come from the environment.
set -euo pipefail
: "${NETKUBE_NODE_IP:?set NETKUBE_NODE_IP to the address of this machine on the lab network, e.g. 192.168.56.101}"
NAME="${NETKUBE_CLUSTER:-netkube}"
SHARED="${NETKUBE_SHARED:-/vagrant/vagrant/.lab}"
STATE="/var/lib/netkube/$NAME"
if [ -f "$STATE/machine.json" ]; then
  echo "provision/server.sh: cluster $NAME already runs here (run \`netkube reset --yes\` to start over)"
else
  netkube server --yes --name "$NAME" --advertise-address "$NETKUBE_NODE_IP" \
    --proxy-mode "${NETKUBE_PROXY_MODE:-iptables}" --network "${NETKUBE_NETWORK:-flannel-vxlan}"
fi
# A fresh token each time, so a re-provisioned lab never hands out an expired one.
mkdir -p "$SHARED"
netkube token create --name "$NAME" --print-join-command > "$SHARED/join-command.new"
chmod 600 "$SHARED/join-command.new"
mv "$SHARED/join-command.new" "$SHARED/join-command"
echo "provision/server.sh: join command written to $SHARED/join-command"
