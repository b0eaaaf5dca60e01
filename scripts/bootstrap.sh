#!/usr/bin/env bash
# Installs what labctl needs on a Debian machine: Debian packages (apt-get) and a Python
# virtual environment at .venv with labctl and its dependencies. Safe to run again; an option
# given once and left out the next time removes nothing.
#
# By default only the light profile: what the local provider needs to build, grade and remove
# labs (a candidate practising at home, a trainer's laptop). Options add the rest; see --help.
# Each package below sits in the profile whose code runs it: tests/unit/test_controller_programs.py
# scans the code and fails when a program is run from a profile that does not install its package.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
Usage: scripts/bootstrap.sh [--sessions] [--libvirt] [--dev] [--list-packages | --list-python]

With no option: the light profile, what the local provider needs to run labs
(debootstrap, systemd-nspawn, iproute2, nftables, ping, ssh client, graphviz, Kerberos and
SMB clients, Python venv), without Debian's recommended packages.
  --sessions  exam sessions: gateway accounts (openssh-server, sudo, passwd, systemd) and
              the PostgreSQL results store (psycopg)
  --libvirt   the libvirt provider: libvirt, QEMU, dnsmasq and libvirt-python (compiled
              here: gcc, python3-dev, libvirt-dev, pkg-config)
  --dev       everything the tests need: all of the above, plus PostgreSQL, Chromium,
              Vagrant (+ vagrant-libvirt), procps, and pytest, ruff, mypy, ansible-lint
  --list-packages  print the Debian packages selected, one a line; install nothing
  --list-python    print what pip installs into .venv (labctl[extras]); install nothing
  -h, --help       this text
Sizes of each profile (download, disk): README.md, "What the two commands install".
EOF
}

# Debian packages, by profile (tests/unit/callsites.py reads these arrays)
light=(debootstrap systemd-container iproute2 iputils-ping nftables openssh-client util-linux mount e2fsprogs
       graphviz python3 python3-venv krb5-user smbclient)
sessions=(openssh-server sudo passwd systemd)
libvirt=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base
         libvirt-dev pkg-config gcc python3-dev)
dev=(postgresql chromium vagrant vagrant-libvirt procps)

packages=("${light[@]}")
extras=()
list=""
# The light profile alone leaves Debian's recommended packages out (43 of its 157 packages:
# GnuPG, Samba's Python modules, fonts ...; nothing its path runs), as the Vagrant box does.
recommends=(--no-install-recommends)
for arg in "$@"; do
    case "$arg" in
        --sessions) packages+=("${sessions[@]}"); extras+=(postgres); recommends=() ;;
        --libvirt) packages+=("${libvirt[@]}"); extras+=(libvirt); recommends=() ;;
        --dev) packages+=("${sessions[@]}" "${libvirt[@]}" "${dev[@]}"); extras+=(dev); recommends=() ;;
        --list-packages) list=packages ;;
        --list-python) list=python ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bootstrap: unknown option $arg" >&2; usage >&2; exit 2 ;;
    esac
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | awk '!seen[$0]++')
extra=""
if [ ${#extras[@]} -gt 0 ]; then
    extra="[$(printf '%s\n' "${extras[@]}" | awk '!seen[$0]++' | paste -sd,)]"
fi
if [ "$list" = packages ]; then printf '%s\n' "${packages[@]}"; exit 0; fi
if [ "$list" = python ]; then echo "labctl${extra}"; exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (apt-get, and the local provider needs root): sudo $0 $*" >&2
    exit 4
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${recommends[@]}" "${missing[@]}" >/dev/null
fi

# Every node's root is one host user (the nodes' shared UID range), and each systemd node takes
# 5 of that user's inotify instances: Debian's default of 128 stops the 26th node's systemd
# ("node r1 stopped while starting its services" in a 30-lab room). As container hosts do:
inotify=/proc/sys/fs/inotify/max_user_instances
if [ "$(cat "$inotify")" -lt 8192 ]; then
    echo "bootstrap: fs.inotify.max_user_instances 8192 (systemd nodes; /etc/sysctl.d/60-labctl.conf)"
    printf '# labctl: each systemd node takes 5 inotify instances of the host user all nodes share\n%s\n' \
        'fs.inotify.max_user_instances = 8192' > /etc/sysctl.d/60-labctl.conf
    echo 8192 > "$inotify"
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
echo "bootstrap: installing labctl${extra} into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extra}"
