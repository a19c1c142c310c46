#!/usr/bin/env bash
# Local stand-ins for the Dockerfile's base images (python:3.11-slim, node:22-slim), made from
# Debian's packages with debootstrap, for a machine that reaches Debian's mirror but no image
# registry (CI here). Each image is built once and kept under its tag: an existing tag is
# reused. Prints the build arguments that select them, one NAME=VALUE a line:
#
#   PYTHON_IMAGE=td-local/python:3.11-bookworm
#   NODE_IMAGE=td-local/node:bookworm
#
# Debian bookworm's python3 is 3.11, the Python of python:3.11-slim. Its pip refuses to
# install into the system Python (PEP 668), so the image puts a virtual environment first on
# PATH: `python` and `pip` then behave as in python:3.11-slim.
#
# Needs root, debootstrap and a running Docker engine. FORCE=1 rebuilds the images.
set -euo pipefail

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON_IMAGE="${PYTHON_IMAGE:-td-local/python:3.11-bookworm}"
NODE_IMAGE="${NODE_IMAGE:-td-local/node:bookworm}"
CACHE="${DEBOOTSTRAP_CACHE:-/var/cache/td-debootstrap}"
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

have() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# bootstrap TAG PACKAGES SETUP [--change ...]: a minimal bookworm with PACKAGES, SETUP run in
# it (chroot), imported as TAG.
bootstrap() {
    local tag="$1" packages="$2" setup="$3"
    shift 3
    local root status=0
    root="$(mktemp -d /tmp/td-rootfs.XXXXXX)"
    # A package cache per image: the two are built at once.
    local cache="$CACHE/${tag//[^a-z0-9.]/_}"
    mkdir -p "$cache"
    # What only the build needed goes before the import: package lists, caches, docs.
    debootstrap --variant=minbase --cache-dir="$cache" --include="$packages" \
        bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
        && chroot "$root" /bin/sh -euc "$setup" \
        && rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
        && tar -C "$root" -c . | docker import "$@" - "$tag" >/dev/null \
        || status=$?
    if [ "$status" != 0 ]; then
        tail -n 30 "$root.log" >&2
    fi
    rm -rf "$root" "$root.log"
    return "$status"
}

python_image() {
    bootstrap "$PYTHON_IMAGE" python3,python3-venv,ca-certificates \
        "python3 -m venv /opt/python && /opt/python/bin/pip --version >/dev/null" \
        --change "ENV PATH=/opt/python/bin:$BASE_PATH" \
        --change "ENV LANG=C.UTF-8" \
        --change 'CMD ["python3"]'
}

node_image() {
    # debootstrap fails to configure npm's many node-* dependencies, so apt installs them in
    # a container of the plain system (host network: it reaches only Debian's mirror).
    bootstrap "$NODE_IMAGE-minbase" ca-certificates true --change "ENV PATH=$BASE_PATH"
    local container="td-local-node-$$"
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker run --name "$container" --network host "$NODE_IMAGE-minbase" /bin/sh -euc \
        "apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm \
         && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*" >/dev/null
    docker commit --change "ENV LANG=C.UTF-8" --change 'CMD ["node"]' \
        "$container" "$NODE_IMAGE" >/dev/null
    docker rm "$container" >/dev/null
    docker rmi "$NODE_IMAGE-minbase" >/dev/null
}

# Both at once: each spends most of its time waiting on the mirror and on dpkg.
pids=()
if ! have "$PYTHON_IMAGE"; then python_image & pids+=("$!"); fi
if ! have "$NODE_IMAGE"; then node_image & pids+=("$!"); fi
for pid in "${pids[@]}"; do
    wait "$pid"
done
echo "PYTHON_IMAGE=$PYTHON_IMAGE"
echo "NODE_IMAGE=$NODE_IMAGE"
