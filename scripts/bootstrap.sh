#!/usr/bin/env bash
# Installs what labctl needs on a Debian machine: Debian packages (apt-get) and a Python
# virtual environment at .venv with labctl and its dependencies. Safe to run again.
# Usage: scripts/bootstrap.sh [--dev]   (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (apt-get, and the local provider needs root): sudo $0 $*" >&2
    exit 4
fi

packages=(debootstrap systemd systemd-container iproute2 iputils-ping openssh-client util-linux mount passwd procps graphviz
          python3 python3-venv python3-dev gcc
          nftables openssh-server sudo postgresql chromium
          libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config e2fsprogs dnsmasq-base
          vagrant)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: labctl needs Python >= 3.11 ($python is $("$python" --version 2>&1))" >&2
    exit 5
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
echo "bootstrap: installing labctl${extra} into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extra}"
