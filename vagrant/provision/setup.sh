#!/usr/bin/env bash
# Installs netkube on this machine from the project folder (the Vagrant synced folder) with the
# project's own set-up script: Debian packages, the virtualenv, `netkube` on PATH.
set -euo pipefail
SRC="${NETKUBE_SRC:-/vagrant}"
if [ ! -x "$SRC/scripts/setup" ]; then
  echo "provision/setup.sh: no netkube project at $SRC (set NETKUBE_SRC to the synced folder)" >&2
  exit 1
fi
"$SRC/scripts/setup"
