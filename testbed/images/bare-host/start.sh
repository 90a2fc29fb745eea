#!/bin/sh
# sshd in the foreground, and the same localhost:5000 forwarder to the registry as the staging host.
set -eu
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
socat TCP-LISTEN:"${REGISTRY_PORT:-5000}",bind=127.0.0.1,fork,reuseaddr "TCP:${REGISTRY_ADDRESS:-registry:5000}" &
exec /usr/sbin/sshd -D -e
