"""The provider interface and the registry of providers by name (imported lazily)."""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import NotFoundError
from labctl.progress import QUIET, Progress
from labctl.state import LabState

# name -> "module:Class"; a provider's module is imported only when it is used.
REGISTRY: dict[str, str] = {
    "local": "labctl.providers.local:LocalProvider",
    "libvirt": "labctl.providers.libvirt:LibvirtProvider",
}
DEFAULT_PROVIDER = "local"


@dataclass(frozen=True)
class NodeAccess:
    """How labctl reaches one node: over the management network, or out of band."""

    node: str
    mgmt_netns: str | None  # the namespace the management address is reachable from (None: this one)
    mgmt_address: str  # bare IPv4 address
    oob_command: tuple[str, ...]  # runs an SSH server on stdin/stdout inside the node
    host_key: str  # "ssh-ed25519 AAAA..." the node must present
    key_file: Path  # labctl's private key for the node
    user: str = "root"


@dataclass(frozen=True)
class Probe:
    """One preflight finding: what was checked, whether it is fine, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True


class Provider(ABC):
    """Builds labs from plans and removes them; small on purpose."""

    name: str = ""

    @abstractmethod
    def preflight(self) -> list[Probe]:
        """What this machine has and lacks for this provider."""

    @abstractmethod
    def create(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Build every node of `lab.plan`; record what is made in `lab` as it is made.

        On failure, whatever was made is removed before the error propagates.
        """

    @abstractmethod
    def destroy(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Remove everything `lab` records; safe to call again and after a crash."""

    @abstractmethod
    def snapshot(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Record the lab's current state as the one `revert` goes back to."""

    @abstractmethod
    def revert(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Bring the lab back to its snapshot (the trainer's "between cohorts" button)."""

    @abstractmethod
    def node_states(self, lab: LabState) -> dict[str, str]:
        """Each node's state: running, stopped or missing."""

    @abstractmethod
    def access(self, lab: LabState, node: str) -> NodeAccess:
        """How to reach `node`."""


def provider_names() -> list[str]:
    """The names `get_provider` accepts."""
    return sorted(REGISTRY)


def get_provider(name: str | None) -> Provider:
    """The provider registered as `name` (default: local); a clear error lists valid names."""
    name = name or DEFAULT_PROVIDER
    target = REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        raise NotFoundError(f"unknown provider '{name}'; valid providers: {', '.join(provider_names())}", hint)
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls()
    return provider
