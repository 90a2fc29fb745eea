#!/bin/sh
# Starts sshd, a forwarder that carries the name localhost:$REGISTRY_PORT to the testbed registry (so image
# names are the same for the builder and this host), and this host's own dockerd in the foreground.
set -eu
# A restart of this container is the testbed's reboot, and a real reboot empties /run: without
# this, the pid file of a dockerd that was stopped before it finished keeps the next one from starting.
find /run -mindepth 1 -maxdepth 1 -exec rm -rf {} +
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
/usr/sbin/sshd
socat TCP-LISTEN:"${REGISTRY_PORT:-5000}",bind=127.0.0.1,fork,reuseaddr "TCP:${REGISTRY_ADDRESS:-registry:5000}" &
# Explicit address ranges: the inner engine must not overlap the outer engine's networks.
exec dockerd --bip 10.213.64.1/24 --default-address-pool base=10.213.128.0/17,size=24 \
  --log-level warn
