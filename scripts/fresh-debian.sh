#!/usr/bin/env bash
# Runs the README's commands on a fresh Debian 12 (bookworm) root filesystem, to show that
# scripts/bootstrap.sh installs everything the code and the tests call (nothing the host
# machine has installed by hand can hide a missing step there).
#
# It builds the root with debootstrap from this machine's Debian mirror (Debian's archive only),
# clones this repository's committed HEAD into it and, in a mount namespace whose root it is
# (/proc, /sys with the cgroups, /dev, a private /run and /tmp), runs as root one of the README's commands:
#     scripts/test.sh "$@"          (default: the whole suite, as .ci/run does)
#     scripts/demo.sh               (with --demo)
# The root is removed at the end unless --keep is given; the namespace's mounts end with it.
#
# Usage: sudo scripts/fresh-debian.sh [--demo] [--keep] [--root DIR] [-- PYTEST_ARGS...]
# Needs: debootstrap, git (scripts/bootstrap.sh installs debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
root=/var/tmp/labctl-fresh-debian
keep=0
command=scripts/test.sh
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) keep=1; shift ;;
        --demo) command=scripts/demo.sh; shift ;;
        --root) root=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "fresh-debian: unknown option $1 (usage: $0 [--demo] [--keep] [--root DIR] [-- PYTEST_ARGS...])" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then echo "fresh-debian: run as root: sudo $0" >&2; exit 4; fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

cleanup() {
    if [ "$keep" -eq 0 ]; then rm -rf --one-file-system "$root" "$root.debootstrap.log"; fi
}
trap cleanup EXIT

if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "fresh-debian: debootstrap bookworm into $root from $mirror"
    rm -rf --one-file-system "$root"
    # git to clone the repository; everything else comes from scripts/bootstrap.sh
    debootstrap --include=git,ca-certificates bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
        || { echo "fresh-debian: debootstrap failed, see $root.debootstrap.log" >&2; exit 5; }
fi
rm -rf "$root/root/labctl"
git clone -q "$repo" "$root/root/labctl"
cp /etc/resolv.conf "$root/etc/resolv.conf"   # the fresh root is the controller: it uses the host's resolver for apt
# This machine's network trust, which is the machine's and not labctl's to install: the extra
# CA certificates of an intercepting proxy (if any) and pip's setting to use the system store.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi
pip_cert=""
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] && pip_cert=/etc/ssl/certs/ca-certificates.crt

echo "fresh-debian: running $command $* inside the fresh root"
# Not a chroot: the kernel refuses user namespaces (which nodes use) to a chrooted process.
# A mount namespace of its own whose root *is* the fresh root (pivot_root), as on a machine;
# every mount made there, by this script or by the tests, ends with it.
set +e
unshare --mount --propagation private -- /bin/bash -euc '
    root=$1; shift
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
    mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
    mount -t tmpfs -o mode=755 tmpfs "$root/run"
    mount -t tmpfs -o mode=1777,size=8G tmpfs "$root/tmp"
    cd "$root" && mkdir -p .old-root && pivot_root . .old-root
    cd / && umount -l /.old-root && rmdir /.old-root
    exec /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb "$@"
' fresh "$root" ${pip_cert:+PIP_CERT=$pip_cert} bash -c 'cd /root/labctl && exec "$0" "$@"' "$command" "$@"
rc=$?
set -e
echo "fresh-debian: $command exited $rc"
exit $rc
