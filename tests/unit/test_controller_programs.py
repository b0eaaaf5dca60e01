"""Every program labctl and its tests run on the machine is installed by scripts/bootstrap.sh.

A fresh Debian 12 machine once failed the README's test command because a test ran the
machine's `ping`, which bootstrap.sh never installed. The call sites are found in the
source (tests/unit/callsites.py); each program must be in PROGRAMS with its Debian package,
and each package must be installed by bootstrap.sh or be Essential (on every Debian).

bootstrap.sh installs by profile (light by default; --sessions, --libvirt, --dev add the rest),
so each program is checked against the profile whose code path runs it: the local provider's
code against the light profile, labctl/session against --sessions, the libvirt provider and VM
image against --libvirt, tests, benches and scripts against --dev. The Python modules that only
an extra of pyproject.toml installs are checked the same way.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .callsites import bootstrap_packages, bootstrap_profiles, installed_with, profile_of, scan, scan_source

# program -> the Debian package that installs it ("pypi:NAME": the project's virtual environment)
PROGRAMS: dict[str, str] = {
    "chpasswd": "passwd", "groupdel": "passwd", "useradd": "passwd", "userdel": "passwd",
    "usermod": "passwd",
    "chromium": "chromium", "chromium-browser": "chromium",  # the second: Ubuntu's name, tried after
    "chroot": "coreutils", "cp": "coreutils", "sleep": "coreutils", "tee": "coreutils",
    "debootstrap": "debootstrap",
    "dot": "graphviz",
    "dpkg": "dpkg", "dpkg-query": "dpkg",
    "ip": "iproute2",
    "kdestroy": "krb5-user", "kinit": "krb5-user", "klist": "krb5-user",
    "kill": "procps",
    "labctl": "pypi:labctl",
    "losetup": "mount", "mount": "mount", "umount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "nft": "nftables",
    "ping": "iputils-ping",
    "python3": "python3",
    "qemu-img": "qemu-utils",
    "nsenter": "util-linux", "runuser": "util-linux", "unshare": "util-linux",
    "bash": "bash",
    "sh": "dash",
    "smbclient": "smbclient",
    "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "sshd": "openssh-server",
    "sudo": "sudo", "visudo": "sudo",
    "systemctl": "systemd",
    "systemd-nspawn": "systemd-container",
    "vagrant": "vagrant",
    "virsh": "libvirt-clients",
    "vtysh": "frr",
}
# run on the machine on purpose where it is absent: the test needs the call to fail
ABSENT_ON_PURPOSE = {"vtysh": "test_grading_engine's LocalSession.cli: a router CLI that fails"}
# Debian 12's Essential packages: on every Debian machine, never removed
ESSENTIAL = {"base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debconf",
             "debianutils", "diffutils", "dpkg", "findutils", "grep", "gzip", "hostname",
             "init-system-helpers", "libc-bin", "login", "ncurses-bin", "perl-base", "sed",
             "sysvinit-utils", "tar", "util-linux"}
ROOT = Path(__file__).resolve().parents[2]


def grading_programs() -> set[str]:
    """The programs of the table that grading specs' `scope: network` or `probe` commands name: the
    controller runs them in a node's network namespace or its probe point when it grades (kinit, ssh,
    smbclient for annuaire), on the light profile like the rest of grading."""
    found: set[str] = set()
    for spec in sorted((ROOT / "grading").glob("*.yml")):
        for check in yaml.safe_load(spec.read_text())["checks"]:
            if check.get("type") == "command" and check.get("scope") in ("network", "probe"):
                found |= set(re.findall(r"[A-Za-z0-9_.-]+", check["command"])) & set(PROGRAMS)
    return found


def test_every_program_run_on_the_machine_is_in_the_table() -> None:
    sites = scan()
    assert len({s.program for s in sites}) > 20, "the scan finds too little: is it still looking?"
    unknown = [s.render() for s in sites if s.program not in PROGRAMS]
    assert not unknown, ("programs run on the machine with no Debian package in PROGRAMS "
                         "(add them here and to scripts/bootstrap.sh):\n  " + "\n  ".join(unknown))


def test_every_package_of_the_table_is_installed_by_bootstrap() -> None:
    installed = bootstrap_packages()
    assert "iproute2" in installed and "openssh-client" in installed  # the list was read
    missing = sorted({f"{program} ({package})" for program, package in PROGRAMS.items()
                      if not package.startswith("pypi:") and program not in ABSENT_ON_PURPOSE
                      and package not in installed | ESSENTIAL})
    assert not missing, f"scripts/bootstrap.sh does not install: {', '.join(missing)}"


def test_each_program_is_installed_by_the_profile_whose_code_runs_it() -> None:
    """The light profile must hold what the local provider runs; a session tool there is not needed,
    a local-provider tool only in --libvirt would break a candidate's light install."""
    wrong = sorted({f"{s.render()} ({PROGRAMS[s.program]}): not in the {profile_of(s.file)} profile"
                    for s in scan() if s.program in PROGRAMS and s.program not in ABSENT_ON_PURPOSE
                    and not PROGRAMS[s.program].startswith("pypi:")
                    and PROGRAMS[s.program] not in installed_with(profile_of(s.file)) | ESSENTIAL})
    assert not wrong, "scripts/bootstrap.sh installs these only with another option:\n  " + "\n  ".join(wrong)


def test_the_light_profile_holds_only_what_the_local_provider_runs() -> None:
    """No package in the default profile that only sessions, libvirt or the tests need."""
    light = bootstrap_profiles()["light"]
    needed = {PROGRAMS[s.program] for s in scan() if profile_of(s.file) == "light" and s.program in PROGRAMS}
    needed |= {PROGRAMS[program] for program in grading_programs()}
    # the venv's interpreter and the runner of systemd-nspawn's containers, which no argv names
    needed |= {"python3", "python3-venv"}
    assert light - needed == set(), f"light profile packages nothing on its path runs: {sorted(light - needed)}"


def test_the_profiles_classify_as_intended() -> None:
    assert profile_of("labctl/providers/local.py") == "light"
    assert profile_of("labctl/session/access.py") == "sessions"
    assert profile_of("labctl/providers/libvirt_seed.py") == profile_of("labctl/vmimage.py") == "libvirt"
    assert profile_of("tests/integration/test_cli.py") == profile_of("bench/x.py") == "dev"
    profiles = bootstrap_profiles()
    assert "debootstrap" in profiles["light"] and "qemu-utils" in profiles["libvirt"]
    assert "openssh-server" not in profiles["light"] and "postgresql" in profiles["dev"]


# Python modules that only an extra of pyproject.toml installs -> (extra, the profile that installs it)
OPTIONAL_MODULES = {"libvirt": ("libvirt", "libvirt"), "lxml": ("libvirt", "libvirt"),
                    "psycopg": ("postgres", "sessions")}


def test_modules_of_an_extra_are_imported_only_on_that_profile_path() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    core = pyproject[pyproject.index("dependencies = ["):pyproject.index("[project.optional-dependencies]")]
    wrong = []
    for module, (extra, profile) in OPTIONAL_MODULES.items():
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"pyproject.toml has no extra {extra}"
        assert module not in core.lower(), f"{module} is a core dependency again: the light venv would need it"
        for path in sorted((ROOT / "labctl").rglob("*.py")):
            file = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                if any(n.split(".")[0] == module for n in names) and profile_of(file) not in (profile, "dev"):
                    wrong.append(f"{file}:{node.lineno}: imports {module} (extra {extra}, "
                                 f"bootstrap --{profile}) from the {profile_of(file)} profile's path")
    assert not wrong, "\n".join(wrong)


def test_bootstrap_options_select_their_profiles() -> None:
    def chosen(*options: str) -> tuple[set[str], str]:
        def listed(what: str) -> str:
            done = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), what, *options],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return done.stdout
        return set(listed("--list-packages").split("\n")) - {""}, listed("--list-python").strip()

    profiles = bootstrap_profiles()
    assert chosen() == (profiles["light"], "labctl")
    assert chosen("--libvirt") == (profiles["light"] | profiles["libvirt"], "labctl[libvirt]")
    assert chosen("--sessions", "--libvirt")[1] == "labctl[postgres,libvirt]"
    assert chosen("--dev") == (bootstrap_packages(), "labctl[dev]")
    wrong = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), "--list-packages", "--sesions"],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "unknown option --sesions" in wrong.stderr
    shown = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), "--help"],
                           capture_output=True, text=True, timeout=30).stdout
    assert all(option in shown for option in ("--sessions", "--libvirt", "--dev"))


def test_the_table_has_no_program_nothing_runs() -> None:
    used = {s.program for s in scan()} | grading_programs()
    assert not sorted(set(PROGRAMS) - used)


def test_the_pypi_programs_come_with_the_project() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    for program, package in PROGRAMS.items():
        if package.startswith("pypi:"):
            name = package.removeprefix("pypi:")
            assert f'name = "{name}"' in pyproject or f'"{name}' in pyproject, program


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian machine: no dpkg to ask")
def test_the_table_names_the_package_that_really_holds_each_program() -> None:
    """Where a program is installed here, dpkg must say it belongs to the package the table names."""
    paths: dict[str, list[str]] = {}
    for program, package in PROGRAMS.items():
        found = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if package.startswith("pypi:") or found is None:
            continue
        variants = {found, os.path.realpath(found)}
        variants |= {p.removeprefix("/usr") for p in list(variants)} | {"/usr" + p for p in list(variants)
                                                                          if not p.startswith("/usr")}
        paths[program] = sorted(variants)
    assert len(paths) > 10
    every = sorted({p for variants in paths.values() for p in variants})
    shown = subprocess.run(["dpkg", "-S", *every], capture_output=True, text=True).stdout  # one call: ~0.1 s
    owner: dict[str, set[str]] = {}
    for line in shown.splitlines():
        if line.startswith("diversion") or ": " not in line:
            continue
        pkgs, path = line.rsplit(": ", 1)
        owner[path.strip()] = {p.strip().split(":")[0] for p in pkgs.split(",")}
    wanted = {PROGRAMS[program] for program in paths}
    depends = _depends(sorted(wanted))
    wrong = []
    for program, variants in paths.items():
        packages = set().union(*(owner.get(p, set()) for p in variants))
        table = PROGRAMS[program]
        if packages and table not in packages and not packages & depends.get(table, set()):
            wrong.append(f"{program}: table says {table}, dpkg says {', '.join(sorted(packages))}")
    assert not wrong, "\n".join(wrong)


def _depends(packages: list[str]) -> dict[str, set[str]]:
    """What each package depends on directly (python3 brings the python3-minimal holding the program)."""
    shown = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Pre-Depends},${Depends}\n", *packages],
                           capture_output=True, text=True).stdout
    found: dict[str, set[str]] = {}
    for line in shown.splitlines():
        name, _, deps = line.partition("\t")
        found[name] = {alt.split()[0].split(":")[0] for dep in deps.split(",") for alt in dep.split("|")
                       if alt.strip()}
    return found


@pytest.mark.parametrize(("source", "expected"), [
    ('subprocess.run(["ping", "-c1", host])', ["ping"]),
    ('subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", h])', ["ip", "ping"]),
    ('subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", "arping -c1 x; foo | bar"])',
     ["ip", "sh", "arping", "foo", "bar"]),
    ('subprocess.run([*where, "nft", "-f", "-"])', ["nft"]),
    ('shutil.which("dot")', ["dot"]),
    ('def f():\n    script = f"mount -t proc x {r}"\n    subprocess.run(["unshare", "--mount", "--propagation",'
     ' "private", "sh", "-ec", script])', ["unshare", "sh", "mount"]),
    ('def helper(cmd):\n    return subprocess.run(["ip", "netns", "exec", "n", "sh", "-c", cmd])\n'
     'helper(f"tcpdump -i {x}")', ["ip", "sh", "tcpdump"]),
    ('def go(argv):\n    subprocess.Popen(argv)\ngo(["arping", "x"])', ["arping"]),
    ('subprocess.run(["chroot", root, "sh", "-c", "apt-get update"])', ["chroot"]),
    ('session.run("tcpdump -c1")', []),  # runs on a node, over SSH
    ('node_exec_argv(pid, ["tcpdump", "-c1"])', []),
])
def test_the_scan_sees_through_wrappers_and_helpers(source: str, expected: list[str]) -> None:
    assert [s.program for s in scan_source(source)] == expected
