#!/usr/bin/env bash
# Make sure the base images the deploy needs exist on the local engine.
# For each name: present -> nothing; pullable -> pull; otherwise (no registry
# answers, as on an offline test machine) build an offline stand-in under the
# very same name from a debootstrap base. Safe to repeat.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON_IMAGE="${FS_PYTHON_IMAGE:-python:3.11-slim}"
POSTGRES_IMAGE="${FS_POSTGRES_IMAGE:-postgres:15}"
NGINX_IMAGE="${FS_NGINX_IMAGE:-nginx:stable-bookworm}"
OFFLINE_BASE="${FS_OFFLINE_BASE:-fs-offline/debian:bookworm}"
PULL_TIMEOUT="${FS_PULL_TIMEOUT:-20}"

present() { docker image inspect "$1" >/dev/null 2>&1; }

build_offline() {  # NAME DIR
  local name="$1" dir="$2" ctx
  bash "$here/build-offline-base.sh" "$OFFLINE_BASE"
  ctx="$(mktemp -d)"
  cp -a "$here/$dir/." "$ctx/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  echo "image $name: building offline stand-in from $dir/"
  docker build -q --network host --build-arg "OFFLINE_BASE=$OFFLINE_BASE" \
    -t "$name" "$ctx" >/dev/null
  rm -rf "$ctx"
}

ensure() {  # NAME DIR
  local name="$1" dir="$2"
  if present "$name"; then echo "image $name: present"; return; fi
  if timeout "$PULL_TIMEOUT" docker pull -q "$name" >/dev/null 2>&1; then
    echo "image $name: pulled"; return
  fi
  build_offline "$name" "$dir"
}

ensure "$PYTHON_IMAGE" python
ensure "$POSTGRES_IMAGE" postgres
ensure "$NGINX_IMAGE" nginx
for extra in ${FS_EXTRA_IMAGES:-}; do  # NAME=DIR pairs, e.g. for test targets
  ensure "${extra%%=*}" "${extra#*=}"
done
