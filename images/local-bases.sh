#!/usr/bin/env bash
# Local stand-ins for the base images images/Dockerfile names, for machines that can reach
# Debian's package mirror and PyPI but no image registry (no docker.io, no ghcr.io).
#
# Each stand-in is committed into buildah's local storage under the exact name the
# Dockerfile's FROM uses, so `buildah bud --pull=never` resolves it locally; a real
# `docker build` elsewhere never sees these and pulls the published images as usual.
#
#   docker.io/library/python:<tag>  Debian bookworm (debootstrap --variant=minbase) plus the
#                                   CPython 3.12 of this machine copied to /usr/local, the
#                                   layout the official image builds from source
#   ghcr.io/astral-sh/uv:<version>  FROM scratch with /uv and /uvx, like Astral's image; the
#                                   binaries come from PyPI's uv wheel of the same version
#
# Usage: images/local-bases.sh PYTHON_IMAGE UV_IMAGE   (root; buildah and debootstrap)
set -euo pipefail

PYTHON_IMAGE=${1:?python base image name, e.g. docker.io/library/python:3.12.8-slim-bookworm}
UV_IMAGE=${2:?uv image name, e.g. ghcr.io/astral-sh/uv:0.13.9}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${LOCAL_BASES_DIR:-/var/tmp/infergraph-bases}
# Shared libraries CPython's extension modules load (ssl, ctypes, sqlite3, lzma, bz2, readline,
# uuid, expat), plus what the official slim image installs: CA certificates, netbase, tzdata.
PACKAGES=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,\
libreadline8,libncursesw6,zlib1g,libuuid1,libexpat1,libgdbm6,libtirpc3

have() { buildah inspect --type image "$1" >/dev/null 2>&1; }

find_cpython() {
    local candidate
    for candidate in "${CPYTHON_PREFIX:-}" "$HOME"/.pyenv/versions/3.12.* /usr/local; do
        [[ -n $candidate && -x $candidate/bin/python3.12 ]] || continue
        "$candidate/bin/python3.12" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
            2>/dev/null && { echo "$candidate"; return; }
    done
    echo "error: no CPython 3.12 prefix found (set CPYTHON_PREFIX)" >&2
    exit 1
}

python_base() {
    local rootfs=$WORK/bookworm prefix version ctr mnt
    prefix=$(find_cpython)
    version=$("$prefix/bin/python3.12" -c 'import platform; print(platform.python_version())')
    if [[ ! -x $rootfs/usr/bin/apt-get ]]; then
        rm -rf "$rootfs"
        mkdir -p "$rootfs"
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR"
    fi
    # The interpreter and standard library only: no site-packages of this machine (pip is
    # re-created by ensurepip), no test suite, no static library.
    rm -rf "$rootfs/usr/local"
    mkdir -p "$rootfs/usr/local/lib/python3.12/site-packages"
    cp -a "$prefix/bin" "$rootfs/usr/local/"
    cp -a "$prefix/include" "$rootfs/usr/local/" 2>/dev/null || true
    cp -a "$prefix"/lib/libpython3* "$rootfs/usr/local/lib/"
    tar -C "$prefix/lib" --exclude=python3.12/site-packages --exclude=python3.12/test \
        --exclude='*/idle_test' --exclude='*.a' --exclude=__pycache__ -cf - python3.12 \
        | tar -C "$rootfs/usr/local/lib" -xf -
    for link in python:python3.12 python3:python3.12 pip:pip3.12 pip3:pip3.12; do
        ln -sf "${link#*:}" "$rootfs/usr/local/bin/${link%%:*}"
    done
    rm -f "$rootfs"/usr/local/bin/{pip3.12,idle*,2to3*,pydoc*}
    chroot "$rootfs" /sbin/ldconfig
    chroot "$rootfs" /usr/local/bin/python3.12 -m ensurepip --default-pip >/dev/null
    chroot "$rootfs" /usr/local/bin/python3.12 -c \
        'import ssl, ctypes, sqlite3, lzma, bz2, zlib, uuid, readline, pyexpat, venv'
    # What debian:bookworm-slim leaves out too: downloaded .debs, apt lists, manuals, docs
    # (copyright files stay) and translations.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/root/.cache \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete

    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    cp -a "$rootfs"/. "$mnt"/
    buildah umount "$ctr" >/dev/null
    buildah config \
        --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --env PYTHON_VERSION="$version" \
        --label org.opencontainers.image.description="local stand-in for $PYTHON_IMAGE: Debian bookworm minbase + CPython $version (images/local-bases.sh)" \
        --cmd python3 "$ctr"
    buildah commit --rm "$ctr" "$PYTHON_IMAGE" >/dev/null
    echo "built $PYTHON_IMAGE (CPython $version on Debian bookworm)"
}

uv_base() {
    local version=${UV_IMAGE##*:} venv ctr mnt
    venv=$WORK/uv-$version
    if [[ ! -x $venv/bin/uv ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "uv==$version"
    fi
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    cp "$venv/bin/uv" "$venv/bin/uvx" "$mnt/"
    buildah umount "$ctr" >/dev/null
    buildah config --entrypoint '["/uv"]' \
        --label org.opencontainers.image.description="local stand-in for $UV_IMAGE: uv $version from PyPI (images/local-bases.sh)" \
        "$ctr"
    buildah commit --rm "$ctr" "$UV_IMAGE" >/dev/null
    echo "built $UV_IMAGE"
}

mkdir -p "$WORK"
have "$PYTHON_IMAGE" && echo "have $PYTHON_IMAGE" || python_base
have "$UV_IMAGE" && echo "have $UV_IMAGE" || uv_base
