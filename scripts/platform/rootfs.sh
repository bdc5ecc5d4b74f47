# shellcheck shell=bash
# Debian bookworm root file systems for the platform check (sourced by scripts/platform-check).
#
# Raspberry Pi OS is Debian bookworm plus the Raspberry Pi archive; that archive is not needed to
# test our install, so plain Debian bookworm stands in for it. arm64 and armhf roots run their
# binaries under qemu-user-static (binfmt_misc); the amd64 root boots a real systemd.
#
# The debootstrap result is cached as a tarball under $CACHE (keyed by architecture and package
# list), so that a second run on the same machine only unpacks it; every run installs into a
# fresh copy, never into the cached one.

CACHE="${STATION_PLATFORM_CACHE:-/var/cache/station-platform}"
WORK="${STATION_PLATFORM_WORK:-/var/tmp/station-platform}"
SUITE=bookworm

# What Raspberry Pi OS Lite has from the start and our install relies on: python3, systemd
# (systemctl enable works offline in a chroot), CA certificates. Everything else the README
# installs itself.
INCLUDE_ARM="python3,ca-certificates,systemd,systemd-sysv"
INCLUDE_AMD64="python3,ca-certificates,systemd,systemd-sysv,dbus"

debian_mirror() {
    # The host's own Debian mirror (deb822 or one-line format); deb.debian.org otherwise.
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

enable_binfmt() {
    # qemu-user-static registers its interpreters with the F (fix-binary) flag, so nothing
    # has to be copied into the roots.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
            [ -e /proc/sys/fs/binfmt_misc/status ] || fail "binfmt" "cannot mount binfmt_misc"
    fi
    local a
    for a in qemu-aarch64 qemu-arm; do
        update-binfmts --enable "$a" >/dev/null 2>&1 || true
        if ! grep -qs '^enabled' "/proc/sys/fs/binfmt_misc/$a"; then
            fail "binfmt" "$a is not registered in binfmt_misc (is qemu-user-static installed?)"
        fi
    done
}

include_for() { if [ "$1" = amd64 ]; then echo "$INCLUDE_AMD64"; else echo "$INCLUDE_ARM"; fi; }

cache_file() {
    local arch=$1 key
    key=$(printf '%s %s %s' "$SUITE" "$arch" "$(include_for "$arch")" | sha256sum | cut -c1-12)
    echo "$CACHE/$SUITE-$arch-$key.tar.gz"
}

# build_rootfs ARCH: make sure the cached tarball exists (debootstrap it if not).
build_rootfs() {
    local arch=$1 tarball tmp
    tarball=$(cache_file "$arch")
    if [ -s "$tarball" ]; then
        log "$arch: cached root file system $tarball"
        return 0
    fi
    mkdir -p "$CACHE"
    tmp="$WORK/debootstrap-$arch"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "$arch: debootstrap $SUITE from $(debian_mirror) (a few minutes; cached afterwards)"
    if ! debootstrap --arch="$arch" --variant=minbase --include="$(include_for "$arch")" \
            "$SUITE" "$tmp" "$(debian_mirror)" >"$WORK/debootstrap-$arch.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap-$arch.log" >&2
        fail "debootstrap $arch" "see $WORK/debootstrap-$arch.log"
    fi
    # apt's package lists and downloaded .debs are not worth caching.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    tar -C "$tmp" -czf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$tmp"
}

# fresh_root ARCH DIR: a fresh copy of the cached root in DIR, ready for chroot.
fresh_root() {
    local arch=$1 dir=$2
    umount_root "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    tar -C "$dir" -xzf "$(cache_file "$arch")"
    # Inside, pip and apt go through the same TLS-intercepting proxy as the host: its CA
    # bundle and resolver come along, and pip is pointed at the bundle.
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    mkdir -p "$dir/usr/local/share/ca-certificates"
    cp "$HOST_CA" "$dir/usr/local/share/ca-certificates/platform-check-host.crt"
    cp "$HOST_CA" "$dir/etc/ssl/certs/platform-check-host-bundle.pem"
    # Raspberry Pi OS has these groups (dialout is Debian's own); the unit's
    # SupplementaryGroups= names them.
    local g
    for g in gpio spi i2c; do
        chroot "$dir" getent group "$g" >/dev/null || chroot "$dir" groupadd --system "$g"
    done
}

mount_root() {
    local dir=$1
    mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
    mountpoint -q "$dir/dev" || mount --bind /dev "$dir/dev"
}

umount_root() {
    local dir=$1 m
    [ -d "$dir" ] || return 0
    for m in dev proc; do
        if mountpoint -q "$dir/$m" 2>/dev/null; then umount -l "$dir/$m" || true; fi
    done
}
