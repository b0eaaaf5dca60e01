"""Small helpers around libvirt-python: opening connections with clear errors, volumes, uploads.

libvirt is imported lazily (only when a libvirt lab is used), so `labctl --help` and the
local provider never need it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from labctl.errors import PlatformError, ProviderError, profile_hint
from labctl.providers import libvirt_xml

POOL = "labctl"


def libvirt_module() -> Any:
    """The libvirt module, or a clear error saying how to install it."""
    try:
        import libvirt
    except ImportError:
        raise PlatformError("libvirt-python is not installed; the libvirt provider needs it",
                            profile_hint("--libvirt")) from None
    return libvirt


_CONNECTIONS: dict[str, Any] = {}
_LOCK = threading.Lock()


def open_connection(uri: str) -> Any:
    """A read-write connection to `uri` (one per hypervisor and process, reused while alive),
    or a ProviderError naming the hypervisor and the fix."""
    libvirt = libvirt_module()
    libvirt.registerErrorHandler(lambda *_: None, None)  # no stray prints on stderr
    with _LOCK:
        conn = _CONNECTIONS.get(uri)
        if conn is not None and conn.isAlive():
            return conn
        try:
            conn = _CONNECTIONS[uri] = libvirt.open(uri)
            return conn
        except libvirt.libvirtError as exc:
            raise ProviderError(f"hypervisor {uri} is unreachable: {exc.get_error_message()}",
                                "is libvirtd running there (and virtlogd)? check with: virsh -c " + uri +
                                " version; or set LABCTL_LIBVIRT_URI / the site file") from None


def close_all() -> None:
    """Close every cached connection (tests; long-lived processes when hypervisors change)."""
    with _LOCK:
        for conn in _CONNECTIONS.values():
            with contextlib.suppress(Exception):
                conn.close()
        _CONNECTIONS.clear()


def is_missing(exc: Exception) -> bool:
    """True when a libvirt error means "no such object" (already gone)."""
    libvirt = libvirt_module()
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() in (
        libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_STORAGE_VOL,
        libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT)


def ensure_pool(conn: Any, path: str) -> Any:
    """labctl's directory storage pool (defined, built and started if needed)."""
    libvirt = libvirt_module()
    try:
        pool = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        document = libvirt_xml.pool_xml(POOL, path)
        libvirt_xml.validate(document, "storagepool")
        pool = conn.storagePoolDefineXML(document, 0)
        pool.build(0)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)
    return pool


def upload(conn: Any, volume: Any, source: Path) -> None:
    """Copy a local file into a volume through libvirt (works with remote hypervisors)."""
    size = source.stat().st_size
    stream = conn.newStream(0)
    volume.upload(stream, 0, size, 0)
    with open(source, "rb") as handle:
        def reader(_stream: Any, nbytes: int, _opaque: Any) -> bytes:
            return handle.read(nbytes)

        stream.sendAll(reader, None)
    stream.finish()


def ensure_file_volume(conn: Any, pool: Any, name: str, source: Path) -> Any:
    """A volume holding a copy of `source`, uploaded once (images are named by digest).

    A marker volume `NAME.ok` is made only after a complete upload, so a crash mid-upload
    never leaves a truncated image that looks finished.
    """
    libvirt = libvirt_module()
    try:
        pool.storageVolLookupByName(f"{name}.ok")
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        pass
    with contextlib.suppress(libvirt.libvirtError):
        pool.storageVolLookupByName(name).delete(0)
    volume = pool.createXML(libvirt_xml.raw_volume_xml(name, os.path.getsize(source)), 0)
    try:
        upload(conn, volume, source)
    except BaseException:
        volume.delete(0)
        raise
    pool.createXML(libvirt_xml.raw_volume_xml(f"{name}.ok", 0), 0)
    pool.refresh(0)
    return pool.storageVolLookupByName(name)
