#!/usr/bin/env bash
# Installs and starts what the local testbed needs on a Debian machine, as root:
# Docker engine (Debian's docker.io), the Compose v2 and buildx CLI plugins (trixie's packages,
# which install on bookworm), debootstrap for the local base image, and openssh-client.
# Idempotent: a machine that already has a running engine and Compose v2 is left alone.
set -euo pipefail

log() { printf '[install-host] %s\n' "$*"; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_apt+=(debian-archive-keyring)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v git >/dev/null || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Compose v2: bookworm only has v1; trixie's plugin package installs on it (compose-deb.sh).
if ! docker compose version 2>/dev/null | grep -q ' v\?2\.'; then
  log "installing the Compose v2 plugin from trixie"
  dpkg -i "$(bash "$(dirname "$0")/compose-deb.sh")" >/dev/null
fi
# BuildKit's CLI plugin (build secrets, as on GitHub's runners, where BuildKit builds by
# default): bookworm has none; trixie's installs on it too.
if ! docker buildx version >/dev/null 2>&1; then
  log "installing the buildx plugin from trixie"
  dpkg -i "$(bash "$(dirname "$0")/compose-deb.sh" buildx)" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi
log "docker $(docker version --format '{{.Server.Version}}'), $(docker compose version --short)"
