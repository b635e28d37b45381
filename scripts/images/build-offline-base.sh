#!/usr/bin/env bash
# Build a Debian base image with debootstrap + `docker import`, for machines
# where no container registry answers. Real users pull real images and never
# run this. Usage: build-offline-base.sh IMAGE_NAME
set -euo pipefail
name="${1:?usage: build-offline-base.sh IMAGE_NAME}"
suite="${FS_DEBIAN_SUITE:-bookworm}"
mirror="${FS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "offline base $name: present"
  exit 0
fi
work="$(mktemp -d /var/tmp/fs-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "offline base $name: debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["bash"]' - "$name" >/dev/null
echo "offline base $name: imported"
