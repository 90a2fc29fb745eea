#!/usr/bin/env bash
# Prints the path of Debian trixie's Compose v2 plugin package (docker-compose 2.26.1, which
# installs on bookworm), downloading it once into testbed/.cache with a private apt state, so the
# machine's own sources (and its upgrade path) stay untouched.
set -euo pipefail
COMPOSE_VERSION="2.26.1-4"
CACHE_DIR="${TESTBED_CACHE:-$(cd "$(dirname "$0")" && pwd)/.cache}"
mkdir -p "$CACHE_DIR"
deb="$CACHE_DIR/docker-compose_${COMPOSE_VERSION}_$(dpkg --print-architecture).deb"
if [ ! -f "$deb" ]; then
  apt_dir="$CACHE_DIR/apt-trixie"
  mkdir -p "$apt_dir/lists/partial"
  echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Get::List-Cleanup=0"
            -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$CACHE_DIR" && apt-get "${apt_opts[@]}" download "docker-compose=$COMPOSE_VERSION" >/dev/null)
fi
echo "$deb"
