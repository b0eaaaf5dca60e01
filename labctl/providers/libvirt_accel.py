"""Which accelerator a hypervisor really has: KVM only when a guest actually boots with it.

/dev/kvm may exist where KVM cannot boot a stock kernel (nested or PVM hosts), so the probe
boots the image's own kernel in a tiny transient KVM domain whose init exits at once: the
kernel panics and, with panic=-1 and on_reboot=destroy, the domain ends within seconds.
If it is still running after the timeout, KVM does not work: TCG (`qemu`) it is. The
verdict is cached per URI in LABCTL_HOME/libvirt-accel.json; LABCTL_LIBVIRT_ACCEL=qemu|kvm
skips the probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any
from xml.etree import ElementTree as ET

from labctl import paths

PROBE_SECONDS = 20.0


def _probe_xml(name: str, kernel: str, initrd: str) -> str:
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = "256"
    os_ = ET.SubElement(root, "os")
    ET.SubElement(os_, "type", arch="x86_64").text = "hvm"
    ET.SubElement(os_, "kernel").text = kernel
    ET.SubElement(os_, "initrd").text = initrd
    ET.SubElement(os_, "cmdline").text = "console=ttyS0 panic=-1 rdinit=/bin/true quiet"
    ET.SubElement(root, "on_reboot").text = "destroy"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(root, encoding="unicode")


def probe(conn: Any, uri: str, kernel: str, initrd: str) -> str:
    """"kvm" if a KVM guest really boots on `conn`, else "qemu" (TCG); cached per URI."""
    forced = os.environ.get("LABCTL_LIBVIRT_ACCEL")
    if forced in ("qemu", "kvm"):
        return forced
    cache = paths.home() / "libvirt-accel.json"
    known: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    if uri in known:
        return known[uri]
    verdict = "qemu"
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        name = f"lc-probe-{os.getpid()}"
        domain = conn.createXML(_probe_xml(name, kernel, initrd), 0)
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            try:
                if not domain.isActive():
                    verdict = "kvm"
                    break
            except Exception:  # the transient domain is gone: it booted and panicked as meant
                verdict = "kvm"
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(Exception):
                domain.destroy()
    except Exception:  # no KVM at all on that host
        verdict = "qemu"
    known[uri] = verdict
    paths.write_json_atomic(cache, known)
    return verdict
