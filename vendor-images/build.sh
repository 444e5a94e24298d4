#!/usr/bin/env bash
# Rebuild the vendored test images and re-export them with `docker save`.
#
#   skiff-vendor/busybox:latest  -> busybox.tar  or busybox.tar.gz
#   skiff-vendor/compat:latest   -> compat.tar   or compat.tar.gz
#
# Needs: a Docker engine (no registry access: both images start FROM scratch),
# the static busybox at $BUSYBOX (default /bin/busybox, Debian's
# busybox-static), python3, gzip.
#
# Each archive is kept as a plain `docker save` tar when it is smaller than
# $MAX_BYTES (2 MiB = 2,097,152 bytes), otherwise it is written as `docker save | gzip -9n`
# with a .tar.gz name; a stale file of the other name is removed. The final
# archive must be smaller than $MAX_BYTES either way, or the script fails.
#
# The busybox binary and the empty directories are copied into a staging
# build context (vendor-images/.build/, git-ignored) that is removed on exit.
# Re-running is safe; the classic builder's cache is used when present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
MAX_BYTES="${MAX_BYTES:-2097152}"  # 2 MiB
BUSYBOX_IMAGE="skiff-vendor/busybox:latest"
COMPAT_IMAGE="skiff-vendor/compat:latest"

# The Dockerfiles are written for (and the README describes the layers as
# produced by) the classic builder; this Docker CLI has no buildx plugin.
export DOCKER_BUILDKIT=0

stage="$here/.build"
cleanup() { rm -rf "$stage"; }
trap cleanup EXIT
rm -rf "$stage"
mkdir -p "$stage"

[[ -x "$BUSYBOX" ]] || { echo "build.sh: $BUSYBOX not found (install busybox-static)" >&2; exit 1; }
if ! "$BUSYBOX" ls / >/dev/null 2>&1; then
    echo "build.sh: $BUSYBOX does not run" >&2; exit 1
fi

# save IMAGE NAME: write $here/NAME.tar (if small enough) or $here/NAME.tar.gz
save() {
    local image="$1" name="$2" tmp="$stage/$2.save.tar" size
    docker save "$image" -o "$tmp"
    size=$(stat -c %s "$tmp")
    if (( size < MAX_BYTES )); then
        mv "$tmp" "$here/$name.tar"
        rm -f "$here/$name.tar.gz"
        echo "build.sh: wrote $name.tar ($size bytes)"
    else
        gzip -9n < "$tmp" > "$here/$name.tar.gz"
        rm -f "$tmp" "$here/$name.tar"
        size=$(stat -c %s "$here/$name.tar.gz")
        echo "build.sh: wrote $name.tar.gz ($size bytes; uncompressed docker save was too big)"
        if (( size >= MAX_BYTES )); then
            echo "build.sh: $name.tar.gz is not under $MAX_BYTES bytes" >&2
            exit 1
        fi
    fi
}

# --- busybox -------------------------------------------------------------
ctx="$stage/busybox"
mkdir -p "$ctx"
cp "$here/busybox/Dockerfile" "$ctx/Dockerfile"
cp -r "$here/busybox/rootfs" "$ctx/rootfs"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
chmod 0755 "$ctx/rootfs" "$ctx/rootfs/etc"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/dev" "$ctx/rootfs/proc" "$ctx/rootfs/sys" \
         "$ctx/rootfs/home" "$ctx/rootfs/root" "$ctx/rootfs/tmp"
chmod 0755 "$ctx/rootfs/bin" "$ctx/rootfs/dev" "$ctx/rootfs/proc" "$ctx/rootfs/sys" "$ctx/rootfs/home"
chmod 0700 "$ctx/rootfs/root"
chmod 1777 "$ctx/rootfs/tmp"
cp "$BUSYBOX" "$ctx/rootfs/bin/busybox"
chmod 0755 "$ctx/rootfs/bin/busybox"

docker build -t "$BUSYBOX_IMAGE" "$ctx"
save "$BUSYBOX_IMAGE" busybox

# --- compat --------------------------------------------------------------
ctx="$stage/compat"
mkdir -p "$ctx"
cp "$here/compat/Dockerfile" "$ctx/Dockerfile"
docker build -t "$COMPAT_IMAGE" "$ctx"

# fuse-overlayfs workaround: put back the opaque marker for /data/replaced
# (no-op when the daemon already wrote it), then load the fixed image so the
# tag points at it, and export it again from Docker.
docker save "$COMPAT_IMAGE" -o "$stage/compat.built.tar"
python3 "$here/add_opaque_whiteout.py" "$stage/compat.built.tar" "$stage/compat.fixed.tar" data/replaced
docker load -i "$stage/compat.fixed.tar"
save "$COMPAT_IMAGE" compat

docker image inspect --format '{{.RepoTags}} {{.Id}}' "$BUSYBOX_IMAGE" "$COMPAT_IMAGE"
