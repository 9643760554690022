#!/usr/bin/env bash
# Builds a stand-in for the base image docker.io/library/python:3.12-slim, for machines that cannot
# pull images (this project's CI and dev VMs): a Debian bookworm root filesystem from debootstrap,
# imported with buildah as `FROM scratch` + `ADD rootfs.tgz` and tagged with the real image's name,
# so the services' Dockerfiles build unchanged against it.
#
# It is NOT the real image: its Python is Debian's 3.11 (the project supports >= 3.11, so everything
# the images run is still a supported interpreter), and python3/python are symlinked into
# /usr/local/bin where the real python:3.12-slim installs its own build. pip is not on PATH (as in
# the real image, `python3 -m venv` + its pip works; the Dockerfiles rely on nothing else).
#
#   images/base/build.sh            # build if the image for this script's content is missing
#   FORCE=1 images/base/build.sh    # rebuild the image (the rootfs tarball cache is still used)
#
# The rootfs tarball is cached under .tools/images/, keyed on this script's and the Containerfile's
# content (.tools/ is gitignored; `make clean` removes it). Needs root, debootstrap and buildah.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/images/containers.conf}"
TAG="${BASE_IMAGE:-docker.io/library/python:3.12-slim}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3 (not only python3-minimal): the full standard library, as the real image has.
# python3-venv: ensurepip, so `python3 -m venv` gives a pip. ca-certificates, netbase, tzdata: as in
# the real slim image. libseccomp2: the runner's seccomp filters (pyseccomp loads libseccomp.so.2).
PACKAGES="python3-minimal,python3,python3-venv,ca-certificates,netbase,tzdata,libseccomp2"

KEY="$(cat "$HERE/build.sh" "$HERE/Containerfile" | sha256sum | cut -c1-16)"
CACHE="$ROOT/.tools/images/base-$KEY"
LABEL="dev.secure-agent.stand-in-base"

if [ "${FORCE:-0}" != 1 ] && [ "$(buildah inspect --type image --format "{{index .ImageAnnotations \"$LABEL\"}}{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$TAG" 2>/dev/null)" = "$KEY" ]; then
    echo "stand-in base $TAG is up to date ($KEY)"
    exit 0
fi

if [ ! -s "$CACHE/rootfs.tgz" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is missing (make image-deps)" >&2; exit 1; }
    # Tarballs of earlier versions of this script are of no further use.
    find "$ROOT/.tools/images" -maxdepth 1 -name 'base-*' ! -name "base-$KEY" -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$CACHE" && mkdir -p "$CACHE"
    rootfs="$CACHE/rootfs"
    start=$SECONDS
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Where the real python:3.12-slim has its interpreter.
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    ln -sf python3 "$rootfs/usr/local/bin/python"
    # What a slim image does not carry: apt lists and caches, docs, man pages, locales.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    tar -C "$rootfs" --numeric-owner -czf "$CACHE/rootfs.tgz.part" .
    mv "$CACHE/rootfs.tgz.part" "$CACHE/rootfs.tgz"
    rm -rf "$rootfs"
    echo "debootstrap rootfs: $((SECONDS - start)) s, $(du -h "$CACHE/rootfs.tgz" | cut -f1)"
fi

cp "$HERE/Containerfile" "$CACHE/Containerfile"
buildah bud --quiet --layers=false --label "$LABEL=$KEY" -t "$TAG" -f "$CACHE/Containerfile" "$CACHE" >/dev/null
echo "stand-in base $TAG built ($KEY)"
