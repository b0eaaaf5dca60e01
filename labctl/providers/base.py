"""The provider interface and the registry of providers by name (imported lazily)."""

from __future__ import annotations

import difflib
import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import NotFoundError, PlatformError, ProviderError
from labctl.progress import QUIET, Progress
from labctl.state import LabState

if TYPE_CHECKING:
    from labctl.topology.validate import VlanUse

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
    mgmt_address: str  # bare IPv4 address; "" when this machine has no management path to the node
    oob_command: tuple[str, ...]  # runs an SSH server on stdin/stdout inside the node
    host_key: str  # "ssh-ed25519 AAAA..." the node must present
    key_file: Path  # labctl's private key for the node
    user: str = "root"
    # Seconds for each step of an SSH login after the TCP connect (banner, key exchange,
    # authentication, opening a channel): sshd forks and re-executes for every login, which
    # takes milliseconds in a container but seconds in an emulated (TCG) VM on a busy host.
    ssh_timeout: float = 3.0

    def ssh_client_options(self) -> list[str]:
        """`ssh` options that bound a login: the connection and handshake (ConnectTimeout),
        then a connection that stops answering (ServerAlive: about a minute); errors only,
        so a login that times out says so ("Connection timed out during banner exchange")."""
        connect = max(15, math.ceil(self.ssh_timeout * 4))
        return ["-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={connect}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4"]


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
    # whether the controller sees its nodes' kernel state, files and processes itself (so
    # grading observes them from outside, where no candidate can forge them)
    observes_from_outside: bool = False

    @abstractmethod
    def preflight(self) -> list[Probe]:
        """What this machine has and lacks for this provider."""

    def create(self, lab: LabState, progress: Progress = QUIET, *, origin: LabState | None = None) -> None:
        """Build every node of `lab.plan`; record what is made in `lab` as it is made.

        With `origin` (a lab of the same plan that has a snapshot), the nodes start in the
        origin's snapshot state instead of the bare image: a copy of a set-up lab, without
        running its setup again. On failure (or Ctrl-C), whatever was made is removed before
        the error propagates.
        """
        self.require()
        try:
            if origin is None:
                self.build(lab, progress)
            else:
                self.build_copy(lab, origin, progress)
        except BaseException:
            lab.status = "failed"
            lab.save()
            with progress.step("remove what was built"):
                self.destroy(lab)
            raise

    @property
    def copies_labs(self) -> bool:
        """Whether `create(..., origin=)` can start a lab from another's snapshot (it overrides build_copy)."""
        return type(self).build_copy is not Provider.build_copy

    def build_copy(self, lab: LabState, origin: LabState, progress: Progress) -> None:
        """Make the lab in `origin`'s snapshot state (called by `create`); not every provider can."""
        raise ProviderError(f"the {self.name} provider cannot start a lab from another lab's snapshot",
                            "build and set up each lab on its own (a session without --variants)")

    @abstractmethod
    def require(self) -> None:
        """Raise a clear error if this machine cannot build labs with this provider."""

    @abstractmethod
    def build(self, lab: LabState, progress: Progress) -> None:
        """Make the lab (called by `create`, which cleans up if this fails)."""

    @abstractmethod
    def destroy(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Remove everything `lab` records; safe to call again and after a crash."""

    @abstractmethod
    def snapshot(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Record the lab's current state as the one `revert` goes back to."""

    @abstractmethod
    def revert(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Bring the lab back to its snapshot (the trainer's "between cohorts" button)."""

    def refuse_vlans(self, places: list[tuple[str, VlanUse]]) -> None:
        """The topology's VLANs (`file:line` and what needs which kernel feature, from
        labctl.topology.validate.vlan_uses): no provider builds them yet, so a lab is refused
        before anything is built, never one that silently lacks them."""
        raise ProviderError(f"the {self.name} provider does not build VLANs yet: " +
                            "; ".join(f"{place}: {use.what}" for place, use in places),
                            "remove the VLAN keys (`vlan`, `trunk`, `subinterfaces`) or give each VLAN its "
                            "own switch and interface")

    def restart_node(self, lab: LabState, node: str, progress: Progress = QUIET) -> None:
        """Reboot `node`, keeping its disk and identity; return once it answers again."""
        raise ProviderError(f"the {self.name} provider cannot restart a node",
                            "grade without --reboot, or use the local or libvirt provider")

    @abstractmethod
    def node_states(self, lab: LabState) -> dict[str, str]:
        """Each node's state: running, stopped or missing."""

    @abstractmethod
    def access(self, lab: LabState, node: str) -> NodeAccess:
        """How to reach `node`."""


def require_probes(provider: str, probes: list[Probe]) -> None:
    """Raise PlatformError naming every required probe that failed, with their fixes."""
    missing = [p for p in probes if p.required and not p.ok]
    if missing:
        raise PlatformError(f"this machine cannot run {provider} labs: " +
                            "; ".join(f"{p.name}: {p.detail}" for p in missing),
                            "; ".join(p.fix for p in missing if p.fix))


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
