"""A command that needs what only an option of scripts/bootstrap.sh installs says which option, exit 5.

The light default installs only what the local provider needs: libvirt-python and lxml come with
--libvirt, psycopg and the gateway's tools with --sessions. Here those modules are made
unimportable (as on a light install) and the real code paths are asked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labctl.errors import EXIT_PLATFORM, PlatformError

ROOT = Path(__file__).resolve().parents[2]


def test_up_with_the_libvirt_provider_on_a_light_install_names_the_option() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['libvirt'] = None\n"
         "from labctl.cli import main; main(['up', 'multi-site-routing', '--provider', 'libvirt'])"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == EXIT_PLATFORM, done.stderr
    assert "libvirt-python is not installed" in done.stderr
    assert f"{ROOT}/scripts/bootstrap.sh --libvirt" in done.stderr


def test_libvirt_xml_validation_without_lxml_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.providers import libvirt_xml

    libvirt_xml._schema.cache_clear()
    monkeypatch.setitem(sys.modules, "lxml", None)
    with pytest.raises(PlatformError) as raised:
        libvirt_xml._schema("domain")
    libvirt_xml._schema.cache_clear()
    assert raised.value.exit_code == EXIT_PLATFORM and "--libvirt" in (raised.value.hint or "")


def test_a_postgresql_store_without_psycopg_names_the_sessions_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.session.store import ResultStore

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(PlatformError) as raised:
        ResultStore("postgresql://nobody@127.0.0.1:1/none")._connect()
    assert raised.value.exit_code == EXIT_PLATFORM
    assert "bootstrap.sh --sessions" in (raised.value.hint or "")


def test_gateway_accounts_without_sshd_name_the_sessions_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from labctl.session import access

    monkeypatch.setattr(access.os, "geteuid", lambda: 0)
    real = shutil.which

    def which(tool: str, path: str | None = None) -> str | None:  # every tool there but sshd
        return None if tool == "sshd" else real(tool, path=path) or f"/usr/sbin/{tool}"

    monkeypatch.setattr(access.shutil, "which", which)
    with pytest.raises(PlatformError) as raised:
        access.open_accounts(None)  # type: ignore[arg-type]  # refused before the session is read
    assert "need sshd" in raised.value.message and "--sessions" in (raised.value.hint or "")
