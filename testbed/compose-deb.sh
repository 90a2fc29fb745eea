#!/usr/bin/env bash
# Prints the path of a Docker CLI plugin package of Debian trixie that installs on bookworm: the
# Compose v2 plugin (docker-compose 2.26.1, the default) or, with `buildx`, BuildKit's CLI
# plugin (docker-buildx 0.13.1: `docker build --secret`). Downloads it once into testbed/.cache
# with a private apt state, so the machine's own sources (and its upgrade path) stay untouched.
set -euo pipefail
case "${1:-compose}" in
  compose) PACKAGE=docker-compose VERSION="2.26.1-4" ;;
  buildx) PACKAGE=docker-buildx VERSION="0.13.1+ds1-3" ;;
  *) echo "usage: $0 [compose|buildx]" >&2; exit 2 ;;
esac
CACHE_DIR="${TESTBED_CACHE:-$(cd "$(dirname "$0")" && pwd)/.cache}"
mkdir -p "$CACHE_DIR"
deb="$CACHE_DIR/${PACKAGE}_${VERSION}_$(dpkg --print-architecture).deb"
if [ ! -f "$deb" ]; then
  apt_dir="$CACHE_DIR/apt-trixie"
  mkdir -p "$apt_dir/lists/partial"
  echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Get::List-Cleanup=0"
            -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$CACHE_DIR" && apt-get "${apt_opts[@]}" download "$PACKAGE=$VERSION" >/dev/null)
fi
echo "$deb"
