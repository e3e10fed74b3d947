#!/usr/bin/env bash
# Build a local Debian bookworm base image with python3 (3.11) and python3-venv, without
# any container registry: debootstrap from the host's configured apt mirror, then
# `docker import`. The Dockerfile takes it with --build-arg BASE_IMAGE=banksim-base:bookworm.
#
#   docker/build-base.sh            # builds banksim-base:bookworm unless it already exists
#   docker/build-base.sh --force    # rebuilds it anyway
#
# Environment: BANKSIM_BASE_IMAGE (image tag, default banksim-base:bookworm),
# BANKSIM_APT_MIRROR (overrides the mirror read from /etc/apt/sources.list*).
set -euo pipefail

IMAGE="${BANKSIM_BASE_IMAGE:-banksim-base:bookworm}"
SUITE=bookworm
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build-base: unknown argument $arg" >&2; exit 2 ;;
    esac
done

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-base: $IMAGE exists (use --force to rebuild)"
    exit 0
fi

# The mirror this host already uses: the first Debian (not -security) URI of a deb822
# .sources file, else the first `deb` line of a one-line-style list.
apt_mirror() {
    local uri
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
          /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
              /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${BANKSIM_APT_MIRROR:-$(apt_mirror)}"

if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-base: debootstrap is missing and installing it needs root" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/banksim-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

echo "build-base: debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 40 "$WORK/debootstrap.log" >&2
    echo "build-base: debootstrap failed" >&2
    exit 1
}

# The rootfs keeps the host mirror for apt inside images built on it.
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
# Nothing below is needed at run time; it is most of what a minbase rootfs carries
# besides the packages themselves.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

echo "build-base: docker import as $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $SUITE minbase + python3 python3-venv from $MIRROR" \
    - "$IMAGE" >/dev/null
docker image inspect "$IMAGE" --format 'build-base: {{.RepoTags}} {{.Size}} bytes'
